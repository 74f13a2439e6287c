"""Publisher on real sockets: a slow subscriber loses only its own messages and the publisher
never waits for it; a message that fails to serialize leaves nothing on the wire; the frame
topic is rate-limited before any JPEG is encoded."""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import zmq

from rtseg.client import Masks, Subscriber
from rtseg.config import FrameTopicConfig, NetworkConfig
from rtseg.protocol import StatusMessage, pack, unpack
from rtseg.pipeline.publisher import FrameRateLimiter, Publisher
from tests.helpers.publishing import drain, masks_message, warm_up


def test_slow_subscriber_loses_only_its_own_messages(ctx):
    n = 300
    pub = Publisher("tcp://127.0.0.1:*", hwm=10, context=ctx)
    fast_ctx = zmq.Context()  # its own I/O thread, as in a separate process
    fast = Subscriber(pub.endpoint, cameras=["warm", "run"], decode_masks=False, rcvhwm=100_000, context=fast_ctx)
    slow = Subscriber(pub.endpoint, cameras=["warm", "run"], decode_masks=False, rcvhwm=5, context=ctx)
    warm_up(pub, [fast, slow])
    big = masks_message("run", 480, 640, noise=True)  # ~150 kB: n of them overflow any socket buffer
    assert len(pack(big)[1]) > 100_000

    fast_got: list[Masks] = []

    def read_fast() -> None:
        deadline = time.monotonic() + 60
        while len(fast_got) < n and time.monotonic() < deadline:
            result = fast.recv(timeout=0.5)
            if isinstance(result, Masks) and result.camera == "run":
                fast_got.append(result)

    reader = threading.Thread(target=read_fast)
    reader.start()
    slowest_publish = 0.0
    for _ in range(n):
        started = time.perf_counter()
        assert pub.publish(big)
        slowest_publish = max(slowest_publish, time.perf_counter() - started)
        time.sleep(0.003)
    reader.join()

    # the fast subscriber got everything, in order
    assert [m.message.seq for m in fast_got] == list(range(n))
    assert fast.stats()["dropped"] == 0
    # the publisher never waited for the slow one
    assert slowest_publish < 0.1, f"a publish took {slowest_publish * 1e3:.0f} ms"
    assert pub.stats()["dropped"] == 0 and pub.stats()["sent.masks"] >= n

    # the slow one lost most of its messages, and knows how many once the next one arrives
    slow_got = []
    while (result := slow.recv(timeout=0.3)) is not None:
        if isinstance(result, Masks) and result.camera == "run":
            slow_got.append(result)
    assert 0 < len(slow_got) < n // 2, len(slow_got)
    assert slow_got[0].message.seq == 0
    pub.publish(big)
    last = slow.recv(timeout=5)
    assert isinstance(last, Masks) and last.message.seq == n
    assert slow.stats()["dropped"] == n - len(slow_got) > n // 2

    fast.close()
    fast_ctx.term()
    slow.close()
    pub.close()


def test_failed_serialization_leaves_nothing_on_the_wire(ctx):
    pub = Publisher("tcp://127.0.0.1:*", context=ctx)
    sub = Subscriber(pub.endpoint, cameras=["warm", "cam"], context=ctx)
    warm_up(pub, [sub])
    drain(sub, 0.1)
    raw = ctx.socket(zmq.SUB)
    raw.linger = 0
    raw.subscribe(b"masks.cam")
    raw.connect(pub.endpoint)
    time.sleep(0.3)
    bad = dataclasses.replace(masks_message("cam"), latency_ms={"model": object()})
    with pytest.raises(TypeError):
        pub.publish(bad)
    good = masks_message("cam")
    assert pub.publish(good)
    assert raw.poll(5000)
    parts = raw.recv_multipart()
    assert len(parts) == 2 and parts[0] == b"masks.cam"
    assert dataclasses.replace(unpack(parts), seq=0, published_ns=0) == good
    assert not raw.poll(200)  # no stray part
    assert pub.stats()["serialize_errors"] == 1
    result = sub.recv(timeout=5)
    assert isinstance(result, Masks) and result.message.seq == 0  # the failed one took no seq
    raw.close()
    sub.close()
    pub.close()


def test_frame_rate_limiter():
    limiter = FrameRateLimiter(fps=5)
    t0 = 1_000_000_000
    assert limiter.due("a", t0)
    assert not limiter.due("a", t0 + 100_000_000)
    assert limiter.due("b", t0 + 100_000_000)  # per camera
    assert limiter.due("a", t0 + 200_000_000)
    with pytest.raises(ValueError, match="fps must be > 0"):
        FrameRateLimiter(0)


def test_frame_topic_rate_limited_before_encoding(ctx, monkeypatch):
    net = NetworkConfig(pub="tcp://127.0.0.1:*", hwm=7, frame_topic=FrameTopicConfig(enabled=True, fps=4, quality=60))
    pub = Publisher.from_config(net, context=ctx)
    assert pub.frame_limiter is not None and pub.frame_limiter.interval_ns == 250_000_000
    assert pub.frame_quality == 60 and pub._socket.sndhwm == 7
    encoded = []
    real = type(pub).publish
    monkeypatch.setattr(type(pub), "publish", lambda self, msg: encoded.append(msg) or real(self, msg))
    rgb = np.zeros((16, 16, 3), np.uint8)
    sent = [pub.publish_frame("cam", i, rgb, capture_ns=i, capture_wall_ns=i) for i in range(20)]
    assert sent[0] and sum(sent) == 1 and len(encoded) == 1
    assert pub.stats()["frames_rate_limited"] == 19
    pub.close()

    off = Publisher.from_config(NetworkConfig(pub="tcp://127.0.0.1:*"), context=ctx)
    assert not off.publish_frame("cam", 0, rgb, capture_ns=0, capture_wall_ns=0)
    assert off.stats()["sent"] == 0
    off.close()


def test_seq_counts_per_topic_and_status_carries_stats(ctx):
    pub = Publisher("tcp://127.0.0.1:*", context=ctx)
    sub = Subscriber(pub.endpoint, topics=["masks", "status"], context=ctx)
    warm_up(pub, [sub])
    drain(sub, 0.1)
    pub.publish(masks_message("a"))
    pub.publish(masks_message("b"))
    pub.publish(masks_message("a"))
    pub.publish(StatusMessage(publisher=pub.stats(), device="cpu"))
    got = [sub.recv(timeout=5) for _ in range(4)]
    assert [(g.camera, g.message.seq) for g in got[:3]] == [("a", 0), ("b", 0), ("a", 1)]
    assert isinstance(got[3], StatusMessage) and got[3].seq == 0 and got[3].publisher["sent"] >= 3
    sub.close()
    pub.close()


def test_bind_failure_names_the_endpoint(ctx):
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub:
        with pytest.raises(OSError, match="publisher.*network.pub"):
            Publisher(pub.endpoint, context=ctx)

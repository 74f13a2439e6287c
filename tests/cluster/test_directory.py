"""The cluster's front door without Ray: placement, the directory's `locate` on a real
ZeroMQ socket, its prompt log on disk, and clients that follow a camera from one publisher
to another (real Publisher / ControlServer on 127.0.0.1)."""
from __future__ import annotations

import subprocess
import sys

import msgpack
import pytest

from rtseg.client import ControlError, Controller, Masks, Subscriber
from rtseg.cluster.directory import Directory
from rtseg.cluster.placement import NewSegmenter, pack, segmenter_resource
from rtseg.locate import LocateError, Locator
from rtseg.pipeline.publisher import Publisher
from rtseg.protocol import PROTOCOL_VERSION
from tests.helpers.control import FakeHandler, RawClient, serving
from tests.helpers.publishing import masks_message


# ----------------------------------------------------------------- placement
def test_pack_fills_segmenters_to_capacity_and_spreads_them_over_nodes():
    new, left = pack(["c3", "c1", "c0", "c2"], {}, 2, {"head": 0, "w1": 2, "w2": 2})
    assert new == [NewSegmenter("w1", ("c0", "c1")), NewSegmenter("w2", ("c2", "c3"))]
    assert left == []


def test_pack_by_weight_heaviest_first():
    new, left = pack(["a", "b", "c", "d"], {"a": 3, "b": 2}, 4, {"n": 4})
    assert [s.cameras for s in new] == [("a", "c"), ("b", "d")]
    assert left == []


def test_pack_leaves_what_does_not_fit_unplaced():
    new, left = pack(["a", "b", "c", "huge"], {"huge": 5}, 2, {"n1": 1})
    assert new == [NewSegmenter("n1", ("a", "b"))]
    assert left == ["c", "huge"]
    assert pack(["a"], {}, 2, {"n1": 0, "n2": -1}) == ([], ["a"])


def test_cluster_config_checks_weights():
    from rtseg.config import ConfigError, parse_config

    text = "cameras: [{id: a, source: 'synthetic://64x48'}]\ncluster: {weights: {b: 2}}\n"
    with pytest.raises(ConfigError, match=r"cluster.weights names unknown camera\(s\) \['b'\]"):
        parse_config(text)
    with pytest.raises(ConfigError, match="line 2: cluster.weights: camera weights must be > 0"):
        parse_config(text.replace("b: 2", "a: 0"))
    cfg = parse_config(text.replace("b: 2", "a: 2.5"))
    assert (cfg.cluster.weights, cfg.cluster.cameras_per_segmenter, cfg.cluster.directory) == (
        {"a": 2.5}, 4.0, "tcp://0.0.0.0:5570")


def test_segmenter_resource_prefers_gpus():
    assert segmenter_resource({"GPU": 8.0, "rtseg_segmenter": 2.0, "CPU": 64}) == ("GPU", 8)
    assert segmenter_resource({"rtseg_segmenter": 2.0, "CPU": 4}) == ("rtseg_segmenter", 2)
    assert segmenter_resource({"CPU": 4}) == ("rtseg_segmenter", 0)


# ----------------------------------------------------------------- directory
@pytest.fixture
def directory(tmp_path):
    d = Directory(["gate", "yard"], str(tmp_path / "state"), "tcp://127.0.0.1:*", restart_budget=2,
                  restart_window_s=60)
    yield d
    d.close()


def test_locate_reports_placement_and_endpoints(directory):
    with Locator(directory.endpoint()) as loc:
        assert {c: e["state"] for c, e in loc.locate().items()} == {"gate": "unplaced", "yard": "unplaced"}
        directory.place("gate", state="starting", node="n1", host="10.0.0.7", segmenter="seg1")
        assert loc.endpoints("gate") == {}
        directory.segmenter_ready("seg1", ["gate"], "tcp://10.0.0.7:4000", "tcp://10.0.0.7:4001", "GPU 0", 123)
        directory.report("seg1", {"gate": {"fps": 29.5, "objects": [1, 2], "frames": 10}})
        directory.report("seg9", {"gate": {"fps": 1.0}})  # not its camera: ignored
        gate = loc.locate("gate")["gate"]
        assert (gate["state"], gate["pub"], gate["control"], gate["fps"], gate["objects"]) == (
            "running", "tcp://10.0.0.7:4000", "tcp://10.0.0.7:4001", 29.5, [1, 2])
        assert list(loc.locate("gate")) == ["gate"]
        directory.place("gate", state="unplaced", node=None, message="node lost")
        gate = loc.locate("gate")["gate"]
        assert gate["pub"] is None and gate["control"] is None and gate["message"] == "node lost"
        directory.place("gate", state="unplaced", segmenter=None, message="no free segmenter slot")
        assert loc.locate("gate")["gate"]["segmenter"] is None
        directory.place("gate", state="starting", segmenter="seg2")
        assert loc.locate("gate")["gate"]["moves"] == 1


def test_locate_refuses_bad_requests_with_the_protocols_error_codes(directory, ctx):
    with Locator(directory.endpoint()) as loc, pytest.raises(LocateError) as e:
        loc.locate("nope")
    assert e.value.code == "unknown_camera"
    raw = RawClient(ctx, directory.endpoint())
    try:
        assert raw.send_bytes(b"\xc1")["error"]["code"] == "bad_encoding"
        assert raw.send([1, 2])["error"]["code"] == "bad_request"
        assert raw.send({"v": 99, "type": "locate"})["error"]["code"] == "unsupported_version"
        reply = raw.send({"v": PROTOCOL_VERSION, "type": "add_points", "id": 4})
        assert (reply["error"]["code"], reply["id"]) == ("unknown_type", 4)
        assert raw.send({"v": PROTOCOL_VERSION, "type": "locate", "camera": 7})["error"]["code"] == "invalid_value"
        assert raw.send({"v": PROTOCOL_VERSION, "type": "locate", "x": 1})["error"]["code"] == "bad_request"
        assert raw.send_bytes(msgpack.packb({"v": 1, "type": "locate", "pad": "x" * 5000}))["error"]["code"] == \
            "payload_too_large"
        assert raw.send({"v": PROTOCOL_VERSION, "type": "locate"})["ok"] is True  # still serving
    finally:
        raw.close()


def test_prompt_log_lives_on_disk_and_outlives_the_directory(tmp_path, directory):
    directory.prompt_add("gate", 1, "box", {"box": [1.0, 2.0, 30.0, 40.0]})
    directory.prompt_add("gate", 2, "points", {"points": [[5.0, 6.0]], "labels": [1]})
    directory.prompt_add("yard", 1, "box", {"box": [0.0, 0.0, 9.0, 9.0]})
    directory.prompt_remove("gate", 2)
    directory.prompt_reset("yard")
    again = Directory(["gate", "yard"], str(tmp_path / "state"), "tcp://127.0.0.1:*")
    try:
        logged = again.latest_prompts("gate")
        assert [(p.obj_id, p.kind, p.payload) for p in logged] == [(1, "box", {"box": [1.0, 2.0, 30.0, 40.0]})]
        assert again.latest_prompts("yard") == []
    finally:
        again.close()


def test_restart_budget_is_counted_per_segmenter(directory):
    assert [directory.segmenter_started("seg1") for _ in range(4)] == [True, True, True, False]
    assert directory.segmenter_started("seg2") is True


# ------------------------------------------------------ clients that follow
def first_masks(publisher: Publisher, sub: Subscriber, camera: str = "gate"):
    """Publish on `publisher` until `sub` receives something (or 10 s); returns it."""
    for _ in range(200):
        publisher.publish(masks_message(camera))
        got = sub.recv(timeout=0.05)
        if got is not None:
            return got
    return None


def test_subscriber_follows_a_camera_to_another_publisher(directory, ctx):
    old, new = (Publisher("tcp://127.0.0.1:*", context=ctx) for _ in range(2))
    directory.place("gate", state="starting", node="n1", segmenter="seg1")
    directory.segmenter_ready("seg1", ["gate"], old.endpoint, "tcp://127.0.0.1:1", "cpu", 1)
    sub = Subscriber(None, cameras=["gate"], cluster=directory.endpoint(), follow_s=0.3, context=ctx)
    try:
        got = first_masks(old, sub)
        assert isinstance(got, Masks) and got.camera == "gate"
        old.close()  # the node is gone; the camera comes back elsewhere
        directory.place("gate", state="starting", node="n2", segmenter="seg2")
        directory.segmenter_ready("seg2", ["gate"], new.endpoint, "tcp://127.0.0.1:2", "cpu", 2)
        got = first_masks(new, sub)
        assert isinstance(got, Masks) and got.camera == "gate", "the subscriber did not follow the camera"
    finally:
        sub.close()
        new.close()


def test_controller_sends_each_request_where_its_camera_runs(directory, ctx):
    a, b = FakeHandler({"gate": (48, 64)}), FakeHandler({"yard": (48, 64)})
    with serving(a, ctx) as sa, serving(b, ctx) as sb, \
            Controller(None, timeout=5, cluster=directory.endpoint(), context=ctx) as ctl:
        with pytest.raises(ControlError) as e:
            ctl.add_points("gate", 1, [[10, 10]])
        assert e.value.code == "not_ready" and "unplaced" in e.value.message
        with pytest.raises(ControlError) as e:
            ctl.add_points("nope", 1, [[10, 10]])
        assert e.value.code == "unknown_camera"
        for cam, seg, server in (("gate", "seg1", sa), ("yard", "seg2", sb)):
            directory.place(cam, state="starting", segmenter=seg)
            directory.segmenter_ready(seg, [cam], "tcp://127.0.0.1:1", server.endpoint, "cpu", 1)
        assert ctl.add_points("gate", 1, [[10, 10]])["obj_ids"] == [1]
        assert ctl.add_box("yard", 5, [1, 1, 20, 20])["obj_ids"] == [5]
        assert [r.camera for r in a.calls] == ["gate"] and [r.camera for r in b.calls] == ["yard"]
        listed = ctl.list()["cameras"]  # no camera: every segmenter, replies merged
        assert sorted(listed) == ["gate", "yard"]
        directory.place("yard", state="starting", segmenter="seg3")  # moves: gate's server takes it next
        directory.segmenter_ready("seg3", ["yard"], "tcp://127.0.0.1:1", sa.endpoint, "cpu", 1)
        with pytest.raises(ControlError) as e:  # a has no camera yard: it says so, from the new place
            ctl.remove("yard", 5)
        assert e.value.code == "unknown_camera"


def test_cluster_status_prints_one_row_per_camera(directory):
    directory.place("gate", state="starting", node="abcdef0123456789", host="10.0.0.7", segmenter="seg1")
    directory.segmenter_ready("seg1", ["gate"], "tcp://10.0.0.7:4000", "tcp://10.0.0.7:4001", "GPU 0", 1)
    directory.report("seg1", {"gate": {"fps": 29.46, "objects": [1, 2], "frames": 10}})
    directory.place("yard", message="no free segmenter slot")
    out = subprocess.run([sys.executable, "-m", "rtseg.cli", "cluster", "status", "--cluster", directory.endpoint()],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["camera", "state", "host", "node"]
    gate = next(line for line in lines if line.startswith("gate")).split()
    assert gate[:8] == ["gate", "running", "10.0.0.7", "abcdef012345", "seg1", "GPU", "0", "29.5"]
    assert "1,2" in gate
    assert "unplaced" in next(line for line in lines if line.startswith("yard"))
    down = subprocess.run([sys.executable, "-m", "rtseg.cli", "cluster", "status", "--cluster", "tcp://127.0.0.1:1",
                           "--timeout", "0.5"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 3 and "is `rtseg cluster` running" in down.stderr


def running_publisher():
    """A publisher thread of masks for camera `cam`, started and bound."""
    from tests.helpers.recording import PublishingThread

    publisher = PublishingThread(rate_hz=50)
    publisher.start()
    assert publisher.ready.wait(10)
    return publisher


def one_camera_directory(tmp_path, pub: str) -> Directory:
    """A directory whose one camera, `cam`, runs on segmenter seg1, which publishes at `pub`."""
    directory = Directory(["cam"], str(tmp_path / "state"), "tcp://127.0.0.1:*")
    directory.place("cam", state="starting", segmenter="seg1")
    directory.segmenter_ready("seg1", ["cam"], pub, "tcp://127.0.0.1:1", "cpu", 1)
    return directory


def test_recorder_follows_a_camera_through_the_directory(tmp_path):
    import threading
    import time

    from rtseg.config import RecorderConfig
    from rtseg.protocol import MasksMessage
    from rtseg.recording import read_records
    from rtseg.recording.recorder import Recorder
    from tests.helpers.recording import PublishingThread

    def recorded() -> int:
        folder = tmp_path / "rec"
        if not folder.is_dir():
            return 0
        return sum(isinstance(r.message(), MasksMessage) for r in read_records(folder))

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 20
        while recorded() < n and time.monotonic() < deadline:
            time.sleep(0.1)
        assert recorded() >= n

    first = running_publisher()
    directory = one_camera_directory(tmp_path, first.endpoint)
    stop = threading.Event()
    recorder = Recorder(RecorderConfig(directory=tmp_path / "rec", fsync_interval_s=0), directory.endpoint(),
                        cameras=["cam"], cluster=True)
    thread = threading.Thread(target=recorder.run, args=(stop.is_set,), daemon=True)
    thread.start()
    second = PublishingThread(rate_hz=50)
    try:
        wait_for(20)
        first.stop()  # the camera's node is gone
        second.start()
        assert second.ready.wait(10)
        directory.place("cam", state="starting", segmenter="seg2")
        directory.segmenter_ready("seg2", ["cam"], second.endpoint, "tcp://127.0.0.1:2", "cpu", 2)
        before = recorded()
        wait_for(before + 20)  # the same recorder, never restarted, records the camera's new publisher
    finally:
        stop.set()
        thread.join(10)
        for publisher in (first, second):
            if publisher.ident is not None:
                publisher.stop()
        directory.close()


def test_viewer_feed_and_options_go_through_the_directory(tmp_path):
    import time
    from argparse import Namespace

    from rtseg.view.feed import Feed
    from rtseg.view.viewer import ViewerError, options_from_args

    args = dict(config=None, pub=None, control=None, view_only=False, camera="cam", ring=None, frame_buffer=None,
                fps=None, client_key=None, server_key=None, log_level="INFO", cluster="tcp://10.1.2.3:5570")
    options = options_from_args(Namespace(**args))
    assert (options.pub, options.control, options.cluster) == ("tcp://10.1.2.3:5570", "tcp://10.1.2.3:5570", True)
    with pytest.raises(ViewerError, match="--cluster needs --camera"):
        options_from_args(Namespace(**{**args, "camera": None}))

    publisher = running_publisher()
    directory = one_camera_directory(tmp_path, publisher.endpoint)
    try:
        with Feed("cam", directory.endpoint(), cluster=True) as feed:
            deadline = time.monotonic() + 20
            while feed.objects()[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert feed.objects()[1], "the viewer's feed got no masks through the directory"
    finally:
        publisher.stop()
        directory.close()


def test_rtseg_prompt_with_cluster_finds_the_camera(directory, ctx):
    handler = FakeHandler({"gate": (48, 64)})
    with serving(handler, ctx) as server:
        directory.place("gate", state="starting", segmenter="seg1")
        directory.segmenter_ready("seg1", ["gate"], "tcp://127.0.0.1:1", server.endpoint, "cpu", 1)
        out = subprocess.run([sys.executable, "-m", "rtseg.cli", "prompt", "--cluster", directory.endpoint(),
                              "--camera", "gate", "points", "10,12", "--obj", "3"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert [(r.type, r.camera, r.obj_id) for r in handler.calls] == [("add_points", "gate", 3)]
        out = subprocess.run([sys.executable, "-m", "rtseg.cli", "prompt", "--cluster", directory.endpoint(),
                              "--camera", "yard", "reset"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "not_ready" in out.stderr and "unplaced" in out.stderr

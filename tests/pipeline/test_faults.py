"""Black-box fault tests of `rtseg run`: kill -9 of the recorder, the capture process and the
segmenter, as an operator's bad day would; CPU, image_size 128, random weights."""
from __future__ import annotations

import os
import signal
import time

from rtseg.client import Subscriber
from rtseg.protocol import SOURCE_STATES
from rtseg.recording import iter_segment, list_segments
from rtseg.ring.layout import process_alive
from tests.helpers.pipeline import Pipeline, write_config


def _parts(rec):
    return [p for p in list_segments(rec) if p.name.endswith(".part")] if rec.exists() else []


def _has_records(part) -> bool:
    try:
        return any(True for _ in iter_segment(part))
    except FileNotFoundError:
        return False


def test_a_killed_recorder_is_replaced_and_records_again_within_2_s(tmp_path):
    rec = tmp_path / "rec"
    cfg = write_config(tmp_path, None, policy="latest",
                       extra={"recorder": {"enabled": True, "directory": str(rec), "segment_seconds": 600}})
    with Pipeline(cfg) as pipe:
        pipe.wait_ready()
        for round_ in range(2):
            deadline = time.monotonic() + 90
            # the pipeline's second recorder stands by (started, imports done, waiting for the folder)
            while "standing by" not in pipe.output().split("exited with code -9")[-1] \
                    or not (_parts(rec) and _has_records(_parts(rec)[-1])):
                assert time.monotonic() < deadline, pipe.output()
                time.sleep(0.1)
            before = set(_parts(rec))
            os.kill(int((rec / ".rtseg-recorder.lock").read_text()), signal.SIGKILL)
            killed = time.monotonic()
            while not [p for p in _parts(rec) if p not in before and _has_records(p)]:
                assert time.monotonic() - killed < 30, pipe.output()
                time.sleep(0.02)
            took = time.monotonic() - killed
            assert took < 2.0, f"round {round_}: first record {took:.2f} s after the kill\n{pipe.output()}"


def _next_masks(sub: Subscriber, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = sub.recv(timeout=1.0)
        if m is not None and hasattr(m, "obj_ids"):
            return m
    raise AssertionError(f"no masks within {timeout_s} s")


STATUS_IN_FLIGHT_NS = 100_000_000  # status read -> published, at most, on a loaded machine


def _kill_and_wait_for_successor(pipe: Pipeline, name: str, sub: Subscriber, seen: list) -> tuple[int, int]:
    """kill -9 child `name`, collect messages until its successor published 3 masks; (when the
    kill was sent, when the process was seen gone)."""
    old = pipe.pids()[name]
    sent_ns = time.monotonic_ns()
    os.kill(old, signal.SIGKILL)
    gone = time.monotonic() + 5  # SIGKILL takes effect when the kernel next runs the process
    while process_alive(old, 0) and time.monotonic() < gone:
        time.sleep(0.005)
    gone_ns = time.monotonic_ns()
    deadline = time.monotonic() + 90
    while pipe.pids().get(name) in (None, old):
        assert time.monotonic() < deadline, f"{name} not restarted:\n{pipe.output()}"
        seen.append(sub.recv(timeout=0.2))
    masks = 0
    while masks < 3:
        m = sub.recv(timeout=90)
        assert m is not None, pipe.output()
        seen.append(m)
        masks += hasattr(m, "obj_ids")
    return sent_ns, gone_ns


def _collect(sub: Subscriber, seen: list, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(sub.recv(timeout=0.1))


def _states(seen: list, after_ns: int) -> list[str]:
    return [state for _, state in _timed_states(seen, after_ns)]


def _timed_states(seen: list, after_ns: int) -> list[tuple[int, str]]:
    return [(m.published_ns, m.cameras["cam"].source_state) for m in seen
            if hasattr(m, "cameras") and m.published_ns > after_ns]


def _lost_until_back(seen: list, sent_ns: int, gone_ns: int) -> None:
    """After the kill: `lost` until the camera is back (`connected`), however short the restart
    (a status goes out as soon as the state changes). A status read while the process still
    ran may be published just after it died: only such may say `connected` before `lost`."""
    timed = _timed_states(seen, sent_ns)
    after = [state for _, state in timed]
    assert "lost" in after and "connected" in after[after.index("lost"):], after
    first_lost = after.index("lost")
    late = [(ns - gone_ns) / 1e6 for ns, _ in timed[:first_lost] if ns > gone_ns + STATUS_IN_FLIGHT_NS]
    assert not late, f"{after}: `connected` {late} ms after the process was gone"
    back = after.index("connected", first_lost)
    assert set(after[first_lost:back]) == {"lost"}, f"lost until it is back: {after}"


def test_frame_indices_never_repeat_and_source_state_says_lost_across_capture_and_segmenter_kills(tmp_path):
    cfg = write_config(tmp_path, None, policy="latest", source="synthetic://160x120@8?objects=2&seed=1")
    with Pipeline(cfg) as pipe, Subscriber(pipe.pub, topics=("masks", "status")) as sub:
        pipe.wait_ready()
        seen: list = []
        _collect(sub, seen, 2.0)
        # a hung capture process (alive, silent): lost while it is stopped, connected once it goes on
        capture = pipe.pids()["capture-cam"]
        os.kill(capture, signal.SIGSTOP)
        stopped_ns = time.monotonic_ns()
        _collect(sub, seen, 4.0)
        os.kill(capture, signal.SIGCONT)
        silent = [m.cameras["cam"] for m in seen if hasattr(m, "cameras") and m.published_ns > stopped_ns]
        assert any(c.source_state == "lost" and "silent" in c.source_message for c in silent), silent
        _collect(sub, seen, 3.0)
        assert _states(seen, time.monotonic_ns() - 1_000_000_000)[-1:] == ["connected"], _states(seen, 0)

        _lost_until_back(seen, *_kill_and_wait_for_successor(pipe, "capture-cam", sub, seen))
        _kill_and_wait_for_successor(pipe, "segmenter", sub, seen)
        stream = pipe.pids().get("stream")
    masks = [m for m in seen if m is not None and hasattr(m, "obj_ids")]
    indices = [m.frame_index for m in masks]
    assert indices == sorted(set(indices)), f"frame indices repeat or go back: {indices}"
    assert {m.message.stream for m in masks} == {stream} and len(stream) == 16  # one stream id for the run
    states = {m.cameras["cam"].source_state for m in seen if m is not None and hasattr(m, "cameras")}
    assert states <= set(SOURCE_STATES), states

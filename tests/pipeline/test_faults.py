"""Black-box fault tests of `rtseg run`: kill -9 of the recorder, the capture process and the
segmenter, as an operator's bad day would; CPU, image_size 128, random weights."""
from __future__ import annotations

import os
import signal
import time

from rtseg.recording import iter_segment, list_segments
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

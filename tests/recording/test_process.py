"""The recorder as a real process on a real Publisher: kill -9, unwritable folder, full disk,
retention, MP4 video, and the supervisor's entry point (spawn, heartbeat, stop event)."""
from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing as mp
import os
import re
import signal
import threading
import time

import cv2
import numpy as np

from rtseg.client import Subscriber
from rtseg.config import Config, RecorderConfig
from rtseg.protocol import MasksMessage, PromptEvent, StatusMessage
from rtseg.recording.recorder import Recorder, recorder_main
from rtseg.recording import SegmentScan, iter_segment, list_segments, read_records
from rtseg.view.overlay import object_color
from rtseg.recording.store import list_videos
from tests.helpers.procs import assert_beating, drain_queue, start_cli, stop_child, stop_process, wait_for
from tests.helpers.recording import PublishingThread, can_mount, masks_for, tmpfs


def _masks(folder):
    if not folder.is_dir():
        return []
    return [m for m in (r.message() for r in read_records(folder)) if isinstance(m, MasksMessage)]


def _closed(folder):
    if not folder.is_dir():
        return []
    return [p for p in list_segments(folder) if p.suffix == ".mcap"]


def _part_records(folder):
    if not folder.is_dir():
        return 0
    parts = [p for p in list_segments(folder) if p.name.endswith(".part")]
    return sum(1 for p in parts for _ in iter_segment(p))


def test_kill_9_mid_segment_loses_nothing_that_arrived(tmp_path):
    pub = PublishingThread(rate_hz=100)
    pub.start()
    assert pub.ready.wait(10) and pub.error is None
    rec_dir = tmp_path / "rec"
    proc = start_cli("record", "--pub", pub.endpoint, "--dir", str(rec_dir), "--segment-seconds", "0.7",
                     log=tmp_path / "recorder.log")
    try:
        wait_for(lambda: len(_closed(rec_dir)) >= 2 and _part_records(rec_dir) >= 5, 30, "two closed segments")
        pub.pause()  # everything published has now reached the recorder or is on its way
        last_published = pub.last_index
        wait_for(lambda: _masks(rec_dir)[-1].frame_index == last_published, 10, "the recorder to catch up")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        stop_process(proc)
    pub.resume()

    segments = list_segments(rec_dir)
    assert segments[-1].name.endswith(".mcap.part")
    for seg in segments[:-1]:
        scan = SegmentScan(seg)
        assert sum(1 for _ in iter_segment(seg, scan)) > 0 and scan.finished and not scan.bad_chunks, seg
    scan = SegmentScan(segments[-1])
    assert sum(1 for _ in iter_segment(segments[-1], scan)) >= 5 and scan.tail_bytes == 0

    masks = _masks(rec_dir)
    indices = [m.frame_index for m in masks]
    assert indices == list(range(indices[0], last_published + 1)), "a received message is missing"
    assert np.array_equal(masks[-1].objects[0].mask(), masks_for(last_published)[0])
    kinds = {type(r.message()) for r in read_records(rec_dir)}
    assert StatusMessage in kinds and PromptEvent in kinds

    # a restarted recorder closes the crashed segment with the same records, then records on
    proc = start_cli("record", "--pub", pub.endpoint, "--dir", str(rec_dir), "--segment-seconds", "0.7",
                     log=tmp_path / "recorder2.log")
    try:
        wait_for(lambda: not segments[-1].exists() and segments[-1].with_suffix("").exists(), 20, "recovery")
        wait_for(lambda: _masks(rec_dir)[-1].frame_index > last_published + 10, 20, "new records")
        assert stop_process(proc, signal.SIGTERM) == 0
    finally:
        stop_process(proc)
        pub.stop()
    after = [m.frame_index for m in _masks(rec_dir)]
    assert after[:len(indices)] == indices
    assert not [p for p in list_segments(rec_dir) if p.name.endswith(".part")]  # a clean stop closes it
    assert "recovered" in (tmp_path / "recorder2.log").read_text()


def _unwritable(tmp_path):
    """A folder this user cannot write: a read-only tmpfs as root (root ignores permissions)."""
    folder = tmp_path / "ro"
    if can_mount():
        return tmpfs(folder, "ro", "size=64k"), folder / "rec"
    folder.mkdir()
    folder.chmod(0o555)
    return contextlib.nullcontext(folder), folder / "rec"


def _record_until_fatal_exit(endpoint, rec_dir, log, timeout):
    """Run `rtseg record` into rec_dir until it exits on its own with 2 (fatal); its log."""
    proc = start_cli("record", "--pub", endpoint, "--dir", str(rec_dir), log=log)
    try:
        assert proc.wait(timeout) == 2
    finally:
        stop_process(proc)
    return log.read_text()


def test_unwritable_folder_stops_the_recorder_with_a_clear_error_and_not_the_publisher(tmp_path):
    pub = PublishingThread(rate_hz=50)
    pub.start()
    assert pub.ready.wait(10)
    mount, rec_dir = _unwritable(tmp_path)
    with mount:
        log = _record_until_fatal_exit(pub.endpoint, rec_dir, tmp_path / "recorder.log", 30)
        assert f"cannot create the recording folder {rec_dir}" in log and "choose another recorder.directory" in log
        assert "Traceback" not in log
        with Subscriber(pub.endpoint) as sub:  # the publisher never noticed
            assert sub.recv(timeout=5) is not None
        assert pub.is_alive() and pub.error is None
    pub.stop()


def test_full_disk_stops_the_recorder_and_keeps_what_was_written(tmp_path):
    pub = PublishingThread(rate_hz=100, noise=True, h=120, w=160)  # ~12 kB a record
    pub.start()
    assert pub.ready.wait(10)
    disk = tmp_path / "disk"
    if can_mount():  # a real full file system
        with tmpfs(disk, "size=256k"):
            log = _record_until_fatal_exit(pub.endpoint, disk, tmp_path / "recorder.log", 60)
            written = _masks(disk)
    else:  # no mount here: the same error from the write layer, in-process
        log, written = _recorder_with_enospc(pub.endpoint, disk)
    assert "the disk is full: free space there, or lower recorder.retention_gb" in log
    assert "ENOSPC" in log and "The segmenter keeps running" in log
    assert len(written) >= 5
    indices = [m.frame_index for m in written]
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    with Subscriber(pub.endpoint) as sub:
        assert sub.recv(timeout=5) is not None
    assert pub.is_alive() and pub.error is None
    pub.stop()


def _recorder_with_enospc(endpoint, disk):
    """Runs the Recorder in this process with os.write failing (ENOSPC) after 100 kB."""
    import logging

    import rtseg.recording.segment as segment

    budget = [100_000]
    real_write = os.write

    def write(fd, data):
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, data[:budget[0]])
        budget[0] -= n
        return n

    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logging.getLogger("rtseg").addHandler(handler)
    segment.os.write = write
    try:
        code = Recorder(RecorderConfig(directory=disk), endpoint).run(lambda: False)
    finally:
        segment.os.write = real_write
        logging.getLogger("rtseg").removeHandler(handler)
    assert code == 2
    return "\n".join(records), _masks(disk)


def test_retention_keeps_the_folder_under_its_size_limit(tmp_path):
    pub = PublishingThread(rate_hz=100, noise=True)  # ~2 kB a record
    pub.start()
    assert pub.ready.wait(10)
    rec_dir = tmp_path / "rec"
    limit = 300_000
    # --no-foxglove: the sizes here assume rtseg records only (noise masks make big Foxglove polygons)
    proc = start_cli("record", "--pub", pub.endpoint, "--dir", str(rec_dir), "--segment-seconds", "0.3",
                     "--retention-gb", str(limit / 1e9), "--no-foxglove", log=tmp_path / "recorder.log")
    try:
        wait_for(lambda: "retention: deleted" in (tmp_path / "recorder.log").read_text(), 30, "a deletion")
        wait_for(lambda: len(_closed(rec_dir)) >= 2, 10, "closed segments")
        assert stop_process(proc) == 0
    finally:
        stop_process(proc)
        pub.stop()
    sizes = sum(p.stat().st_size for p in list_segments(rec_dir))
    assert sizes <= limit
    segments = list_segments(rec_dir)
    first = next(m for m in (r.message() for r in iter_segment(segments[0])) if hasattr(m, "frame_index"))
    assert first.frame_index > 0  # the oldest were deleted, the newest kept
    last = [m.frame_index for m in _masks(rec_dir)]
    assert last == list(range(last[0], last[0] + len(last)))


def test_overlay_video_segments_show_the_masks(tmp_path):
    pub = PublishingThread(rate_hz=30, frames=True, h=96, w=128)
    pub.start()
    assert pub.ready.wait(10)
    rec_dir = tmp_path / "rec"
    proc = start_cli("record", "--pub", pub.endpoint, "--dir", str(rec_dir), "--segment-seconds", "1",
                     "--video", "overlay", "--video-fps", "30", log=tmp_path / "recorder.log")
    try:
        wait_for(lambda: list_videos(rec_dir), 30, "a closed MP4")
        assert stop_process(proc) == 0
    finally:
        stop_process(proc)
        pub.stop()
    video = list_videos(rec_dir)[0]
    cap = cv2.VideoCapture(str(video))
    ok, bgr = cap.read()
    frames = 1 + sum(1 for _ in iter(lambda: cap.read()[0], False))
    cap.release()
    assert ok and frames >= 10
    rgb = bgr[..., ::-1].astype(int)
    # object 7's box (rows 25:40, cols 30:50 scaled) is blended with its colour; outside it is not
    inside, outside = rgb[32, 42], rgb[80, 110]
    color = np.array(object_color(7))
    assert np.abs(inside - (outside * 0.5 + color * 0.5)).max() < 30, (inside, outside, color)
    frames_in_log = [r for r in read_records(rec_dir) if r.kind == "frame"]
    assert len(frames_in_log) >= frames  # the JPEGs are in the crash-safe log too


def test_supervisor_entry_point_beats_records_and_stops_on_the_event(tmp_path):
    pub = PublishingThread(rate_hz=50)
    pub.start()
    assert pub.ready.wait(10)
    ctx = mp.get_context("spawn")
    cfg = Config.model_validate({"cameras": [{"id": "cam", "source": "synthetic://64x48"}],
                                 "network": {"pub": pub.endpoint},
                                 "recorder": {"enabled": True, "directory": str(tmp_path / "rec")}})
    stop_event, heartbeat, log_queue = ctx.Event(), ctx.Value("d", 0.0, lock=False), ctx.Queue()
    proc = ctx.Process(target=recorder_main, args=(cfg, stop_event, heartbeat, log_queue), name="recorder")
    proc.start()
    try:
        assert_beating(heartbeat, proc)
        wait_for(lambda: _part_records(tmp_path / "rec") > 10, 20, "records")
        assert stop_child(proc, stop_event) == 0
    finally:
        stop_child(proc, stop_event, 0)
        pub.stop()
    assert [p.suffix for p in list_segments(tmp_path / "rec")] == [".mcap"]  # closed on stop
    logged = [r.getMessage() for r in drain_queue(log_queue)]
    assert any("recording masks/prompt/event/status" in m for m in logged)
    assert any(isinstance(r.message(), PromptEvent) for r in read_records(tmp_path / "rec"))


def test_supervisor_entry_point_exits_fatal_on_an_unwritable_folder(tmp_path):
    mount, rec_dir = _unwritable(tmp_path)
    with mount:
        ctx = mp.get_context("spawn")
        cfg = Config.model_validate({"cameras": [{"id": "cam", "source": "synthetic://64x48"}],
                                     "network": {"pub": "tcp://127.0.0.1:1"},
                                     "recorder": {"enabled": True, "directory": str(rec_dir)}})
        stop_event, heartbeat = ctx.Event(), ctx.Value("d", 0.0, lock=False)
        proc = ctx.Process(target=recorder_main, args=(cfg, stop_event, heartbeat, None))
        proc.start()
        proc.join(30)
        assert proc.exitcode == 2 and not stop_event.is_set()


def test_a_second_recorder_on_the_same_folder_is_refused(tmp_path):
    rec_dir = tmp_path / "rec"
    stop = threading.Event()
    first = Recorder(RecorderConfig(directory=rec_dir), "tcp://127.0.0.1:1")
    t = threading.Thread(target=first.run, args=(stop.is_set,))
    t.start()
    try:
        wait_for(lambda: (rec_dir / ".rtseg-recorder.lock").exists(), 10, "the lock")
        time.sleep(0.2)
        assert Recorder(RecorderConfig(directory=rec_dir), "tcp://127.0.0.1:1").run(lambda: False) == 2
    finally:
        stop.set()
        t.join(10)


def test_the_recorder_warns_naming_the_endpoint_when_nothing_arrives(tmp_path, caplog):
    assert Recorder(RecorderConfig(directory=tmp_path / "x"), "tcp://127.0.0.1:1").silence_warning_s == 10.0
    pub = PublishingThread(rate_hz=20)
    pub.start()
    pub.ready.wait(10)
    stop = threading.Event()
    recorder = Recorder(RecorderConfig(directory=tmp_path / "rec"), pub.endpoint, silence_warning_s=0.6)
    t = threading.Thread(target=recorder.run, args=(stop.is_set,))
    with caplog.at_level(logging.INFO, logger="rtseg.recording.recorder"):
        t.start()
        try:
            wait_for(lambda: recorder.segment is not None and recorder.segment.records > 5, 20, "records")
            time.sleep(1.0)  # arriving: no warning
            assert "nothing has arrived" not in caplog.text
            pub.pause()
            wait_for(lambda: "nothing has arrived" in caplog.text, 10, "the warning")
            time.sleep(1.0)
            warning = [r.getMessage() for r in caplog.records if "nothing has arrived" in r.getMessage()]
            assert len(warning) == 1, warning  # once per silence
            assert re.fullmatch(rf"nothing has arrived from {re.escape(pub.endpoint)} for \d+ s: is a segmenter "
                                r"running and publishing there \(its network.pub\)\? Still waiting.", warning[0])
            pub.resume()
            wait_for(lambda: "messages arrive again" in caplog.text, 10, "the all-clear")
        finally:
            stop.set()
            t.join(10)
            pub.stop()

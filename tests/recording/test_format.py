"""Segment format: round trip, standard MCAP readers, torn tails at every byte, damaged
chunks, crash recovery, retention."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.stream_reader import StreamReader

from rtseg.protocol import FrameMessage, MasksMessage, PromptEvent
from rtseg.recording import RecordingError, SegmentScan, SegmentWriter, iter_segment, list_segments, read_records
from rtseg.recording.store import enforce_retention, new_segment_path, recover_parts, video_path
from tests.helpers.recording import frame_message, masks_for, masks_message, prompt_event, write_recording


def _decoded(records):
    return [r.message() for r in records]


def test_round_trip_keeps_every_message_and_closed_segments_are_standard_mcap(tmp_path):
    path = tmp_path / "seg.mcap"
    writer = SegmentWriter(path)
    sent = [masks_message(0), frame_message(0), prompt_event(0), masks_message(1)]
    for i, msg in enumerate(sent):
        writer.write_message(msg, log_time_ns=1000 + i)
    assert not path.exists() and writer.part_path.name == "seg.mcap.part"
    assert writer.close({"records": "4"}) == path
    assert not writer.part_path.exists()

    scan = SegmentScan(path)
    got = list(iter_segment(path, scan))
    assert scan.finished and scan.records == 4 and scan.tail_bytes == 0 and scan.bad_chunks == 0
    assert [r.topic for r in got] == ["masks.cam", "frame.cam", "prompt.cam", "masks.cam"]
    assert [r.log_time_ns for r in got] == [1000, 1001, 1002, 1003]
    msgs = _decoded(got)
    assert isinstance(msgs[0], MasksMessage) and isinstance(msgs[1], FrameMessage) and isinstance(msgs[2], PromptEvent)
    assert msgs[0] == sent[0] and msgs[2] == sent[2] and msgs[1].jpeg == sent[1].jpeg
    assert np.array_equal(msgs[3].objects[0].mask(), masks_for(1)[0])

    with open(path, "rb") as f:  # the official reader, through the summary index
        reader = make_reader(f)
        assert reader.get_summary().statistics.message_count == 4
        assert [ch.topic for _, ch, _ in reader.iter_messages()][:2] == ["masks.cam", "frame.cam"]
    with open(path, "rb") as f:  # and sequentially, checking every chunk and the data-section CRC
        assert sum(1 for _ in StreamReader(f, validate_crcs=True).records) > 4


def test_a_torn_tail_at_any_byte_loses_only_the_incomplete_record(tmp_path):
    writer = SegmentWriter(tmp_path / "seg.mcap")
    ends = [os.path.getsize(writer.part_path)]  # each record is one write(): these are the record ends
    for i in range(3):
        writer.write_message(masks_message(i))
        ends.append(os.path.getsize(writer.part_path))
    data = writer.part_path.read_bytes()
    writer.abandon()
    torn = tmp_path / "torn.mcap.part"
    for cut in range(len(data) + 1):
        torn.write_bytes(data[:cut])
        scan = SegmentScan(torn)
        got = [r.message().frame_index for r in iter_segment(torn, scan)]
        complete = sum(1 for e in ends[1:] if e <= cut)
        # every complete record, in order; a record whose chunk is whole but whose trailing
        # message index is torn is read too (the index is not needed)
        assert got == list(range(len(got))) and complete <= len(got) <= complete + 1, f"cut at byte {cut}"
        whole = max((e for e in [8, *ends] if e <= cut), default=0)  # magic, header, records
        assert 0 <= scan.tail_bytes <= cut - whole, f"cut at byte {cut}"
        assert scan.tail_bytes > 0 or cut == whole or len(got) > complete, f"cut at byte {cut}"


def test_a_damaged_chunk_is_skipped_and_the_rest_is_read(tmp_path, caplog):
    write_recording(tmp_path, 5)
    [path] = list_segments(tmp_path)
    data = bytearray(path.read_bytes())
    body = masks_message(2).objects[0].rle["counts"].encode()
    pos = data.find(body)
    assert pos > 0
    data[pos + 1] ^= 0x01  # a flipped bit inside the record of frame 2
    path.write_bytes(bytes(data))
    scan = SegmentScan(path)
    got = [r.message() for r in iter_segment(path, scan)]
    assert scan.bad_chunks == 1 and "damaged" in caplog.text
    assert [m.frame_index for m in got if isinstance(m, MasksMessage)] == [0, 1, 3, 4]


def test_not_a_segment_and_missing_recording_are_clear_errors(tmp_path):
    bad = tmp_path / "x.mcap"
    bad.write_bytes(b"hello world, not mcap")
    with pytest.raises(RecordingError, match="not an MCAP recording segment"):
        list(iter_segment(bad))
    with pytest.raises(RecordingError, match="does not exist: give a recording folder"):
        list_segments(tmp_path / "nope")


def test_recovery_closes_a_crashed_part_with_its_complete_records(tmp_path):
    write_recording(tmp_path, 3)  # one closed segment
    writer = SegmentWriter(new_segment_path(tmp_path), fsync_interval_s=0)
    for i in range(3, 6):
        writer.write_message(masks_message(i))
    writer.abandon()
    part = writer.part_path
    with open(part, "ab") as f:
        f.write(b"\x06\x10\x00\x00")  # a torn record, as a kill mid-write leaves it
    stale_video = video_path(writer.path, "cam", part=True)
    stale_video.write_bytes(b"\x00" * 100)
    leftover = writer.path.with_name(writer.path.name + ".recovering")
    leftover.write_bytes(b"junk")

    before = [m.frame_index for m in _decoded(read_records(tmp_path)) if isinstance(m, MasksMessage)]
    assert before == list(range(6))  # readers see a .part's complete records without recovery
    assert recover_parts(tmp_path) == [writer.path]
    assert not part.exists() and not stale_video.exists() and not leftover.exists()
    scan = SegmentScan(writer.path)
    assert [m.frame_index for m in _decoded(iter_segment(writer.path, scan)) if isinstance(m, MasksMessage)] == [3, 4, 5]
    assert scan.finished
    after = [m.frame_index for m in _decoded(read_records(tmp_path)) if isinstance(m, MasksMessage)]
    assert after == before


def test_a_part_next_to_its_closed_twin_is_ignored(tmp_path):
    write_recording(tmp_path, 3)
    [closed] = list_segments(tmp_path)
    twin = closed.with_name(closed.name + ".part")
    twin.write_bytes(closed.read_bytes())  # recovery renamed, then died before unlinking the .part
    assert list_segments(tmp_path) == [closed]
    recover_parts(tmp_path)
    assert twin.exists()  # not recovered twice
    assert len([m for m in _decoded(read_records(tmp_path)) if isinstance(m, MasksMessage)]) == 3


def _segments_with_ages(folder, ages_s, size=20_000):
    now = time.time()
    paths = []
    for i, age in enumerate(ages_s):
        path = new_segment_path(folder, int((now - 1000 + i) * 1e9))
        path.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * size)
        video = video_path(path, "cam", part=False)
        video.write_bytes(b"\x00" * size)
        os.utime(path, (now - age, now - age))
        paths.append(path)
    return paths, now


def test_retention_by_age_deletes_old_segments_with_their_videos(tmp_path):
    paths, now = _segments_with_ages(tmp_path, [7200, 5000, 100, 10])
    open_part = new_segment_path(tmp_path).with_name("rtseg-20991231T000000_000000Z.mcap.part")
    open_part.write_bytes(b"x" * 10)
    other = tmp_path / "notes.txt"
    other.write_text("not ours")
    deleted = enforce_retention(tmp_path, max_bytes=None, max_age_s=3600, now=now)
    assert sorted(deleted) == sorted([paths[0], paths[1], video_path(paths[0], "cam", part=False),
                                      video_path(paths[1], "cam", part=False)])
    assert paths[2].exists() and paths[3].exists() and open_part.exists() and other.exists()


def test_retention_by_size_deletes_oldest_first_and_never_the_open_segment(tmp_path):
    paths, now = _segments_with_ages(tmp_path, [40, 30, 20, 10])  # 4 x 40 kB
    open_part = tmp_path / "rtseg-20991231T000000_000000Z.mcap.part"
    open_part.write_bytes(b"x" * 30_000)
    enforce_retention(tmp_path, max_bytes=100_000, max_age_s=None, now=now)
    assert [p.exists() for p in paths] == [False, False, False, True] and open_part.exists()
    enforce_retention(tmp_path, max_bytes=10_000, max_age_s=None, now=now)  # the open one alone is too big
    assert not paths[3].exists() and open_part.exists()

"""Recordings: crash-safe MCAP segments (segment), the folder of segments (store), MP4 files
(video) and mask drawing (draw). docs/RECORDING.md describes the format."""
from rtseg.recording.segment import (
    Record,
    RecordingError,
    RecordingWriteError,
    SegmentScan,
    SegmentWriter,
    iter_segment,
)
from rtseg.recording.store import (
    RecordingReader,
    enforce_retention,
    list_segments,
    read_records,
    recover_parts,
)

__all__ = ["Record", "RecordingError", "RecordingReader", "RecordingWriteError", "SegmentScan", "SegmentWriter",
           "enforce_retention", "iter_segment", "list_segments", "read_records", "recover_parts"]

"""One recording segment: an MCAP file written one CRC-checked chunk per record.

The recorder writes `<name>.mcap.part`; every record (channel + message) is its own MCAP
chunk with a CRC32, handed to the kernel in a single write() as soon as it arrives, so a
process kill loses nothing that was received (power loss: at most `fsync_interval_s`).
Closing writes the MCAP summary and footer, fsyncs, renames to `<name>.mcap` and fsyncs the
folder. `iter_segment` reads closed files and the complete records of a `.part` (it stops at
an incomplete tail, and skips a chunk whose CRC fails). docs/RECORDING.md is the reference.
"""
from __future__ import annotations

import errno
import io
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import msgpack
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, Schema
from mcap.stream_reader import breakup_chunk
from mcap.writer import CompressionType, Writer

from rtseg import __version__
from rtseg.protocol import PROTOCOL_VERSION, Message as WireMessage, unpack

log = logging.getLogger(__name__)

MAGIC = b"\x89MCAP0\r\n"
SEGMENT_SUFFIX = ".mcap"
PART_SUFFIX = ".part"
MESSAGE_ENCODING = "rtseg-wire"  # data = msgpack array of the wire parts after the topic
PROFILE = "rtseg"
_KNOWN_OPCODES = {int(op) for op in Opcode}
_MAX_RECORD_BYTES = 1 << 31  # no rtseg record comes near this; a larger length is corruption


class RecordingError(RuntimeError):
    """A recording that cannot be read or written; the message names the file and what to do."""


class RecordingWriteError(RecordingError):
    """Writing failed (disk full, read-only or unwritable folder): restarting will not help."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


def write_error(what: str, path: Path, e: OSError) -> RecordingWriteError:
    """An OSError while writing `path`, explained with what the user can do about it."""
    code = e.errno
    name = errno.errorcode.get(code or 0, "?")
    hints = {
        errno.ENOSPC: "the disk is full: free space there, or lower recorder.retention_gb",
        errno.EDQUOT: "the disk quota is used up: free space there, or lower recorder.retention_gb",
        errno.EROFS: "the folder is on a read-only file system: choose another recorder.directory",
        errno.EACCES: "this user may not write there: fix its permissions or choose another recorder.directory",
        errno.EPERM: "this user may not write there: fix its permissions or choose another recorder.directory",
        errno.ENOTDIR: "a part of the path is a file, not a folder: choose another recorder.directory",
    }
    hint = hints.get(code or 0, "check the disk and the folder")
    return RecordingWriteError(f"cannot {what} {path}: {e.strerror or e} ({name}); {hint}", code)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _OneWritePerFlush:
    """The stream mcap.Writer writes into: it collects a record's bytes and hands them to the
    file in one os.write() on flush(), so a kill leaves whole records or a torn last one.
    (Not an io.RawIOBase: mcap.Writer would wrap that in a BufferedWriter.)"""

    def __init__(self, fd: int):
        self._fd = fd
        self._buffer = bytearray()
        self._position = 0

    def write(self, data) -> int:
        self._buffer += data
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        view = memoryview(self._buffer)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        finally:
            view.release()
            self._buffer.clear()


class SegmentWriter:
    """Append records to `path` + ".part" (or `part_path`); `close()` finishes the MCAP file and
    atomically renames it to `path`. Every OSError comes out as RecordingWriteError."""

    def __init__(self, path: Path, *, part_path: Path | None = None, fsync_interval_s: float = 1.0):
        self.path = Path(path)
        self.part_path = Path(part_path) if part_path else self.path.with_name(self.path.name + PART_SUFFIX)
        self.fsync_interval_s = fsync_interval_s
        self.records = 0
        self.bytes_written = 0
        self.opened_monotonic = time.monotonic()
        self._channels: dict[str, int] = {}
        self._schemas: dict[str, int] = {}
        self._last_fsync = time.monotonic()
        self._unsynced = False
        try:
            self._fd = os.open(self.part_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise write_error("create the segment", self.part_path, e) from None
        self._stream = _OneWritePerFlush(self._fd)
        self._writer = Writer(self._stream, compression=CompressionType.NONE, enable_data_crcs=True)
        try:
            self._writer.start(profile=PROFILE, library=f"rtseg {__version__}")
            self._stream.flush()
        except OSError as e:
            self._abandon()
            raise write_error("write the segment", self.part_path, e) from None

    def write(self, topic: str, parts: Sequence[bytes], *, log_time_ns: int, publish_time_ns: int,
              sequence: int = 0) -> None:
        """One record: the wire parts after `topic` (body, raw parts) of one message."""
        data = msgpack.packb([bytes(p) for p in parts], use_bin_type=True)
        self.write_raw(topic, MESSAGE_ENCODING, None, data, log_time_ns=log_time_ns, publish_time_ns=publish_time_ns,
                       sequence=sequence, metadata={"protocol_version": str(PROTOCOL_VERSION)})

    def write_raw(self, topic: str, message_encoding: str, schema: SchemaInfo | None, data: bytes, *,
                  log_time_ns: int, publish_time_ns: int, sequence: int = 0,
                  metadata: dict[str, str] | None = None) -> None:
        """One record on any channel (e.g. a Foxglove one: schema name/encoding/data), as its own
        CRC-checked chunk in one write(), like every record."""
        try:
            channel = self._channels.get(topic)
            if channel is None:
                schema_id = 0
                if schema is not None:
                    schema_id = self._schemas.get(schema.name, 0)
                    if not schema_id:
                        schema_id = self._writer.register_schema(schema.name, schema.encoding, schema.data)
                        self._schemas[schema.name] = schema_id
                channel = self._writer.register_channel(topic, message_encoding, schema_id, metadata or {})
                self._channels[topic] = channel
            self._writer.add_message(channel, log_time_ns, data, publish_time_ns, sequence & 0xFFFFFFFF)
            self._writer.flush()  # closes this record's chunk: one os.write
            self.bytes_written = self._stream.tell()
            self.records += 1
            self._unsynced = True
            self.sync_if_due()
        except OSError as e:
            raise write_error("write the segment", self.part_path, e) from None

    def sync_if_due(self) -> None:
        """fsync what was written if `fsync_interval_s` passed since the last fsync (call it
        when idle too, so the last records of a burst reach the disk in time)."""
        if self._unsynced and (self.fsync_interval_s == 0
                               or time.monotonic() - self._last_fsync >= self.fsync_interval_s):
            try:
                os.fsync(self._fd)
            except OSError as e:
                raise write_error("write the segment", self.part_path, e) from None
            self._last_fsync = time.monotonic()
            self._unsynced = False

    def write_message(self, msg: WireMessage, *, log_time_ns: int | None = None) -> None:
        """Record a protocol message as it is on the wire."""
        from rtseg.protocol import pack

        topic, *parts = pack(msg)
        log_time_ns = time.time_ns() if log_time_ns is None else log_time_ns
        publish = getattr(msg, "capture_wall_ns", None) or getattr(msg, "t_wall_ns", None) or log_time_ns
        self.write(topic.decode(), parts, log_time_ns=log_time_ns, publish_time_ns=publish, sequence=msg.seq)

    def age_s(self) -> float:
        return time.monotonic() - self.opened_monotonic

    def close(self, metadata: dict[str, str] | None = None) -> Path:
        """Finish the file (summary, footer), fsync, rename `.part` -> final name, fsync the folder."""
        try:
            if metadata:
                self._writer.add_metadata("rtseg", metadata)
            self._writer.finish()
            self._stream.flush()
            os.fsync(self._fd)
        except OSError as e:
            self._abandon()
            raise write_error("finish the segment", self.part_path, e) from None
        os.close(self._fd)
        self._fd = -1
        try:
            os.rename(self.part_path, self.path)
            fsync_dir(self.path.parent)
        except OSError as e:
            raise write_error("rename the finished segment", self.part_path, e) from None
        return self.path

    def _abandon(self) -> None:
        """Give up on the file after an error: its complete records stay readable."""
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    abandon = _abandon


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class SchemaInfo:
    """A channel's schema (MCAP Schema record): name, encoding ("protobuf", "jsonschema"), data."""

    name: str
    encoding: str
    data: bytes


@dataclass(frozen=True)
class RawRecord:
    """One message of any channel of a segment, as stored (what recovery copies)."""

    topic: str
    message_encoding: str
    schema: SchemaInfo | None
    metadata: dict[str, str]
    data: bytes
    log_time_ns: int
    publish_time_ns: int
    sequence: int


@dataclass(frozen=True)
class Record:
    """One recorded message: its wire topic, the parts after the topic, the recorder's wall
    clock when it arrived (`log_time_ns`) and the message's own wall time (`publish_time_ns`:
    capture time for masks and frames)."""

    topic: str
    parts: tuple[bytes, ...]
    log_time_ns: int
    publish_time_ns: int
    sequence: int

    @property
    def kind(self) -> str:
        return self.topic.partition(".")[0]

    @property
    def camera(self) -> str | None:
        return self.topic.partition(".")[2] or None

    def message(self) -> WireMessage:
        """The protocol message (checked by rtseg.protocol.unpack)."""
        return unpack([self.topic.encode(), *self.parts])


@dataclass
class SegmentScan:
    """What reading one segment found: `tail_bytes` of an incomplete last record (normal for a
    `.part` left by a kill), `bad_chunks` skipped for a CRC mismatch, `finished` when the
    file has its MCAP footer (a closed segment)."""

    path: Path
    records: int = 0
    bad_chunks: int = 0
    tail_bytes: int = 0
    finished: bool = False
    bytes_read: int = 0


def _decode_parts(data: bytes, path: Path, offset: int) -> tuple[bytes, ...] | None:
    try:
        parts = msgpack.unpackb(data, raw=False)
    except Exception as e:
        log.warning("%s: record at byte %d is not a msgpack list of parts (%s); skipped", path, offset, e)
        return None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, bytes) for p in parts):
        log.warning("%s: record at byte %d is not a list of byte strings; skipped", path, offset)
        return None
    return tuple(parts)


def iter_segment(path: str | Path, scan: SegmentScan | None = None) -> Iterator[Record]:
    """Yield the rtseg records of one segment in the order they were written (other channels,
    e.g. the Foxglove ones, are left out); fills `scan`."""
    path = Path(path)
    scan = scan if scan is not None else SegmentScan(path)
    for raw in iter_raw(path, scan):
        if raw.message_encoding != MESSAGE_ENCODING:
            continue
        parts = _decode_parts(raw.data, scan.path, scan.bytes_read)
        if parts is None:
            continue
        scan.records += 1
        yield Record(raw.topic, parts, raw.log_time_ns, raw.publish_time_ns, raw.sequence)


def iter_raw(path: str | Path, scan: SegmentScan | None = None) -> Iterator[RawRecord]:
    """Yield every message of one segment, of every channel, in the order written; fills
    `scan` (but `scan.records`, which counts rtseg records: iter_segment's)."""
    path = Path(path)
    scan = scan if scan is not None else SegmentScan(path)
    channels: dict[int, Channel] = {}
    schemas: dict[int, SchemaInfo] = {}
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        if not path.name.endswith(PART_SUFFIX):
            raise RecordingError(f"segment {path} does not exist") from None
        path = scan.path = path.with_name(path.name.removesuffix(PART_SUFFIX))  # closed since it was listed
        try:
            f = open(path, "rb")
        except OSError as e:
            raise RecordingError(f"cannot open segment {path}: {e.strerror or e}") from None
    except OSError as e:
        raise RecordingError(f"cannot open segment {path}: {e.strerror or e}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            if len(magic) < len(MAGIC) and MAGIC.startswith(magic):  # killed before the header
                scan.tail_bytes = len(magic)
                return
            raise RecordingError(f"{path} is not an MCAP recording segment (starts with {magic[:8]!r})")
        while True:
            offset = f.tell()
            head = f.read(9)
            if not head:
                break
            if len(head) < 9:
                scan.tail_bytes = size - offset
                break
            opcode, length = struct.unpack("<BQ", head)
            if opcode not in _KNOWN_OPCODES or length > _MAX_RECORD_BYTES or offset + 9 + length > size:
                scan.tail_bytes = size - offset  # torn last record (or zeros after a power loss)
                break
            body = f.read(length)
            scan.bytes_read = f.tell()
            if opcode == Opcode.CHUNK:
                try:
                    chunk = Chunk.read(ReadDataStream(io.BytesIO(body)))
                    if chunk.compression == "" and zlib.crc32(chunk.data) != chunk.uncompressed_crc:
                        raise ValueError("CRC32 mismatch")
                    inner = breakup_chunk(chunk, validate_crc=True)
                except Exception as e:
                    scan.bad_chunks += 1
                    log.warning("%s: chunk at byte %d is damaged (%s); its record is skipped", path, offset, e)
                    continue
            elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE):
                try:
                    stream = ReadDataStream(io.BytesIO(body))
                    inner = [Schema.read(stream) if opcode == Opcode.SCHEMA else
                             Channel.read(stream) if opcode == Opcode.CHANNEL else Message.read(stream, length)]
                except Exception as e:
                    scan.bad_chunks += 1
                    log.warning("%s: record at byte %d is damaged (%s); skipped", path, offset, e)
                    continue
            elif opcode in (Opcode.DATA_END, Opcode.FOOTER):
                scan.finished = True
                break
            else:
                continue
            for rec in inner:
                if isinstance(rec, Schema):
                    schemas[rec.id] = SchemaInfo(rec.name, rec.encoding, bytes(rec.data))
                elif isinstance(rec, Channel):
                    channels[rec.id] = rec
                elif isinstance(rec, Message):
                    channel = channels.get(rec.channel_id)
                    if channel is None:
                        continue
                    yield RawRecord(channel.topic, channel.message_encoding, schemas.get(channel.schema_id),
                                    dict(channel.metadata), bytes(rec.data), rec.log_time, rec.publish_time,
                                    rec.sequence)
        scan.bytes_read = size

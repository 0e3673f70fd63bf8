"""Durable optimizer folders: newest checkpoint + an append-only journal of calls after it.

A folder holds::

    settings.json          which optimizer, its settings (written once, atomically)
    LOCK                   flock()ed by the one process that writes the folder
    checkpoint-000007.bfckpt   state as of the last compaction (docs/checkpoints.md)
    journal-000007.bfj     every state-changing call since that checkpoint

Journal records are framed ``magic | payload length | CRC-32 | payload``; the
payload is a small JSON header (call kind, array manifest, extra fields)
followed by the raw arrays. Recovery reads records until the first one that is
incomplete or fails its checksum: that tail (a crash mid-append) is dropped,
truncated away, and reported with the number of bytes discarded. Nothing is
ever unpickled.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from banditfleet.checkpoint import _fsync_dir, atomic_write
from banditfleet.errors import FolderLockedError, JournalError

__all__ = ["OptimizerFolder", "encode_record", "decode_record", "scan_journal", "read_batches", "FsyncPolicy"]

logger = logging.getLogger("banditfleet")

_RECORD = struct.Struct("<4sII")
_RECORD_MAGIC = b"BFJR"
_CKPT_RE = re.compile(r"^checkpoint-(\d{6,})\.bfckpt$")
_JOURNAL_RE = re.compile(r"^journal-(\d{6,})\.bfj$")
_MAX_RECORD = 1 << 34
_HEAD_LEN = struct.Struct("<I")

FsyncPolicy = str | float | int


_HEAD_CACHE: dict[tuple[Any, ...], bytes] = {}


def encode_record(kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any] | None = None) -> bytes:
    """One framed journal record."""
    blobs = [arr.tobytes() for arr in arrays.values()]  # tobytes is C order whatever the layout
    # Single-event calls repeat the same header: encode it once per (kind, names, dtypes, shapes).
    key = None if extra else (kind, *[(name, arr.dtype, arr.shape) for name, arr in arrays.items()])
    head = _HEAD_CACHE.get(key) if key is not None else None
    if head is None:
        manifest = [[name, arr.dtype.str, list(arr.shape)] for name, arr in arrays.items()]
        doc = {"kind": kind, "arrays": manifest, "extra": extra or {}}
        text = json.dumps(doc, separators=(",", ":"), allow_nan=True).encode("utf-8")
        head = struct.pack("<I", len(text)) + text
        if key is not None and len(_HEAD_CACHE) < 4096:
            _HEAD_CACHE[key] = head
    payload = head + b"".join(blobs)
    return _RECORD.pack(_RECORD_MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_record(payload: bytes) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`encode_record` for a checksummed payload."""
    (head_len,) = struct.unpack_from("<I", payload)
    head = json.loads(payload[4 : 4 + head_len].decode("utf-8"))
    pos = 4 + head_len
    arrays = {}
    for name, dtype, shape in head["arrays"]:
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise JournalError(f"journal record array {name!r} has an object dtype")
        n = dt.itemsize * int(np.prod(shape, dtype=np.int64))
        if pos + n > len(payload):
            raise JournalError(f"journal record array {name!r} overruns its record")
        arrays[name] = np.frombuffer(payload[pos : pos + n], dt).reshape(shape).copy()
        pos += n
    return head["kind"], arrays, head["extra"]


def scan_journal(path: Path) -> tuple[list[bytes], int, int]:
    """Checksummed payloads of ``path`` in order, the length of the good prefix, and bytes after it."""
    data = path.read_bytes() if path.exists() else b""
    payloads = []
    pos = 0
    while pos + _RECORD.size <= len(data):
        magic, length, crc = _RECORD.unpack_from(data, pos)
        end = pos + _RECORD.size + length
        if magic != _RECORD_MAGIC or length > _MAX_RECORD or end > len(data):
            break
        payload = data[pos + _RECORD.size : end]
        if zlib.crc32(payload) != crc:
            break
        payloads.append(payload)
        pos = end
    return payloads, pos, len(data) - pos


def _parse_head(head: bytes):
    """kind, [(name, dtype, shape, offset in the record, element count)], extra, record arrays' end."""
    h = json.loads(head.decode("utf-8"))
    manifest = []
    pos = _RECORD.size + 4 + len(head)
    for name, dtype, shape in h["arrays"]:
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise JournalError(f"journal record array {name!r} has an object dtype")
        shape = tuple(int(x) for x in shape)
        count = math.prod(shape)
        manifest.append((name, dt, shape, pos, count))
        pos += dt.itemsize * count
    return h["kind"], manifest, h["extra"], pos


def _run_arrays(data: bytes, start: int, stride: int, count: int, manifest) -> dict[str, np.ndarray]:
    """The arrays of ``count`` records of one header laid out every ``stride`` bytes from
    ``start``, each array concatenated over the records (one strided read per array)."""
    out = {}
    if count == 1:
        for name, dt, shape, offset, n in manifest:
            out[name] = np.frombuffer(data, dt, n, start + offset).reshape(shape).copy()
        return out
    layout = np.dtype(
        {
            "names": [m[0] for m in manifest],
            "formats": [(m[1], m[2]) if m[2] else m[1] for m in manifest],
            "offsets": [m[3] for m in manifest],
            "itemsize": stride,
        }
    )
    view = np.ndarray((count,), layout, data, start)
    for name, dt, shape, offset, n in manifest:
        out[name] = np.ascontiguousarray(view[name]).reshape((count * shape[0],) + shape[1:])
    return out


_BULK = 1 << 16


def _same_records(data: bytes, mv: memoryview, pos: int, stride: int, fixed: int) -> int:
    """How many intact records from ``pos`` on repeat the frame and header of the
    ``stride``-byte record just before ``pos`` (its first ``fixed`` bytes except the CRC).

    Probes blocks of doubling size, so a journal whose kinds alternate costs
    one short probe per record and a long run a few vectorized passes.
    """
    total = 0
    crc32 = zlib.crc32
    frame = _RECORD.size
    template = np.frombuffer(data, np.uint8, fixed, pos - stride)
    block_len = 8
    while True:
        k = min((len(data) - pos) // stride, block_len)
        if k < 1 or data[pos : pos + 8] != data[pos - stride : pos - stride + 8]:
            return total
        block = np.frombuffer(data, np.uint8, k * stride, pos).reshape(k, stride)
        same = (block[:, :8] == template[:8]).all(1) & (block[:, 12:fixed] == template[12:fixed]).all(1)
        n = k if same.all() else int(np.argmin(same))
        crcs = np.ascontiguousarray(block[:n, 8:12]).view("<u4").reshape(-1).tolist()
        for i, crc in enumerate(crcs):
            start = pos + i * stride
            if crc32(mv[start + frame : start + stride]) != crc:
                return total + i
        total += n
        pos += n * stride
        if n < k:
            return total
        block_len = min(2 * block_len, _BULK)


def read_batches(
    path: Path, classify: Callable[[str], tuple[Any, int] | None] | None = None
) -> tuple[list[tuple[str, dict[str, np.ndarray], dict[str, Any]]], int, int, int]:
    """The intact records of a journal as ``(kind, arrays, extra)`` batch calls, for recovery.

    Reads records like :func:`scan_journal` (up to the first torn or corrupted
    one). Without ``classify`` every record is its own batch. With it, records
    are regrouped into few batch calls: ``classify(kind)`` gives ``(stream,
    position)`` for a kind that may be regrouped (records without extra
    fields whose arrays are 1-D of one length, with a ``rows`` array), None
    for a barrier. Streams hold disjoint state and are regrouped separately;
    within a stream a segment becomes one batch per position (position 0 =
    predict before 1 = observe), each in record order, and a position-0
    record for a row that a position-1 record of the segment already holds
    starts a new segment. The caller vouches that this equals the records
    in order (``banditfleet._journaled`` explains why it does for the
    optimizers).

    Records with the same header (kind, array names, dtypes, shapes) that
    follow each other are read in one strided pass, and single-event records
    are unpacked as scalars, so no per-record array is built. Returns the
    batches, the number of records, the length of the good prefix and the
    number of bytes after it.
    """
    data = path.read_bytes() if path.exists() else b""
    mv = memoryview(data)
    size = len(data)
    unpack = _RECORD.unpack_from
    head_len_of = _HEAD_LEN.unpack_from
    crc32 = zlib.crc32
    frame = _RECORD.size
    out: list[tuple[str, dict[str, np.ndarray], dict[str, Any]]] = []
    # stream -> [buckets by position: (kind, header signature, parts) or None, rows of position 1]
    segments: dict[Any, list[Any]] = {}

    def emit(stream: Any) -> None:
        buckets, _ = segments.pop(stream)
        for bucket in buckets:
            if bucket is not None:
                out.append((bucket[0], _join_parts(bucket[1], bucket[2]), {}))

    parsed: dict[bytes, _Header] = {}
    # Headers seen, by record length: a record is matched against them in place
    # (no copy of its header) and parsed headers are reused.
    known: dict[int, list[tuple[bytes, _Header]]] = {}
    pos = 0
    n_records = 0
    while pos + frame <= size:
        magic, length, crc = unpack(data, pos)
        end = pos + frame + length
        if magic != _RECORD_MAGIC or length > _MAX_RECORD or end > size or length < 4:
            break
        if crc32(mv[pos + frame : end]) != crc:
            break
        (hl,) = head_len_of(data, pos + frame)
        head_at = pos + frame + 4
        meta = None
        for h, m in known.get(length, ()):
            if len(h) == hl and data.startswith(h, head_at):
                meta = m
                break
        if meta is None:
            h = data[head_at : head_at + hl]
            meta = parsed.get(h)
            if meta is None:
                meta = parsed[h] = _Header(h, classify)
            known.setdefault(length, []).append((h, meta))
            if meta.end != frame + length:
                raise JournalError(f"{path}: a journal record's arrays do not fill it")
        start, stride, count = pos, frame + length, 1
        pos = end
        # Records just like this one that follow it: check their frames and
        # headers in one vectorized pass, then only their checksums one by one.
        if data[pos : pos + 8] == data[start : start + 8]:
            more = _same_records(data, mv, pos, stride, 16 + hl)
            count += more
            pos += more * stride
        n_records += count

        where = meta.where
        if where is None:
            for stream in list(segments):
                emit(stream)
            for i in range(count):
                arrays = _run_arrays(data, start + i * stride, stride, 1, meta.manifest)
                out.append((meta.kind, arrays, json.loads(json.dumps(meta.extra)) if meta.extra else {}))
            continue
        stream, position = where
        if count == 1 and meta.scalars is not None:
            part: Any = meta.scalars.unpack_from(data, start)
            rows = (part[meta.rows_index],)
        else:
            part = _run_arrays(data, start, stride, count, meta.manifest)
            rows = part["rows"].tolist()
        seg = segments.get(stream)
        if seg is not None:
            bucket = seg[0][position]
            if (bucket is not None and bucket[1] is not meta.signature) or (
                position == 0 and seg[1] and not seg[1].isdisjoint(rows)
            ):
                emit(stream)
                seg = None
        if seg is None:
            seg = segments[stream] = [[None, None], set()]
        bucket = seg[0][position]
        if bucket is None:
            seg[0][position] = (meta.kind, meta.signature, [part])
        else:
            bucket[2].append(part)
        if position == 1:
            seg[1].update(rows)
    for stream in list(segments):
        emit(stream)
    return out, n_records, pos, size - pos


_SIGNATURES: dict[Any, Any] = {}
# struct codes (standard sizes) of the dtypes single-event records hold.
_STRUCT_CODES = {("i", 8): "q", ("u", 8): "Q", ("f", 8): "d", ("i", 4): "i", ("u", 4): "I", ("f", 4): "f",
                 ("u", 1): "B", ("i", 1): "b", ("b", 1): "?"}


class _Header:
    """What recovery needs of one distinct record header, parsed once."""

    def __init__(self, head: bytes, classify: Callable[[str], Any] | None) -> None:
        self.kind, self.manifest, self.extra, self.end = _parse_head(head)
        manifest = self.manifest
        flat = bool(
            classify is not None
            and not self.extra
            and manifest
            and all(len(m[2]) == 1 and m[2][0] == manifest[0][2][0] for m in manifest)
            and any(m[0] == "rows" for m in manifest)
        )
        self.where = classify(self.kind) if flat else None
        # Records of one kind whose arrays have the same names and dtypes (not
        # necessarily lengths) can share a batch: they share this object.
        key = (self.kind, tuple((m[0], m[1].str) for m in manifest))
        self.signature = _SIGNATURES.setdefault(key, key)
        self.scalars = None
        self.rows_index = -1
        codes = [_STRUCT_CODES.get((m[1].kind, m[1].itemsize)) for m in manifest]
        if self.where is not None and all(m[2] == (1,) for m in manifest) and None not in codes and all(
            m[1].byteorder in "<=|" for m in manifest
        ):
            # One event: its values are read as Python scalars, no arrays.
            fmt, at = "<", 0
            for m, code in zip(manifest, codes):
                fmt += f"{m[3] - at}x{code}" if m[3] > at else code
                at = m[3] + m[1].itemsize
            self.scalars = struct.Struct(fmt)
            self.rows_index = [m[0] for m in manifest].index("rows")
        self.names = [m[0] for m in manifest]
        self.dtypes = [m[1] for m in manifest]


def _join_parts(signature: Any, parts: list[Any]) -> dict[str, np.ndarray]:
    """One batch from parts that are dicts of arrays or tuples of scalars (in manifest order)."""
    kind, columns = signature
    names = [c[0] for c in columns]
    dtypes = [np.dtype(c[1]) for c in columns]
    pieces: dict[str, list[np.ndarray]] = {name: [] for name in names}
    i = 0
    while i < len(parts):
        if isinstance(parts[i], tuple):
            j = i
            while j < len(parts) and isinstance(parts[j], tuple):
                j += 1
            cols = list(zip(*parts[i:j]))
            for name, dt, col in zip(names, dtypes, cols):
                pieces[name].append(np.array(col, dt))
            i = j
        else:
            for name in names:
                pieces[name].append(parts[i][name])
            i += 1
    return {name: p[0] if len(p) == 1 else np.concatenate(p) for name, p in pieces.items()}


class OptimizerFolder:
    """The files of one journaled optimizer, and the lock that makes its writer unique.

    Args:
        folder: The folder (created when missing).
        fsync: ``"batch"``: no journaled call returns before an fsync covers its
            record (an acknowledged call survives power loss); concurrent callers
            share fsyncs (:meth:`wait_durable`). ``"never"`` leaves flushing to the
            OS (survives a process crash, not power loss). A number: the call that
            finds the last fsync that many milliseconds old waits for one.

    Appends are serialized by the caller (the optimizer's lock); waiting for
    durability is not, and is thread-safe.
    """

    def __init__(self, folder: str | os.PathLike, fsync: FsyncPolicy = "batch") -> None:
        from banditfleet._boundary import FOLDER, FSYNC

        self.path = Path(FOLDER.check(folder))
        self.fsync = FSYNC.check(fsync)
        if self.path.exists() and not self.path.is_dir():
            raise JournalError(f"{self.path}: is a file, not an optimizer folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot create the optimizer folder ({exc.strerror})") from None
        self._lock_fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise FolderLockedError(f"{self.path}: another process has this optimizer folder open for writing") from None
        # Temp files of a save that a crash interrupted are garbage: the rename never happened.
        for stale in self.path.glob(".checkpoint-*.tmp"):
            stale.unlink()
        self._journal: int | None = None  # file descriptor of the current journal
        self.seq = -1
        self._last_sync = time.monotonic()
        # Group commit (see append / wait_durable). Offsets count every byte ever
        # appended through this object, across generations.
        self._cv = threading.Condition(threading.Lock())
        self._written = 0  # bytes appended (written to the OS)
        self._durable = 0  # bytes covered by a finished fsync
        self._syncing = False  # one thread runs an fsync for everyone waiting
        self._failed: OSError | None = None
        self.journal_bytes = 0  # size of the current generation's journal
        self.fsync_count = 0  # fsyncs of journal files (for tests and benchmarks)
        self.checkpoint_bytes: int | None = None  # automatic checkpoint threshold (set by open)

    # ------------------------------------------------------------- settings
    @property
    def settings_path(self) -> Path:
        return self.path / "settings.json"

    def read_settings(self) -> dict[str, Any] | None:
        if not self.settings_path.exists():
            return None
        try:
            return json.loads(self.settings_path.read_text("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise JournalError(f"{self.settings_path}: corrupted settings file") from None

    def write_settings(self, settings: dict[str, Any]) -> None:
        atomic_write(self.settings_path, [json.dumps(settings, indent=1, allow_nan=True).encode("utf-8")])

    # ---------------------------------------------------------- generations
    def checkpoint_path(self, seq: int) -> Path:
        return self.path / f"checkpoint-{seq:06d}.bfckpt"

    def journal_path(self, seq: int) -> Path:
        return self.path / f"journal-{seq:06d}.bfj"

    def checkpoint_seqs(self) -> list[int]:
        """Sequence numbers of the checkpoints present, newest first."""
        seqs = [int(m.group(1)) for f in self.path.iterdir() if (m := _CKPT_RE.match(f.name))]
        return sorted(seqs, reverse=True)

    def journal_seqs(self) -> list[int]:
        """Sequence numbers of the journals present, newest first."""
        seqs = [int(m.group(1)) for f in self.path.iterdir() if (m := _JOURNAL_RE.match(f.name))]
        return sorted(seqs, reverse=True)

    def start_generation(self, seq: int) -> None:
        """Append to ``journal-seq`` from now on (created if missing)."""
        self.close_journal()
        self.seq = seq
        path = self.journal_path(seq)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:
            os.fsync(fd)
            _fsync_dir(self.path)
        self.journal_bytes = os.fstat(fd).st_size
        self._journal = fd

    def truncate_journal(self, seq: int, good_length: int) -> None:
        with open(self.journal_path(seq), "r+b") as f:
            f.truncate(good_length)
            f.flush()
            os.fsync(f.fileno())

    def remove_older(self, seq: int) -> None:
        """Delete checkpoints and journals of generations before ``seq`` (only once ``seq`` is durable)."""
        for f in self.path.iterdir():
            m = _CKPT_RE.match(f.name) or _JOURNAL_RE.match(f.name)
            if m and int(m.group(1)) < seq:
                f.unlink()
        _fsync_dir(self.path)

    # --------------------------------------------------------------- append
    def append(self, record: bytes) -> int | None:
        """Write ``record`` at the end of the journal (the caller serializes appends).

        Returns the offset an fsync must cover before the call that made the
        record may return (pass it to :meth:`wait_durable`, outside any
        optimizer lock), or None when the fsync policy asks for no wait.
        """
        fd = self._journal
        if fd is None:
            raise JournalError(f"{self.path}: the optimizer folder is closed")
        if self._failed is not None:
            raise self._failed
        view = memoryview(record)
        while view:
            view = view[os.write(fd, view) :]
        n = len(record)
        self.journal_bytes += n
        with self._cv:
            self._written += n
            end = self._written
        if self.fsync == "batch":
            return end
        if self.fsync != "never" and (time.monotonic() - self._last_sync) * 1000.0 >= float(self.fsync):
            self._last_sync = time.monotonic()
            return end
        return None

    def wait_durable(self, offset: int) -> None:
        """Return once an fsync that started after byte ``offset`` was written has finished.

        Group commit: the first waiter runs one fsync covering everything written
        so far; callers arriving meanwhile wait for it, and the next of them to
        find its record still uncovered runs the next fsync for all of them.
        Raises :class:`JournalError` if an fsync failed (the folder is then unusable).
        """
        cv = self._cv
        with cv:
            while self._durable < offset:
                if self._failed is not None:
                    raise JournalError(f"{self.path}: fsync of the journal failed ({self._failed}); reopen the folder to recover")
                if self._syncing:
                    cv.wait()
                    continue
                self._syncing = True
                upto, fd = self._written, self._journal
                cv.release()
                error = None
                try:
                    if fd is not None:
                        os.fsync(fd)
                except OSError as exc:
                    error = exc
                finally:
                    cv.acquire()
                    self._syncing = False
                    self.fsync_count += 1
                    if error is not None:
                        self._failed = error
                    else:
                        self._durable = max(self._durable, upto)
                        self._last_sync = time.monotonic()
                    cv.notify_all()

    def sync(self) -> None:
        """Fsync everything appended so far."""
        if self._journal is not None:
            self.wait_durable(self._written)

    def close_journal(self) -> None:
        if self._journal is not None:
            try:
                self.sync()
            finally:
                with self._cv:
                    while self._syncing:
                        self._cv.wait()
                    fd, self._journal = self._journal, None
                    self._durable = self._written if self._failed is None else self._durable
                os.close(fd)

    def close(self) -> None:
        """Flush and fsync the journal and release the folder lock (released even if
        the last fsync fails, which then raises :class:`JournalError`)."""
        try:
            self.close_journal()
        finally:
            if self._lock_fd >= 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = -1

    @property
    def closed(self) -> bool:
        return self._lock_fd < 0

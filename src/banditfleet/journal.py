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


def _record_arrays(data: bytes, start: int, manifest) -> dict[str, np.ndarray]:
    """The arrays of the record at ``start`` (copies: ``data`` is not kept)."""
    return {
        name: np.frombuffer(data, dt, n, start + offset).reshape(shape).copy()
        for name, dt, shape, offset, n in manifest
    }


def _intact_records(path: Path, data: bytes, classify) -> tuple[list[int], list[int], list["_Header"], int]:
    """The intact records of ``data`` (up to the first torn or corrupted one):
    their start offsets, the index of each one's header among the distinct
    headers, those headers, and the length of the good prefix.

    A record is matched against the headers already seen for its length in
    place (no copy of its header), so each distinct header is parsed once.
    """
    mv = memoryview(data)
    size = len(data)
    unpack = _RECORD.unpack_from
    crc32 = zlib.crc32
    frame = _RECORD.size
    starts: list[int] = []
    header_of: list[int] = []
    headers: list[_Header] = []
    parsed: dict[bytes, int] = {}
    known: dict[int, list[tuple[bytes, int]]] = {}
    pos = 0
    while pos + frame <= size:
        magic, length, crc = unpack(data, pos)
        end = pos + frame + length
        if magic != _RECORD_MAGIC or length > _MAX_RECORD or end > size or length < 4:
            break
        if crc32(mv[pos + frame : end]) != crc:
            break
        for head, h in known.get(length, ()):
            if data.startswith(head, pos + frame):
                break
        else:
            (hl,) = struct.unpack_from("<I", data, pos + frame)
            if hl > length - 4:
                raise JournalError(f"{path}: a journal record's header overruns it")
            head = data[pos + frame : pos + frame + 4 + hl]
            h = parsed.get(head, -1)
            if h < 0:
                meta = _Header(head[4:], classify)
                if meta.end != frame + length:
                    raise JournalError(f"{path}: a journal record's arrays do not fill it")
                h = parsed[head] = len(headers)
                headers.append(meta)
            known.setdefault(length, []).append((head, h))
        starts.append(pos)
        header_of.append(h)
        pos = end
    return starts, header_of, headers, pos


def _gather(buf: np.ndarray, at: np.ndarray, dt: np.dtype) -> np.ndarray:
    """The ``dt`` value stored at each byte offset ``at`` of ``buf`` (one vectorized gather)."""
    raw = buf[at[:, None] + np.arange(dt.itemsize, dtype=np.int64)]
    return np.ascontiguousarray(raw).view(dt).reshape(-1)


def _single_event_columns(data: bytes, starts: list[int], header_of: list[int], headers: list["_Header"]) -> list[int]:
    """Fill the ``columns`` of every single-event header (each array gathered over
    all its records at once); return each record's index among its header's records."""
    header_arr = np.array(header_of, np.int64)
    start_arr = np.array(starts, np.int64)
    buf = np.frombuffer(data, np.uint8)
    order = np.argsort(header_arr, kind="stable")
    counts = np.bincount(header_arr, minlength=len(headers))
    local = np.empty(header_arr.shape[0], np.int64)
    local[order] = np.arange(header_arr.shape[0], dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    for h, meta in enumerate(headers):
        if meta.single:
            at = start_arr[header_arr == h]
            meta.columns = {name: _gather(buf, at + offset, dt) for name, dt, _, offset, _ in meta.manifest}
    return local.tolist()

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

    The file is read in three passes: the frames, checksums and headers
    (each distinct header parsed once), the values of single-event records
    (one vectorized gather per array over all records of a header, so no
    per-record array is built), and the segment bookkeeping.
    Returns the batches, the number of records, the length of the good
    prefix and the number of bytes after it.
    """
    data = path.read_bytes() if path.exists() else b""
    starts, header_of, headers, good = _intact_records(path, data, classify)
    n = len(starts)
    out: list[tuple[str, dict[str, np.ndarray], dict[str, Any]]] = []
    if n == 0:
        return out, 0, good, len(data) - good
    local = _single_event_columns(data, starts, header_of, headers)
    rows_of = [meta.columns["rows"].tolist() if meta.single else None for meta in headers]
    # stream -> [buckets by position: (kind, header signature, parts) or None, rows of position 1]
    segments: dict[Any, list[Any]] = {}

    def emit(stream: Any) -> None:
        buckets, _ = segments.pop(stream)
        for bucket in buckets:
            if bucket is not None:
                out.append((bucket[0], _join_parts(bucket[1], bucket[2], headers), {}))

    for start, h, j in zip(starts, header_of, local):
        meta = headers[h]
        where = meta.where
        if where is None:
            for stream in list(segments):
                emit(stream)
            arrays = _record_arrays(data, start, meta.manifest)
            out.append((meta.kind, arrays, json.loads(json.dumps(meta.extra)) if meta.extra else {}))
            continue
        stream, position = where
        if meta.single:
            row = rows_of[h][j]
            part: Any = None
        else:
            part = _record_arrays(data, start, meta.manifest)
            rows = part["rows"].tolist()
        seg = segments.get(stream)
        if seg is not None:
            bucket = seg[0][position]
            if (bucket is not None and bucket[1] is not meta.signature) or (
                position == 0 and seg[1] and (row in seg[1] if part is None else not seg[1].isdisjoint(rows))
            ):
                emit(stream)
                seg = None
        if seg is None:
            seg = segments[stream] = [[None, None], set()]
        bucket = seg[0][position]
        if bucket is None:
            bucket = seg[0][position] = (meta.kind, meta.signature, [])
        parts = bucket[2]
        if part is None:
            # Consecutive single events of one header are one slice of its columns.
            last = parts[-1] if parts else None
            if type(last) is list and last[0] == h and last[2] == j:
                last[2] = j + 1
            else:
                parts.append([h, j, j + 1])
            if position == 1:
                seg[1].add(row)
        else:
            parts.append(part)
            if position == 1:
                seg[1].update(rows)
    for stream in list(segments):
        emit(stream)
    return out, n, good, len(data) - good


_SIGNATURES: dict[Any, Any] = {}


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
        # One event per record: its values are gathered for all records of this
        # header at once (read_batches fills ``columns``).
        self.single = self.where is not None and all(m[2] == (1,) for m in manifest)
        self.columns: dict[str, np.ndarray] = {}


def _join_parts(signature: Any, parts: list[Any], headers: list[_Header]) -> dict[str, np.ndarray]:
    """One batch from parts that are dicts of arrays or ``[header, start, stop]``
    slices of a header's single-event columns."""
    names = [c[0] for c in signature[1]]
    pieces: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for part in parts:
        if type(part) is list:
            columns = headers[part[0]].columns
            for name in names:
                pieces[name].append(columns[name][part[1] : part[2]])
        else:
            for name in names:
                pieces[name].append(part[name])
    return {name: p[0].copy() if len(p) == 1 else np.concatenate(p) for name, p in pieces.items()}


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

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
import os
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from banditfleet.checkpoint import _fsync_dir, atomic_write
from banditfleet.errors import FolderLockedError, JournalError

__all__ = ["OptimizerFolder", "encode_record", "decode_record", "scan_journal", "FsyncPolicy"]

logger = logging.getLogger("banditfleet")

_RECORD = struct.Struct("<4sII")
_RECORD_MAGIC = b"BFJR"
_CKPT_RE = re.compile(r"^checkpoint-(\d{6,})\.bfckpt$")
_JOURNAL_RE = re.compile(r"^journal-(\d{6,})\.bfj$")
_MAX_RECORD = 1 << 34

FsyncPolicy = str | float | int


def encode_record(kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any] | None = None) -> bytes:
    """One framed journal record."""
    manifest = []
    blobs = []
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        manifest.append([name, arr.dtype.str, list(arr.shape)])
        blobs.append(arr.tobytes())
    head = json.dumps({"kind": kind, "arrays": manifest, "extra": extra or {}}, separators=(",", ":"), allow_nan=True).encode("utf-8")
    payload = struct.pack("<I", len(head)) + head + b"".join(blobs)
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


class OptimizerFolder:
    """The files of one journaled optimizer, and the lock that makes its writer unique.

    Args:
        folder: The folder (created when missing).
        fsync: ``"batch"`` fsyncs after every journaled call (an acknowledged call
            survives power loss), ``"never"`` leaves flushing to the OS (survives a
            process crash, not power loss), a number fsyncs when that many
            milliseconds have passed since the last fsync.
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
        self._journal = None
        self.seq = -1
        self._last_sync = time.monotonic()

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
        self._journal = open(path, "ab")
        if created:
            os.fsync(self._journal.fileno())
            _fsync_dir(self.path)

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
    def append(self, record: bytes) -> None:
        if self._journal is None:
            raise JournalError(f"{self.path}: the optimizer folder is closed")
        self._journal.write(record)
        self._journal.flush()
        if self.fsync == "batch":
            os.fsync(self._journal.fileno())
        elif self.fsync != "never":
            now = time.monotonic()
            if (now - self._last_sync) * 1000.0 >= float(self.fsync):
                os.fsync(self._journal.fileno())
                self._last_sync = now

    def sync(self) -> None:
        if self._journal is not None:
            self._journal.flush()
            os.fsync(self._journal.fileno())

    def close_journal(self) -> None:
        if self._journal is not None:
            self.sync()
            self._journal.close()
            self._journal = None

    def close(self) -> None:
        """Flush and fsync the journal and release the folder lock."""
        self.close_journal()
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    @property
    def closed(self) -> bool:
        return self._lock_fd < 0

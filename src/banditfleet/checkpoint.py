"""The checkpoint file format: self-describing, versioned, checksummed, never unpickled.

Layout (all integers little-endian; docs/checkpoints.md has the full description)::

    magic            16 bytes  b"BANDITFLEET-CKPT"
    format_version   uint32
    header_length    uint32
    header_crc32     uint32
    header           header_length bytes of UTF-8 JSON
    padding          to a multiple of 64
    blobs            each starting at a multiple of 64, described in the header
    end marker       16 bytes  b"BANDITFLEET-END\\0"

The header names the optimizer class, its settings, the banditfleet version
that wrote it, the job keys' encoding, and for every array its dtype, shape,
offset, length and CRC-32. Readers check every length and checksum before
building anything, so a truncated or corrupted file is refused with the file
and the fault named, and no byte of it is executed: keys are decoded from
JSON or raw arrays, never with pickle.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from banditfleet.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "write_checkpoint",
    "read_checkpoint",
    "encode_keys",
    "decode_keys",
    "atomic_write",
]

MAGIC = b"BANDITFLEET-CKPT"
END = b"BANDITFLEET-END\0"
# 2: batch-size optimizers store each job's registration seed (job.seed); version-1 files
# still load (their jobs take the optimizer's seed as registration seed).
# 3: per-job settings (job.prior_mean, job.prior_precision, job.num_exploration,
# job.num_pruning_rounds) and per-slot history windows (arm.slot_window, arm.slot_offset;
# history.values is the ring pool, the chunk arrays are always present when history is
# kept); version 1 and 2 files still load (their jobs take the optimizer-wide settings).
FORMAT_VERSION = 3
_ALIGN = 64
_PREFIX = struct.Struct("<16sIII")
_MAX_HEADER = 64 << 20


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


# ------------------------------------------------------------------- CRC-32
# Large arrays are checksummed in chunks on several threads (zlib.crc32 drops
# the GIL) and the chunk CRCs combined as zlib's crc32_combine does: the CRC
# of A+B is the CRC of A advanced over len(B) zero bytes, xor the CRC of B.
# Advancing is a linear map over GF(2), a 32x32 bit matrix (one int per
# column) computed once per chunk length.
_CRC_CHUNK = 8 << 20
_CRC_THREADS = max(1, min(8, os.cpu_count() or 1))


def _gf2_times(matrix: list[int], vector: int) -> int:
    out = 0
    i = 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def _gf2_compose(a: list[int], b: list[int]) -> list[int]:
    """The matrix of applying ``b``, then ``a``."""
    return [_gf2_times(a, column) for column in b]


@lru_cache(maxsize=8)
def _zeros_operator(nbytes: int) -> list[int]:
    """The matrix that advances a CRC-32 over ``nbytes`` zero bytes."""
    op = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    for _ in range(3):
        op = _gf2_compose(op, op)  # one zero byte
    result = None
    while nbytes:
        if nbytes & 1:
            result = op if result is None else _gf2_compose(op, result)
        nbytes >>= 1
        if nbytes:
            op = _gf2_compose(op, op)
    return result if result is not None else [1 << n for n in range(32)]


def _combine(crcs: list[int], chunk: int) -> int:
    """CRC-32 of consecutive ``chunk``-byte pieces, from the pieces' CRCs."""
    op = _zeros_operator(chunk)
    crc = crcs[0]
    for c in crcs[1:]:
        crc = _gf2_times(op, crc) ^ c
    return crc


class _Checksums:
    """CRC-32 of many buffers, large ones split over a thread pool (one pool per use: fork-safe)."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: list[tuple[Any, Any, memoryview | None]] = []

    def __enter__(self) -> _Checksums:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, buf: memoryview) -> None:
        """Queue the CRC of ``buf`` (a byte view that must not change until :meth:`results`)."""
        n = len(buf)
        if n < 2 * _CRC_CHUNK or _CRC_THREADS == 1:
            if n < _CRC_CHUNK or _CRC_THREADS == 1:
                self._jobs.append((zlib.crc32(buf) if n else 0, None, None))
            else:
                self._jobs.append((self._submit(buf), None, None))
            return
        full = n // _CRC_CHUNK * _CRC_CHUNK
        parts = [self._submit(buf[i : i + _CRC_CHUNK]) for i in range(0, full, _CRC_CHUNK)]
        self._jobs.append((None, parts, buf[full:]))

    def _submit(self, buf: memoryview):
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_CRC_THREADS, thread_name_prefix="banditfleet-crc")
        return self._pool.submit(zlib.crc32, buf)

    def results(self) -> list[int]:
        out = []
        for single, parts, tail in self._jobs:
            if parts is None:
                out.append(single if isinstance(single, int) else single.result())
            else:
                crc = _combine([p.result() for p in parts], _CRC_CHUNK)
                out.append(zlib.crc32(tail, crc) if len(tail) else crc)
        return out


def _bytes_of(arr: np.ndarray) -> memoryview:
    return memoryview(arr.reshape(-1)).cast("B")


# ----------------------------------------------------------------- job keys
def _encode_key(key: Hashable) -> Any:
    from banditfleet.job import Job

    if isinstance(key, bool) or isinstance(key, np.bool_):
        raise CheckpointError(f"job key {key!r}: booleans are not supported as checkpoint keys")
    if isinstance(key, (int, np.integer)):
        return int(key)
    if isinstance(key, str):
        return key
    if isinstance(key, tuple):
        return {"tuple": [_encode_key(k) for k in key]}
    if isinstance(key, Job):
        return {
            "job": [
                key.dataset,
                key.network,
                key.optimizer,
                key.target_metric,
                key.max_epochs,
                key.default_bs,
                key.default_lr,
                key.workdir,
                key.command,
            ]
        }
    raise CheckpointError(
        f"job key {key!r} of type {type(key).__name__} cannot be saved: checkpoints hold "
        "Job objects, strings, ints and tuples of those"
    )


def _decode_key(obj: Any) -> Hashable:
    from banditfleet.job import Job

    if isinstance(obj, (int, str)) and not isinstance(obj, bool):
        return obj
    if isinstance(obj, dict) and len(obj) == 1:
        if "tuple" in obj and isinstance(obj["tuple"], list):
            return tuple(_decode_key(k) for k in obj["tuple"])
        if "job" in obj and isinstance(obj["job"], list) and len(obj["job"]) == 9:
            f = obj["job"]
            return Job(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8])
    raise CheckpointError(f"unreadable job key {obj!r}")


def encode_keys(keys: list[Hashable]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Encode job keys: int64 array, UTF-8 blob with offsets, or tagged JSON.

    Returns the header entry and the arrays that carry the keys.
    """
    types = set(map(type, keys))
    if types == {int}:
        try:
            return {"encoding": "int64"}, {"keys.int64": np.fromiter(keys, np.int64, len(keys))}
        except OverflowError:
            pass
    if types == {str}:
        encoded = list(map(str.encode, keys))
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), np.uint8)
        return {"encoding": "utf8"}, {"keys.utf8": blob, "keys.offsets": offsets}
    data = json.dumps([_encode_key(k) for k in keys], separators=(",", ":"), allow_nan=True).encode("utf-8")
    return {"encoding": "json"}, {"keys.json": np.frombuffer(data, np.uint8)}


def decode_keys(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[Hashable]:
    """Inverse of :func:`encode_keys`."""
    enc = entry.get("encoding")
    if enc == "int64":
        return arrays["keys.int64"].tolist()
    if enc == "utf8":
        blob = arrays["keys.utf8"].tobytes()
        off = arrays["keys.offsets"].tolist()
        text = blob.decode("utf-8")
        if len(text) == len(blob):  # ASCII: byte offsets are character offsets
            return [text[a:b] for a, b in zip(off[:-1], off[1:])]
        return [blob[a:b].decode("utf-8") for a, b in zip(off[:-1], off[1:])]
    if enc == "json":
        return [_decode_key(o) for o in json.loads(arrays["keys.json"].tobytes().decode("utf-8"))]
    raise CheckpointError(f"unknown key encoding {enc!r}")


# ------------------------------------------------------------------ writing
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, chunks: Iterable[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` atomically: temp file in the same folder, fsync, rename, fsync folder.

    A crash at any point leaves either the old file or the complete new one.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)


def write_checkpoint(
    path: str | os.PathLike,
    optimizer: str,
    settings: dict[str, Any],
    keys: list[Hashable],
    arrays: dict[str, np.ndarray],
    extra: dict[str, Any] | None = None,
) -> int:
    """Write one checkpoint atomically; returns its size in bytes."""
    from banditfleet import __version__
    from banditfleet._boundary import PATH

    PATH.check(path)

    key_entry, key_arrays = encode_keys(keys)
    all_arrays = {**key_arrays, **{k: np.ascontiguousarray(v) for k, v in arrays.items()}}
    with _Checksums() as sums:
        for arr in all_arrays.values():
            sums.add(_bytes_of(arr))
        crcs = sums.results()
    manifest = []
    offset = 0
    for (name, arr), crc in zip(all_arrays.items(), crcs):
        manifest.append(
            {
                "name": name,
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "offset": offset,
                "nbytes": int(arr.nbytes),
                "crc32": crc,
            }
        )
        offset = _aligned(offset + arr.nbytes)
    header = {
        "format": "banditfleet-checkpoint",
        "format_version": FORMAT_VERSION,
        "banditfleet_version": __version__,
        "optimizer": optimizer,
        "settings": settings,
        "n_jobs": len(keys),
        "keys": key_entry,
        "extra": extra or {},
        "arrays": manifest,
        "data_nbytes": offset,
    }
    header_bytes = json.dumps(header, separators=(",", ":"), allow_nan=True).encode("utf-8")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes), zlib.crc32(header_bytes))
    head = prefix + header_bytes
    head += b"\0" * (_aligned(len(head)) - len(head))

    def chunks():
        yield head
        for entry, arr in zip(manifest, all_arrays.values()):
            if arr.nbytes:
                yield _bytes_of(arr)
            pad = _aligned(entry["nbytes"]) - entry["nbytes"]
            if pad:
                yield b"\0" * pad
        yield END

    atomic_write(path, chunks())
    return len(head) + offset + len(END)


# ------------------------------------------------------------------ reading
def _read_at(f, offset: int, n: int) -> bytes:
    f.seek(offset)
    out = bytearray(n)
    got = _readinto_at(f, offset, memoryview(out))
    return bytes(out[:got])


def _readinto_at(f, offset: int, buf: memoryview) -> int:
    """Fill ``buf`` from ``offset`` (fewer bytes only at the end of the file); returns the count."""
    f.seek(offset)
    pos = 0
    while pos < len(buf):
        got = f.readinto(buf[pos:])
        if not got:
            break
        pos += got
    return pos


def read_checkpoint(path: str | os.PathLike, expect_optimizer: str | None = None) -> tuple[dict[str, Any], list[Hashable], dict[str, np.ndarray]]:
    """Read and fully verify a checkpoint: ``(header, keys, arrays)``.

    Raises :class:`~banditfleet.errors.CheckpointError` naming the file and
    the fault for anything but a complete, intact checkpoint of the expected
    optimizer written by this or an older format version.
    """
    from banditfleet._boundary import PATH

    path = Path(PATH.check(path))

    def fail(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: {what}")

    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise fail("no such checkpoint file") from None
    except IsADirectoryError:
        raise fail("is a folder, not a checkpoint file") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise fail("the file is empty (not a banditfleet checkpoint)")
        prefix = _read_at(f, 0, min(size, _PREFIX.size))
        if len(prefix) < _PREFIX.size or prefix[:16] != MAGIC:
            raise fail("not a banditfleet checkpoint (wrong magic bytes)")
        _, version, header_len, header_crc = _PREFIX.unpack(prefix)
        if version > FORMAT_VERSION:
            raise fail(
                f"written in checkpoint format version {version}, newer than this banditfleet reads "
                f"(up to {FORMAT_VERSION}); upgrade banditfleet to load it"
            )
        if version < 1:
            raise fail(f"unknown checkpoint format version {version}")
        if header_len > _MAX_HEADER or _PREFIX.size + header_len > size:
            raise fail("truncated: the header is incomplete")
        header_bytes = _read_at(f, _PREFIX.size, header_len)
        if len(header_bytes) != header_len:
            raise fail("truncated: the header is incomplete")
        if zlib.crc32(header_bytes) != header_crc:
            raise fail("corrupted: the header checksum does not match")
        try:
            header = json.loads(header_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise fail("corrupted: the header is not valid JSON") from None
        if not isinstance(header, dict) or header.get("format") != "banditfleet-checkpoint":
            raise fail("not a banditfleet checkpoint header")
        if expect_optimizer is not None and header.get("optimizer") != expect_optimizer:
            raise fail(f"holds a {header.get('optimizer')} checkpoint, not a {expect_optimizer} one")
        data_start = _aligned(_PREFIX.size + header_len)
        try:
            data_nbytes = int(header["data_nbytes"])
            manifest = list(header["arrays"])
        except (KeyError, TypeError, ValueError):
            raise fail("corrupted: the header lacks the array manifest") from None
        expected_size = data_start + data_nbytes + len(END)
        if size < expected_size:
            raise fail(f"truncated: {size} bytes, the header describes {expected_size}")
        if size > expected_size or _read_at(f, expected_size - len(END), len(END)) != END:
            raise fail("corrupted: the end marker is missing or misplaced")
        # Each array is read straight into its own new array, checksummed on
        # worker threads while the next one is read.
        arrays: dict[str, np.ndarray] = {}
        expected_crcs = []  # (name, array, stored CRC), in file order
        with _Checksums() as sums:
            for entry in manifest:
                try:
                    name = str(entry["name"])
                    dtype = np.dtype(entry["dtype"])
                    shape = tuple(int(s) for s in entry["shape"])
                    offset, nbytes = int(entry["offset"]), int(entry["nbytes"])
                    stored_crc = int(entry.get("crc32", -1))
                except (KeyError, TypeError, ValueError):
                    raise fail("corrupted: an array entry in the header is malformed") from None
                if (
                    dtype.hasobject
                    or min(shape, default=0) < 0
                    or offset < 0
                    or offset + nbytes > data_nbytes
                    or nbytes != dtype.itemsize * math.prod(shape)
                ):
                    raise fail(f"corrupted: array {name!r} has an impossible layout")
                arr = np.empty(shape, dtype)
                raw = _bytes_of(arr)
                if nbytes and _readinto_at(f, data_start + offset, raw) != nbytes:
                    raise fail("truncated: the file changed while it was read")
                sums.add(raw)
                arrays[name] = arr
                expected_crcs.append((name, arr, stored_crc))
            for (name, arr, want), got in zip(expected_crcs, sums.results()):
                if arr.nbytes and got != want:
                    raise fail(f"corrupted: array {name!r} fails its checksum")
    try:
        keys = decode_keys(header["keys"], arrays)
    except CheckpointError as exc:
        raise fail(f"corrupted: {exc}") from None
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError, TypeError):
        raise fail("corrupted: the job keys cannot be decoded") from None
    if len(keys) != header.get("n_jobs"):
        raise fail("corrupted: the number of job keys does not match the header")
    for k in list(arrays):
        if k.startswith("keys."):
            del arrays[k]
    return header, keys, arrays

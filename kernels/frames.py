"""Journal frames for recovery: the intact records of a journal, and its segment chain.

A journal (``banditfleet.journal``) is a byte string of records framed
``magic | payload length | CRC-32 | payload``, each payload starting with the
length of a JSON header. Recovery of a long journal spent most of its time
walking those frames in Python (a struct unpack, a memoryview slice and a
``zlib.crc32`` call per record: about 7,700 instructions each). These kernels
walk them over the bytes as a ``uint8`` array instead, and find the distinct
headers on the way, so Python parses each distinct header once.

The CRC is zlib's (the reflected polynomial 0xEDB88320), table-driven one byte
at a time; ``tests/test_frames.py`` checks it, the frame walk and the header
grouping against ``zlib`` and a plain Python model.
"""

from __future__ import annotations

import numba
import numpy as np

from banditfleet.kernels._config import JIT, INLINE

__all__ = ["CRC_TABLE", "crc32", "scan_frames", "segment_chain", "FRAME_OK", "FRAME_BAD_HEADER", "FRAME_TABLE_FULL"]


def _crc_table() -> np.ndarray:
    table = np.empty(256, np.uint32)
    for byte in range(256):
        c = byte
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table[byte] = c
    return table


CRC_TABLE = _crc_table()

# scan_frames statuses: every intact record scanned; a checksummed record whose
# header length overruns it (the journal is not ours or is damaged beyond a torn
# tail); the header table is half full (call again with a larger one).
FRAME_OK = 0
FRAME_BAD_HEADER = 1
FRAME_TABLE_FULL = 2

_FRAME = 12  # magic, payload length, CRC-32: three little-endian uint32


@numba.njit(**INLINE)
def _u32(buf, at):
    return (
        np.uint32(buf[at])
        | (np.uint32(buf[at + 1]) << np.uint32(8))
        | (np.uint32(buf[at + 2]) << np.uint32(16))
        | (np.uint32(buf[at + 3]) << np.uint32(24))
    )


@numba.njit(**JIT)
def crc32(buf, start, stop, table):
    """zlib's CRC-32 of ``buf[start:stop]``."""
    c = np.uint32(0xFFFFFFFF)
    for i in range(start, stop):
        c = table[(c ^ np.uint32(buf[i])) & np.uint32(0xFF)] ^ (c >> np.uint32(8))
    return c ^ np.uint32(0xFFFFFFFF)


@numba.njit(**JIT)
def scan_frames(buf, magic, max_length, table, starts, header_of, header_first, header_index):
    """Walk the records of ``buf`` up to the first torn or corrupted one.

    For record ``i`` (in file order) writes its start offset to ``starts[i]``
    and the number of its distinct header to ``header_of[i]``; for distinct
    header ``k``, ``header_first[k]`` is the start of its first record. Two
    records share a header number when their payload lengths and header bytes
    are equal. ``header_index`` (power-of-two size, filled with -1) is the hash
    table that finds them; ``starts`` and ``header_of`` hold at least
    ``len(buf) // 16`` entries. Returns ``(status, records, good prefix length,
    distinct headers)``; with :data:`FRAME_BAD_HEADER` the record at the good
    prefix length is the offending one, with :data:`FRAME_TABLE_FULL` call
    again with a table twice the size.
    """
    size = buf.shape[0]
    mask = header_index.shape[0] - 1
    pos = 0
    n = 0
    n_headers = 0
    while pos + _FRAME <= size:
        length = _u32(buf, pos + 4)
        end = pos + _FRAME + np.int64(length)
        if _u32(buf, pos) != magic or length > max_length or end > size or length < 4:
            break
        if crc32(buf, pos + _FRAME, end, table) != _u32(buf, pos + 8):
            break
        head_end = pos + _FRAME + 4 + np.int64(_u32(buf, pos + _FRAME))
        if head_end > end:
            return FRAME_BAD_HEADER, n, pos, n_headers
        # FNV-1a over the payload length and the header bytes.
        h = np.uint64(0xCBF29CE484222325) ^ np.uint64(length)
        for i in range(pos + _FRAME, head_end):
            h = (h ^ np.uint64(buf[i])) * np.uint64(0x100000001B3)
        slot = np.int64(h & np.uint64(mask))
        while True:
            k = header_index[slot]
            if k < 0:
                if 2 * (n_headers + 1) > header_index.shape[0]:
                    return FRAME_TABLE_FULL, n, pos, n_headers
                header_index[slot] = n_headers
                header_first[n_headers] = pos
                k = n_headers
                n_headers += 1
                break
            first = header_first[k]
            same = _u32(buf, first + 4) == length
            if same:
                for i in range(head_end - pos - _FRAME):
                    if buf[first + _FRAME + i] != buf[pos + _FRAME + i]:
                        same = False
                        break
            if same:
                break
            slot = (slot + 1) & mask
        starts[n] = pos
        header_of[n] = k
        n += 1
        pos = end
    return FRAME_OK, n, pos, n_headers


@numba.njit(**JIT)
def segment_chain(candidates, group, depends_on, group_start, starts_segment):
    """Mark the records that start a new segment of their group.

    ``candidates`` (increasing record numbers) are the records that depend on
    an earlier record ``depends_on[i]`` of their group ``group[i]``; a
    candidate starts a new segment when what it depends on lies in the
    current segment of its group (at or after that segment's first record).
    ``group_start`` (one entry per group, filled with -1) is scratch.
    """
    for i in range(candidates.shape[0]):
        g = group[i]
        if depends_on[i] >= group_start[g]:
            group_start[g] = candidates[i]
            starts_segment[candidates[i]] = True

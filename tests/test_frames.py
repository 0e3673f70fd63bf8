"""The journal frame kernels (kernels/frames.py) against zlib and plain Python models.

``scan_frames`` must find the same intact records as a frame-by-frame walk with
``zlib.crc32`` (the model below), number headers the way a dict of header bytes
would, and stop at the same torn or corrupted record; ``segment_chain`` must mark
the segment starts a direct reading of its rule marks.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from hypothesis import given, settings, strategies as st

from banditfleet.kernels.frames import (
    CRC_TABLE,
    FRAME_BAD_HEADER,
    FRAME_OK,
    FRAME_TABLE_FULL,
    crc32,
    scan_frames,
    segment_chain,
)

MAGIC = b"BFJR"
MAGIC_U32 = np.uint32(struct.unpack("<I", MAGIC)[0])


def _record(header: bytes, body: bytes) -> bytes:
    payload = struct.pack("<I", len(header)) + header + body
    return MAGIC + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def _model(data: bytes):
    """Frame by frame with zlib: (starts, header numbers, good prefix length)."""
    starts, numbers, seen = [], [], {}
    pos = 0
    while pos + 12 <= len(data):
        magic, length, crc = struct.unpack_from("<4sII", data, pos)
        end = pos + 12 + length
        if magic != MAGIC or end > len(data) or length < 4 or zlib.crc32(data[pos + 12 : end]) != crc:
            break
        (head_len,) = struct.unpack_from("<I", data, pos + 12)
        key = (length, data[pos + 16 : pos + 16 + head_len])
        numbers.append(seen.setdefault(key, len(seen)))
        starts.append(pos)
        pos = end
    return starts, numbers, pos


def _scan(data: bytes, table_size: int = 1024):
    buf = np.frombuffer(data, np.uint8)
    cap = len(data) // 16 + 1
    starts, header_of = np.empty(cap, np.int64), np.empty(cap, np.int64)
    first, index = np.empty(table_size // 2 + 1, np.int64), np.full(table_size, -1, np.int64)
    status, n, good, n_headers = scan_frames(buf, MAGIC_U32, 1 << 34, CRC_TABLE, starts, header_of, first, index)
    return status, starts[:n].tolist(), header_of[:n].tolist(), good, first[:n_headers].tolist()


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_crc32_equals_zlib(data):
    buf = np.frombuffer(data, np.uint8) if data else np.zeros(0, np.uint8)
    assert int(crc32(buf, 0, len(data), CRC_TABLE)) == zlib.crc32(data)


records = st.lists(
    st.tuples(st.sampled_from([b'{"kind":"a"}', b'{"kind":"bb"}', b"{}", b""]), st.binary(max_size=24)),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(records, st.integers(0, 2000), st.sampled_from(["none", "cut", "flip"]))
def test_scan_frames_equals_a_walk_with_zlib(recs, where, damage):
    data = bytearray(b"".join(_record(h, b) for h, b in recs))
    if data and damage == "cut":
        data = data[: where % len(data)]
    elif data and damage == "flip":
        data[where % len(data)] ^= 0x41
    data = bytes(data)
    status, starts, numbers, good, first = _scan(data)
    want_starts, want_numbers, want_good = _model(data)
    assert status == FRAME_OK
    assert (starts, good) == (want_starts, want_good)
    # Same partition into headers, numbered in order of first appearance.
    assert numbers == want_numbers
    assert first == [want_starts[want_numbers.index(k)] for k in range(len(first))]


def test_a_full_header_table_asks_for_a_larger_one():
    data = b"".join(_record(b'{"n":%d}' % i, b"") for i in range(20))
    assert _scan(data, table_size=8)[0] == FRAME_TABLE_FULL
    status, starts, numbers, good, _ = _scan(data, table_size=64)
    assert status == FRAME_OK and numbers == list(range(20)) and good == len(data)


def test_a_header_longer_than_its_record_is_reported_where_it_is():
    good = _record(b"{}", b"x")
    payload = struct.pack("<I", 100) + b"{}"
    bad = MAGIC + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    status, starts, _, at, _ = _scan(good + bad)
    assert status == FRAME_BAD_HEADER and starts == [0] and at == len(good)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-1, 30)), max_size=60))
def test_segment_chain_marks_what_its_rule_says(items):
    # Record r depends on record dep (< r) of its group, or on nothing (-1).
    group = np.array([g for g, _ in items], np.int64)
    dep = np.array([d if 0 <= d < r else -1 for r, (_, d) in enumerate(items)], np.int64)
    model = [False] * len(items)
    start = {}
    for r in range(len(items)):
        if dep[r] >= 0 and dep[r] >= start.get(int(group[r]), -1):
            start[int(group[r])] = r
            model[r] = True
    cand = np.nonzero(dep >= 0)[0]
    marks = np.zeros(len(items), np.bool_)
    segment_chain(cand, group[cand], dep[cand], np.full(4, -1, np.int64), marks)
    assert marks.tolist() == model

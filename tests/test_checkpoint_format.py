"""The checkpoint file format: round trips, and every kind of bad file refused by name."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet import Job
from banditfleet.checkpoint import FORMAT_VERSION, MAGIC, atomic_write, read_checkpoint, write_checkpoint
from banditfleet.errors import CheckpointError

ARRAYS = {
    "a": np.arange(10, dtype=np.int64),
    "b": np.linspace(-1, 1, 7),
    "c": np.zeros((3, 2), np.uint8),
    "empty": np.zeros(0, np.float64),
}


def _write(path, keys=("x", "y"), optimizer="Demo", arrays=ARRAYS):
    return write_checkpoint(path, optimizer, {"window_size": 3, "prior": float("inf")}, list(keys), arrays, {"note": 1})


def test_round_trip_arrays_settings_and_header(tmp_path):
    p = tmp_path / "c.bfckpt"
    size = _write(p)
    assert p.stat().st_size == size
    header, keys, arrays = read_checkpoint(p, "Demo")
    assert keys == ["x", "y"]
    assert header["settings"] == {"window_size": 3, "prior": float("inf")}
    assert header["format_version"] == FORMAT_VERSION and header["banditfleet_version"]
    assert header["extra"] == {"note": 1}
    assert arrays.keys() == ARRAYS.keys()
    for k, v in ARRAYS.items():
        assert arrays[k].dtype == v.dtype and arrays[k].shape == v.shape
        assert arrays[k].tobytes() == v.tobytes()
        assert arrays[k].flags.writeable


job_keys = st.recursive(
    st.one_of(
        st.integers(-(2**70), 2**70),
        st.text(max_size=8),
        st.builds(
            Job,
            st.text(max_size=5),
            st.text(max_size=5),
            st.sampled_from(["adam", "sgd"]),
            st.floats(allow_nan=False),
            st.integers(1, 100),
            st.one_of(st.none(), st.integers(1, 1024)),
            st.one_of(st.none(), st.floats(allow_nan=False)),
            st.one_of(st.none(), st.text(max_size=5)),
            st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=3)),
        ),
    ),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)


@settings(max_examples=40)
@given(keys=st.lists(job_keys, max_size=12, unique=True))
def test_keys_of_every_supported_kind_round_trip(tmp_path_factory, keys):
    p = tmp_path_factory.mktemp("k") / "c.bfckpt"
    _write(p, keys=keys)
    _, back, _ = read_checkpoint(p)
    assert back == keys
    assert [type(k) for k in back] == [type(k) for k in keys]


@pytest.mark.parametrize("key", [1.5, None, b"bytes", frozenset({1}), ("ok", 2.5), True])
def test_unsupported_keys_are_refused_at_save_time(tmp_path, key):
    p = tmp_path / "c.bfckpt"
    _write(p)
    before = p.read_bytes()
    with pytest.raises(CheckpointError, match="cannot be saved|booleans"):
        _write(p, keys=["fine", key])
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["c.bfckpt"]


def test_truncated_files_are_refused_at_every_length(tmp_path):
    p = tmp_path / "c.bfckpt"
    _write(p)
    good = p.read_bytes()
    bad = tmp_path / "t.bfckpt"
    for n in list(range(0, 64)) + list(range(64, len(good), 7)) + [len(good) - 1]:
        bad.write_bytes(good[:n])
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(bad)
        assert str(bad) in str(info.value)


@settings(max_examples=60)
@given(data=st.data())
def test_any_flipped_byte_is_detected(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("f") / "c.bfckpt"
    _write(p)
    raw = bytearray(p.read_bytes())
    pos = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    raw[pos] ^= flip
    p.write_bytes(bytes(raw))
    try:
        header, keys, arrays = read_checkpoint(p)
    except CheckpointError as exc:
        assert str(p) in str(exc)
        return
    # Only bytes that carry no information (alignment padding) may change unnoticed.
    assert keys == ["x", "y"]
    for k, v in ARRAYS.items():
        assert arrays[k].tobytes() == v.tobytes()


def test_empty_wrong_magic_newer_version_wrong_optimizer(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a checkpoint at all\n" * 4)
    with pytest.raises(CheckpointError, match="not a banditfleet checkpoint"):
        read_checkpoint(text)
    with pytest.raises(CheckpointError, match="no such"):
        read_checkpoint(tmp_path / "missing")
    p = tmp_path / "c.bfckpt"
    _write(p)
    with pytest.raises(CheckpointError, match="holds a Demo checkpoint, not a Other one"):
        read_checkpoint(p, "Other")
    raw = bytearray(p.read_bytes())
    struct.pack_into("<I", raw, len(MAGIC), FORMAT_VERSION + 1)
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="newer than this banditfleet reads"):
        read_checkpoint(p)


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path):
    p = tmp_path / "c.bfckpt"
    _write(p)
    before = p.read_bytes()

    def crashing_chunks():
        yield b"partial data"
        raise RuntimeError("simulated crash mid-save")

    with pytest.raises(RuntimeError):
        atomic_write(p, crashing_chunks())
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["c.bfckpt"]
    read_checkpoint(p)


def test_header_checksum_guards_the_settings(tmp_path):
    p = tmp_path / "c.bfckpt"
    _write(p)
    raw = bytearray(p.read_bytes())
    start = raw.index(b'"window_size":3')
    raw[start + len('"window_size":')] = ord("4")
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="header checksum"):
        read_checkpoint(p)
    # A forger who also fixes the header CRC still cannot make us run code: it is data.
    header_len = struct.unpack_from("<I", raw, 20)[0]
    struct.pack_into("<I", raw, 24, zlib.crc32(bytes(raw[28 : 28 + header_len])))
    p.write_bytes(bytes(raw))
    header, _, _ = read_checkpoint(p)
    assert header["settings"]["window_size"] == 4

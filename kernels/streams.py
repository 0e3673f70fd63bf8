"""Per-job PCG64 streams held as arrays, bit-identical to numpy's ``PCG64``.

A stream is nothing but state: the 128-bit LCG state and increment (each as
two uint64 halves) plus numpy's one-slot buffer for 32-bit draws
(``has_uint32`` and ``uinteger``). Many streams live side by side in a
:class:`Streams` tuple of 1-D arrays, one element per job row, and every kernel
here takes that tuple and a row index. A job's draws therefore never depend on
which other jobs share a batch.

The generator is numpy's PCG64 (XSL-RR 128/64): step first, then output the
xor of the two state halves rotated by the top six state bits.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = [
    "Streams",
    "allocate_streams",
    "next_uint64",
    "next_uint32",
    "next_double",
    "load_stream",
    "store_stream",
    "next_uint64_s",
    "next_uint32_s",
    "next_double_s",
    "seed_streams",
    "seed_sequence_state",
    "copy_stream",
]

_U64 = np.uint64
_MASK32 = np.uint64(0xFFFFFFFF)
# numpy's PCG_DEFAULT_MULTIPLIER_128, split in halves.
_MULT_HI = np.uint64(2549297995355413924)
_MULT_LO = np.uint64(4865540595714422341)


class Streams(NamedTuple):
    """Struct-of-arrays PCG64 states, one element per job row."""

    state_hi: np.ndarray  # uint64, high 64 bits of the 128-bit LCG state
    state_lo: np.ndarray  # uint64, low 64 bits
    inc_hi: np.ndarray  # uint64, high 64 bits of the (odd) increment
    inc_lo: np.ndarray  # uint64, low 64 bits
    has_uint32: np.ndarray  # uint8, 1 when `uinteger` holds a buffered draw
    uinteger: np.ndarray  # uint32, the buffered upper half of the last 64-bit draw


def allocate_streams(n: int) -> Streams:
    """Zeroed stream arrays for ``n`` rows (seed them before drawing)."""
    return Streams(
        np.zeros(n, np.uint64),
        np.zeros(n, np.uint64),
        np.zeros(n, np.uint64),
        np.zeros(n, np.uint64),
        np.zeros(n, np.uint8),
        np.zeros(n, np.uint32),
    )


@intrinsic
def _umulh(typingctx, a, b):
    """High 64 bits of the 128-bit product of two uint64 (one ``mul``/``mulx``)."""
    if a != types.uint64 or b != types.uint64:
        return None
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i128 = ir.IntType(128)
        wide = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        return builder.trunc(builder.lshr(wide, ir.Constant(i128, 64)), ir.IntType(64))

    return sig, codegen


from ._config import INLINE as _INLINE, JIT as _JIT


# A stream's state as a value: (state_hi, state_lo, inc_hi, inc_lo, has_uint32,
# uinteger). Batch kernels load a row once, draw on the tuple (which LLVM keeps
# in registers) and store it back once; the `*_s` functions return the new
# state together with the draw.


@numba.njit(**_INLINE)
def load_stream(streams, row):
    """The row's stream state as a tuple (see :func:`store_stream`)."""
    return (
        streams.state_hi[row],
        streams.state_lo[row],
        streams.inc_hi[row],
        streams.inc_lo[row],
        streams.has_uint32[row],
        streams.uinteger[row],
    )


@numba.njit(**_INLINE)
def store_stream(streams, row, st):
    """Write a state tuple back to the row."""
    streams.state_hi[row] = st[0]
    streams.state_lo[row] = st[1]
    streams.inc_hi[row] = st[2]
    streams.inc_lo[row] = st[3]
    streams.has_uint32[row] = st[4]
    streams.uinteger[row] = st[5]


@numba.njit(**_INLINE)
def next_uint64_s(st):
    """(new state, numpy's next 64-bit output) for a state tuple."""
    shi = st[0]
    slo = st[1]
    # state = state * MULT + inc (mod 2**128)
    lo = slo * _MULT_LO
    hi = _umulh(slo, _MULT_LO) + slo * _MULT_HI + shi * _MULT_LO
    new_lo = lo + st[3]
    carry = _U64(1) if new_lo < lo else _U64(0)
    new_hi = hi + st[2] + carry
    rot = new_hi >> _U64(58)
    x = new_hi ^ new_lo
    value = (x >> rot) | (x << ((_U64(64) - rot) & _U64(63)))
    return (new_hi, new_lo, st[2], st[3], st[4], st[5]), value


@numba.njit(**_INLINE)
def next_uint32_s(st):
    """numpy's buffered 32-bit draw on a state tuple: low half first, the high half is kept."""
    if st[4]:
        return (st[0], st[1], st[2], st[3], np.uint8(0), st[5]), st[5]
    st, value = next_uint64_s(st)
    return (st[0], st[1], st[2], st[3], np.uint8(1), np.uint32(value >> _U64(32))), np.uint32(value & _MASK32)


@numba.njit(**_INLINE)
def next_double_s(st):
    """A double in [0, 1) from the top 53 bits, as numpy's ``next_double``."""
    st, value = next_uint64_s(st)
    return st, np.float64(value >> _U64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(**_JIT)
def next_uint64(streams, row):
    """Advance ``row``'s stream and return numpy's next 64-bit output."""
    st, value = next_uint64_s(load_stream(streams, row))
    store_stream(streams, row, st)
    return value


@numba.njit(**_JIT)
def next_uint32(streams, row):
    """numpy's buffered 32-bit draw: low half first, the high half is kept."""
    st, value = next_uint32_s(load_stream(streams, row))
    store_stream(streams, row, st)
    return value


@numba.njit(**_JIT)
def next_double(streams, row):
    """A double in [0, 1) from the top 53 bits, as numpy's ``next_double``."""
    st, value = next_double_s(load_stream(streams, row))
    store_stream(streams, row, st)
    return value


# ---------------------------------------------------------------------------
# Seeding: numpy's SeedSequence(int).generate_state(4, uint64) followed by
# PCG64's srandom (state = 0; inc = 2*initseq + 1; step; state += initstate; step).
# All SeedSequence arithmetic is modulo 2**32.
_INIT_A = np.uint32(0x43B0D7E5)
_MULT_A = np.uint32(0x931E8875)
_INIT_B = np.uint32(0x8B51F9DD)
_MULT_B = np.uint32(0x58F38DED)
_MIX_MULT_L = np.uint32(0xCA01F9DD)
_MIX_MULT_R = np.uint32(0x4973F715)
_XSHIFT = np.uint32(16)
_POOL_SIZE = 4


@numba.njit(**_INLINE)
def _hashmix(value, hash_const):
    value = np.uint32(value ^ hash_const[0])
    hash_const[0] = np.uint32(hash_const[0] * _MULT_A)
    value = np.uint32(value * hash_const[0])
    return np.uint32(value ^ (value >> _XSHIFT))


@numba.njit(**_INLINE)
def _mix(x, y):
    result = np.uint32(np.uint32(_MIX_MULT_L * x) - np.uint32(_MIX_MULT_R * y))
    return np.uint32(result ^ (result >> _XSHIFT))


@numba.njit(**_JIT)
def seed_sequence_state(seed, out):
    """Write ``SeedSequence(seed).generate_state(4, np.uint64)`` into ``out``.

    ``seed`` is a uint64 (numpy's entropy words are its 32-bit halves; a seed
    below 2**32 is one word, which hashes the same as that word and a zero).
    """
    entropy = np.empty(2, np.uint32)
    entropy[0] = np.uint32(seed & _MASK32)
    entropy[1] = np.uint32(seed >> _U64(32))
    pool = np.empty(_POOL_SIZE, np.uint32)
    hash_const = np.empty(1, np.uint32)
    hash_const[0] = _INIT_A
    for i in range(_POOL_SIZE):
        pool[i] = _hashmix(entropy[i] if i < 2 else np.uint32(0), hash_const)
    for i_src in range(_POOL_SIZE):
        for i_dst in range(_POOL_SIZE):
            if i_src != i_dst:
                pool[i_dst] = _mix(pool[i_dst], _hashmix(pool[i_src], hash_const))
    words = np.empty(8, np.uint32)
    mult = _INIT_B
    for i_dst in range(8):
        data_val = np.uint32(pool[i_dst % _POOL_SIZE] ^ mult)
        mult = np.uint32(mult * _MULT_B)
        data_val = np.uint32(data_val * mult)
        words[i_dst] = np.uint32(data_val ^ (data_val >> _XSHIFT))
    for k in range(4):
        out[k] = _U64(words[2 * k]) | (_U64(words[2 * k + 1]) << _U64(32))


@numba.njit(**_INLINE)
def _step(streams, row):
    """One PCG64 step of ``row`` (its output discarded), inlined: seeding then compiles
    no separate :func:`next_uint64`."""
    st, _ = next_uint64_s(load_stream(streams, row))
    store_stream(streams, row, st)


@numba.njit(**_JIT)
def _srandom(streams, row, seed_hi, seed_lo, initseq_hi, initseq_lo):
    inc_hi = (initseq_hi << _U64(1)) | (initseq_lo >> _U64(63))
    inc_lo = (initseq_lo << _U64(1)) | _U64(1)
    streams.state_hi[row] = _U64(0)
    streams.state_lo[row] = _U64(0)
    streams.inc_hi[row] = inc_hi
    streams.inc_lo[row] = inc_lo
    _step(streams, row)
    lo = streams.state_lo[row] + seed_lo
    carry = _U64(1) if lo < seed_lo else _U64(0)
    streams.state_hi[row] = streams.state_hi[row] + seed_hi + carry
    streams.state_lo[row] = lo
    _step(streams, row)
    streams.has_uint32[row] = 0
    streams.uinteger[row] = 0


@numba.njit(**_JIT)
def seed_streams(streams, rows, seeds):
    """Seed ``streams[rows[i]]`` exactly as ``np.random.default_rng(seeds[i])``.

    ``seeds`` are uint64 (numpy accepts any non-negative int; values of 2**64
    and above are refused at the public boundary).
    """
    words = np.empty(4, np.uint64)
    for i in range(rows.shape[0]):
        seed_sequence_state(seeds[i], words)
        # numpy passes val[0:2] as the 128-bit seed and val[2:4] as the
        # sequence, each as PCG_128BIT_CONSTANT(high=val[0], low=val[1]).
        _srandom(streams, rows[i], words[0], words[1], words[2], words[3])


@numba.njit(**_JIT)
def copy_stream(src, src_row, dst, dst_row):
    """Copy one row's full stream state (including the 32-bit buffer)."""
    dst.state_hi[dst_row] = src.state_hi[src_row]
    dst.state_lo[dst_row] = src.state_lo[src_row]
    dst.inc_hi[dst_row] = src.inc_hi[src_row]
    dst.inc_lo[dst_row] = src.inc_lo[src_row]
    dst.has_uint32[dst_row] = src.has_uint32[src_row]
    dst.uinteger[dst_row] = src.uinteger[src_row]

"""Distributions over :mod:`banditfleet.kernels.streams`, exactly as numpy draws them.

Each function takes the stream arrays and a row, consumes exactly the raw
draws numpy's ``Generator`` would consume for the same call, and returns the
same value bit for bit:

* :func:`bounded_uint64` is numpy's ``random_bounded_uint64`` (Lemire's method;
  ranges below 2**32 use the buffered 32-bit output), which backs
  ``Generator.integers`` and the index draws of ``choice``.
* :func:`standard_normal` is the 256-level ziggurat of
  ``Generator.standard_normal``; :func:`normal` is ``loc + scale * z``.
* :func:`sample_without_replacement` is ``Generator.choice(pop, size,
  replace=False)`` for populations up to 10,000: Floyd's algorithm, then a
  shuffle of the sample.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._ziggurat_tables import FI_DOUBLE, KI_DOUBLE, WI_DOUBLE, ZIGGURAT_NOR_INV_R, ZIGGURAT_NOR_R
from .streams import _umulh, load_stream, next_double_s, next_uint32_s, next_uint64_s, store_stream

__all__ = [
    "bounded_uint64",
    "bounded_uint64_s",
    "standard_normal_s",
    "sample_without_replacement_s",
    "integers",
    "standard_normal",
    "normal",
    "sample_without_replacement",
    "FLOYD_MAX_POPULATION",
]

from ._config import INLINE as _INLINE, JIT as _JIT, JIT_HELPER as _JIT_HELPER
_U64 = np.uint64
_MASK32 = np.uint64(0xFFFFFFFF)
_MAX64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_MASK52 = np.uint64(0x000FFFFFFFFFFFFF)

# numpy switches from Floyd's algorithm to a tail shuffle above this population.
FLOYD_MAX_POPULATION = 10_000


@numba.njit(**_JIT_HELPER)
def _lemire_uint32_retry_s(st, rng, m):
    """Lemire's rare branch of :func:`_lemire_uint32_s` (out of line: it almost never runs
    for small ranges, and inlining it into every draw made each caller compile longer)."""
    rng_excl = rng + _U64(1)
    leftover = m & _MASK32
    threshold = (_MASK32 - rng) % rng_excl
    while leftover < threshold:
        st, draw = next_uint32_s(st)
        m = _U64(draw) * rng_excl
        leftover = m & _MASK32
    return st, m >> _U64(32)


@numba.njit(**_INLINE)
def _lemire_uint32_s(st, rng):
    # rng < 0xFFFFFFFF, so rng_excl fits in 32 bits and m in 64.
    rng_excl = rng + _U64(1)
    st, draw = next_uint32_s(st)
    m = _U64(draw) * rng_excl
    if (m & _MASK32) < rng_excl:
        return _lemire_uint32_retry_s(st, rng, m)
    return st, m >> _U64(32)


@numba.njit(**_JIT_HELPER)
def _bounded_uint64_rare_s(st, rng):
    """:func:`bounded_uint64_s` for ``rng == 2**32 - 1`` and ``rng >= 2**32`` (out of line:
    draws of arm indices never take these branches, and inlining them into every
    caller made each one compile longer)."""
    if rng == _MASK32:
        st, draw = next_uint32_s(st)
        return st, _U64(draw)
    if rng == _MAX64:
        return next_uint64_s(st)
    # Lemire's method, one draw site: numpy draws again only while ``leftover <
    # threshold`` (checked once ``leftover < rng_excl``; ``threshold < rng_excl``).
    rng_excl = rng + _U64(1)
    threshold = (_MAX64 - rng) % rng_excl
    while True:
        st, x = next_uint64_s(st)
        if x * rng_excl >= threshold:
            return st, _umulh(x, rng_excl)


@numba.njit(**_INLINE)
def bounded_uint64_s(st, rng):
    """(new state, uniform integer in ``[0, rng]``) as numpy's ``random_bounded_uint64``.

    ``rng == 0`` consumes nothing, like numpy.
    """
    rng = _U64(rng)
    if rng == _U64(0):
        return st, _U64(0)
    if rng < _MASK32:
        return _lemire_uint32_s(st, rng)
    return _bounded_uint64_rare_s(st, rng)


@numba.njit(**_JIT)
def bounded_uint64(streams, row, rng):
    """Uniform integer in ``[0, rng]`` (inclusive), as numpy's ``random_bounded_uint64``.

    ``rng == 0`` consumes nothing, like numpy.
    """
    st, value = bounded_uint64_s(load_stream(streams, row), rng)
    store_stream(streams, row, st)
    return value


@numba.njit(**_JIT)
def integers(streams, row, low, high):
    """``Generator.integers(low, high)`` for int64 ``low < high`` (``high`` exclusive)."""
    span = _U64(high - low - 1)
    return np.int64(_U64(low) + bounded_uint64(streams, row, span))


@numba.njit(**_INLINE)
def standard_normal_s(st):
    """(new state, numpy's ziggurat standard normal) for a state tuple."""
    while True:
        st, r = next_uint64_s(st)
        idx = np.intp(r & _U64(0xFF))
        r >>= _U64(8)
        sign = r & _U64(1)
        rabs = (r >> _U64(1)) & _MASK52
        x = np.float64(rabs) * WI_DOUBLE[idx]
        if sign:
            x = -x
        if rabs < KI_DOUBLE[idx]:
            return st, x
        if idx == 0:
            while True:
                # 1 - U avoids log(0), as numpy does (gh-13361).
                st, u = next_double_s(st)
                xx = -ZIGGURAT_NOR_INV_R * math.log1p(-u)
                st, u = next_double_s(st)
                yy = -math.log1p(-u)
                if yy + yy > xx * xx:
                    if (rabs >> _U64(8)) & _U64(1):
                        return st, -(ZIGGURAT_NOR_R + xx)
                    return st, ZIGGURAT_NOR_R + xx
        else:
            st, u = next_double_s(st)
            if (FI_DOUBLE[idx - 1] - FI_DOUBLE[idx]) * u + FI_DOUBLE[idx] < math.exp(-0.5 * x * x):
                return st, x


@numba.njit(**_JIT)
def standard_normal(streams, row):
    """numpy's ziggurat standard normal (``random_standard_normal``)."""
    st, value = standard_normal_s(load_stream(streams, row))
    store_stream(streams, row, st)
    return value


@numba.njit(**_JIT)
def normal(streams, row, loc, scale):
    """``Generator.normal(loc, scale)``: always one standard normal, then ``loc + scale * z``.

    ``scale == 0`` returns ``loc`` (the draw is still consumed); an infinite
    scale gives a signed infinity, both as in numpy.
    """
    return loc + scale * standard_normal(streams, row)


@numba.njit(**_INLINE)
def sample_without_replacement_s(st, population, size, out, taken):
    """State-tuple form of :func:`sample_without_replacement`; returns the new state."""
    # Floyd's algorithm. numpy keeps the sample in a hash set; a membership
    # flag per population element decides the same thing.
    first = population - size
    for j in range(first, population):
        st, draw = bounded_uint64_s(st, j)
        val = np.int64(draw)
        if taken[val]:
            val = j
        taken[val] = 1
        out[j - first] = val
    for k in range(size):
        taken[out[k]] = 0
    # numpy then shuffles the sample (Fisher-Yates from the back, Lemire draws).
    for i in range(size - 1, 0, -1):
        st, draw = bounded_uint64_s(st, i)
        j = np.intp(draw)
        tmp = out[j]
        out[j] = out[i]
        out[i] = tmp
    return st


@numba.njit(**_JIT)
def sample_without_replacement(streams, row, population, size, out, taken):
    """``Generator.choice(population, size, replace=False)`` into ``out[:size]``.

    Valid for ``size <= population <= FLOYD_MAX_POPULATION`` (checked by the
    caller). ``taken`` is caller-owned scratch of at least ``population``
    bytes; it is left all zero again on return, so a batch kernel can reuse it
    for every row without clearing.
    """
    st = sample_without_replacement_s(load_stream(streams, row), population, size, out, taken)
    store_stream(streams, row, st)

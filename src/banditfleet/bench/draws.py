"""Batch loops of per-row random draws, and numpy's vectorized draws of the same count.

Each row has its own PCG64 stream (:mod:`banditfleet.kernels.streams`) and
draws through the state-tuple kernels, the state loaded once per row, as the
optimizers' kernels do. numpy draws the same number of values from one
``Generator`` in one vectorized call: the floor a per-row design cannot beat
by much, and the floor of a Thompson-sampling prediction
(:func:`numpy_ts_draws`).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from banditfleet.kernels.distributions import bounded_uint64_s, sample_without_replacement_s, standard_normal_s
from banditfleet.kernels.streams import Streams, allocate_streams, load_stream, seed_streams, store_stream

__all__ = [
    "normals_batch",
    "bounded_batch",
    "choice_batch",
    "fleet_streams",
    "choice_draws",
    "ts_draws",
    "numpy_ts_draws",
    "decision_draws_batch",
    "decision_draws",
]


@numba.njit(cache=True, nogil=True)
def normals_batch(streams, rows, per_row, out):
    """``per_row`` standard normals for each row, the state loaded once per row."""
    for i in range(rows.shape[0]):
        st = load_stream(streams, rows[i])
        for j in range(per_row):
            st, out[i * per_row + j] = standard_normal_s(st)
        store_stream(streams, rows[i], st)


@numba.njit(cache=True, nogil=True)
def bounded_batch(streams, rows, per_row, high, out):
    """``per_row`` integers in ``[0, high)`` for each row (numpy's ``integers``)."""
    rng = np.uint64(high - 1)
    for i in range(rows.shape[0]):
        st = load_stream(streams, rows[i])
        for j in range(per_row):
            st, value = bounded_uint64_s(st, rng)
            out[i * per_row + j] = np.int64(value)
        store_stream(streams, rows[i], st)


@numba.njit(cache=True, nogil=True)
def choice_batch(streams, rows, population, size, out):
    """``choice(population, size, replace=False)`` for each row into ``out[i]``."""
    taken = np.zeros(population, np.uint8)
    for i in range(rows.shape[0]):
        st = load_stream(streams, rows[i])
        st = sample_without_replacement_s(st, population, size, out[i], taken)
        store_stream(streams, rows[i], st)


def fleet_streams(n_rows: int) -> tuple[Streams, np.ndarray]:
    """``n_rows`` streams, row ``i`` seeded as ``default_rng(i)``, and their rows."""
    streams = allocate_streams(n_rows)
    rows = np.arange(n_rows, dtype=np.int64)
    seed_streams(streams, rows, np.arange(n_rows, dtype=np.uint64))
    return streams, rows


def choice_draws(k: int) -> int:
    """Bounded draws ``choice(k, k, replace=False)`` consumes: Floyd's ``k - 1`` (a
    draw in ``[0, 0]`` consumes nothing) and the shuffle's ``k - 1``."""
    return 2 * (k - 1)


def ts_draws(k: int) -> tuple[int, int]:
    """(bounded integers, standard normals) one Thompson-sampling decision over ``k`` arms draws."""
    return choice_draws(k), k


def numpy_ts_draws(n_jobs: int, k: int, seed: int = 1) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """numpy drawing what ``n_jobs`` Thompson-sampling decisions over ``k`` arms draw, in two
    vectorized calls: ``2 (k - 1)`` integers in ``[0, k)`` and ``k`` normals per job."""
    rng = np.random.default_rng(seed)
    n_int, n_norm = ts_draws(k)
    return lambda: (rng.integers(0, k, size=n_int * n_jobs), rng.standard_normal(n_norm * n_jobs))


@numba.njit(cache=True, nogil=True)
def decision_draws_batch(streams, rows, arm_count, out):
    """Exactly the random numbers a sampling decision of each row draws, and nothing else:
    the ``2 (k - 1)`` bounded integers of ``choice(k, k, replace=False)`` (Floyd's ranges
    ``1 .. k-1``, then the shuffle's ``k-1 .. 1``, rejections included) and ``k`` standard
    normals, ``k = arm_count[row]``; ``out[i]`` gets a sum of them (so none is optimized away)."""
    for i in range(rows.shape[0]):
        row = rows[i]
        k = arm_count[row]
        st = load_stream(streams, row)
        acc = 0.0
        for j in range(1, k):
            st, value = bounded_uint64_s(st, j)
            acc += np.float64(value)
        for j in range(k - 1, 0, -1):
            st, value = bounded_uint64_s(st, j)
            acc += np.float64(value)
        for j in range(k):
            st, z = standard_normal_s(st)
            acc += z
        store_stream(streams, row, st)
        out[i] = acc


def decision_draws(streams: Streams, rows: np.ndarray, arm_count: np.ndarray) -> Callable[[], None]:
    """:func:`decision_draws_batch` on a copy of ``streams`` (the same states the fleet's
    jobs start from), as a timed callable."""
    mine = Streams(*(np.array(a, copy=True) for a in streams))
    counts = np.ascontiguousarray(arm_count, np.int64)
    rows = np.ascontiguousarray(rows, np.int64)
    out = np.empty(rows.shape[0])
    return lambda: decision_draws_batch(mine, rows, counts, out)

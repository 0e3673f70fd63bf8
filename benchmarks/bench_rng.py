"""Random draws per job row vs numpy's vectorized ``Generator`` for the same count.

10,000 rows, each with its own PCG64 stream, draw through a small jitted
batch loop; numpy draws the same number of values from one generator in one
vectorized call, which is the floor a per-row design cannot beat by much.
Each group holds ours and numpy's, so pytest-benchmark's table shows the
ratio; the ratio measured in the same run is also stored in ``extra_info``
(``--benchmark-columns=...`` or ``--benchmark-json``).

* ``rng-normal``: 8 standard normals per row vs ``rng.standard_normal(80_000)``.
* ``rng-bounded``: 8 integers in [0, 8) per row vs ``rng.integers(0, 8, 80_000)``.
* ``rng-choice``: ``choice(8, 8, replace=False)`` per row (Floyd's 7 draws
  plus the shuffle's 7; a draw in [0, 0] consumes nothing) vs
  ``rng.integers(0, 8, 140_000)``, and, for scale, zeus's way: a Python loop
  of ``rng.choice(8, 8, replace=False)``.
* ``rng-first-call``: import and first call of the kernels in a fresh
  process, loading numba's on-disk cache (``warm``) or compiling into an
  empty cache (``cold``, only with benchmarks enabled).

Run: ``pytest benchmarks/bench_rng.py`` (``--benchmark-disable`` only checks
that everything runs).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np
import pytest

from banditfleet.bench.draws import bounded_batch, choice_batch, fleet_streams, normals_batch
from banditfleet.kernels.distributions import bounded_uint64, standard_normal

N_ROWS = 10_000
PER_ROW = 8
CHOICE_DRAWS_PER_ROW = 14  # bounded draws that consume output for choice(8, 8)


# ---------------------------------------------------------------------------
# The loaded-state batch loops (normals_batch, bounded_batch, choice_batch)
# live in banditfleet.bench.draws, shared with `banditfleet bench`; the
# per-draw variants below reload the state from the arrays on every draw.


@numba.njit(cache=True, nogil=True)
def normals_batch_per_draw(streams, rows, per_row, out):
    """``per_row`` normals per row through the array-indexed wrapper (state reloaded on every draw)."""
    for i in range(rows.shape[0]):
        for j in range(per_row):
            out[i * per_row + j] = standard_normal(streams, rows[i])


@numba.njit(cache=True, nogil=True)
def bounded_batch_per_draw(streams, rows, per_row, high, out):
    rng = np.uint64(high - 1)
    for i in range(rows.shape[0]):
        for j in range(per_row):
            out[i * per_row + j] = np.int64(bounded_uint64(streams, rows[i], rng))


# ---------------------------------------------------------------------------
# helpers


def _fleet_streams(n_rows: int = N_ROWS):
    return fleet_streams(n_rows)


def _median_seconds(fn, repeats: int = 30) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _record_ratio(benchmark, ours, numpy_floor, n_draws):
    """Same-run medians of ours and numpy's floor, so the ratio is not skewed by drift."""
    if benchmark.disabled:
        return
    t_ours = _median_seconds(ours)
    t_numpy = _median_seconds(numpy_floor)
    benchmark.extra_info.update(
        ours_ms=t_ours * 1e3,
        numpy_ms=t_numpy * 1e3,
        ratio_vs_numpy=t_ours / t_numpy,
        ns_per_draw=t_ours / n_draws * 1e9,
    )


# ---------------------------------------------------------------------------
# (a) normals

_N_DRAWS = N_ROWS * PER_ROW


def _numpy_normals():
    rng = np.random.default_rng(1)
    return lambda: rng.standard_normal(_N_DRAWS)


@pytest.mark.benchmark(group="rng-normal-10k-rows-x-8")
@pytest.mark.parametrize("kernel", [normals_batch, normals_batch_per_draw], ids=["loaded-state", "per-draw-wrapper"])
def test_normals_ours(benchmark, kernel):
    streams, rows = _fleet_streams()
    out = np.empty(_N_DRAWS)
    kernel(streams, rows, PER_ROW, out)  # compile / load the cache outside the timing
    # row 0 (seed 0) drew exactly numpy's values
    assert out[:PER_ROW].tobytes() == np.random.default_rng(0).standard_normal(PER_ROW).tobytes()
    benchmark(kernel, streams, rows, PER_ROW, out)
    _record_ratio(benchmark, lambda: kernel(streams, rows, PER_ROW, out), _numpy_normals(), _N_DRAWS)


@pytest.mark.benchmark(group="rng-normal-10k-rows-x-8")
def test_normals_numpy(benchmark):
    benchmark(_numpy_normals())


# ---------------------------------------------------------------------------
# (b) bounded integers


def _numpy_integers(count):
    rng = np.random.default_rng(1)
    return lambda: rng.integers(0, 8, size=count)


@pytest.mark.benchmark(group="rng-bounded-10k-rows-x-8")
@pytest.mark.parametrize("kernel", [bounded_batch, bounded_batch_per_draw], ids=["loaded-state", "per-draw-wrapper"])
def test_bounded_ours(benchmark, kernel):
    streams, rows = _fleet_streams()
    out = np.empty(_N_DRAWS, np.int64)
    kernel(streams, rows, PER_ROW, 8, out)
    assert out[:PER_ROW].tolist() == np.random.default_rng(0).integers(0, 8, size=PER_ROW).tolist()
    benchmark(kernel, streams, rows, PER_ROW, 8, out)
    _record_ratio(benchmark, lambda: kernel(streams, rows, PER_ROW, 8, out), _numpy_integers(_N_DRAWS), _N_DRAWS)


@pytest.mark.benchmark(group="rng-bounded-10k-rows-x-8")
def test_bounded_numpy(benchmark):
    benchmark(_numpy_integers(_N_DRAWS))


# ---------------------------------------------------------------------------
# (c) choice(8, 8, replace=False) per row

_CHOICE_DRAWS = N_ROWS * CHOICE_DRAWS_PER_ROW


@pytest.mark.benchmark(group="rng-choice-10k-rows-8-of-8")
def test_choice_ours(benchmark):
    streams, rows = _fleet_streams()
    out = np.empty((N_ROWS, PER_ROW), np.int64)
    choice_batch(streams, rows, PER_ROW, PER_ROW, out)
    assert out[0].tolist() == np.random.default_rng(0).choice(PER_ROW, PER_ROW, replace=False).tolist()
    benchmark(choice_batch, streams, rows, PER_ROW, PER_ROW, out)
    _record_ratio(
        benchmark,
        lambda: choice_batch(streams, rows, PER_ROW, PER_ROW, out),
        _numpy_integers(_CHOICE_DRAWS),
        _CHOICE_DRAWS,
    )


@pytest.mark.benchmark(group="rng-choice-10k-rows-8-of-8")
def test_choice_numpy_same_draws(benchmark):
    benchmark(_numpy_integers(_CHOICE_DRAWS))


@pytest.mark.benchmark(group="rng-choice-10k-rows-8-of-8")
def test_choice_numpy_python_loop(benchmark):
    """What a per-job Python policy does: one ``rng.choice`` call per job."""
    gens = [np.random.default_rng(s) for s in range(N_ROWS)]

    def loop():
        for g in gens:
            g.choice(PER_ROW, PER_ROW, replace=False)

    benchmark.pedantic(loop, rounds=3 if not benchmark.disabled else 1, iterations=1)


# ---------------------------------------------------------------------------
# first call in a fresh process

_FIRST_CALL_SNIPPET = """
import time
t0 = time.perf_counter()
import numpy as np
from banditfleet.kernels.streams import allocate_streams, seed_streams, next_uint32, next_double
from banditfleet.kernels.distributions import bounded_uint64, standard_normal, normal, sample_without_replacement
s = allocate_streams(2)
seed_streams(s, np.arange(2, dtype=np.int64), np.arange(2, dtype=np.uint64))
next_uint32(s, 0); next_double(s, 0)
bounded_uint64(s, 0, np.uint64(7)); standard_normal(s, 0); normal(s, 0, 0.0, 1.0)
sample_without_replacement(s, 1, 8, 8, np.empty(8, np.int64), np.zeros(8, np.uint8))
print(time.perf_counter() - t0)
"""


@pytest.mark.benchmark(group="rng-first-call")
@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_first_call_time(benchmark, cache):
    """Import plus first draws in a fresh process.

    ``warm`` uses numba's usual on-disk cache next to the kernels (a first
    untimed run refreshes it if the sources changed); ``cold`` compiles into
    an empty ``NUMBA_CACHE_DIR``.
    """
    if benchmark.disabled and cache == "cold":
        pytest.skip("a cold compile takes a while; measured only when benchmarks are enabled")
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ)
        if cache == "cold":
            env["NUMBA_CACHE_DIR"] = cache_dir
        else:
            subprocess.run([sys.executable, "-c", _FIRST_CALL_SNIPPET], env=env, check=True, capture_output=True)

        def first_call():
            out = subprocess.run(
                [sys.executable, "-c", _FIRST_CALL_SNIPPET], env=env, check=True, capture_output=True, text=True
            )
            return float(out.stdout.strip())

        seconds = benchmark.pedantic(first_call, rounds=1, iterations=1)
        benchmark.extra_info["first_call_seconds"] = seconds

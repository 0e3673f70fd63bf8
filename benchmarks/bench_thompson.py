"""Batched Thompson sampling: predict and observe for 10,000 jobs x 8 arms.

Each benchmark also times its floor in the same run and records the ratio in
``extra_info`` (shown with ``--benchmark-columns`` or in the JSON):

* predict: numpy's ``Generator`` drawing the same number of bounded integers
  (14 per job: Floyd's 7 draws and the shuffle's 7) and standard normals (8
  per job) in two vectorized calls. Target: at most 1.5x.
* observe: nanoseconds per observation. Target: at most 150 ns.

Run: ``pytest benchmarks/bench_thompson.py`` (``--benchmark-disable`` only
checks that everything runs).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from banditfleet.bench.draws import numpy_ts_draws
from banditfleet.bench.fleets import gts_fleet

N_JOBS = 10_000
N_ARMS = 8  # batch sizes 8 ... 1024


def _median_seconds(fn, repeats: int = 30) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _numpy_floor(n_jobs: int) -> float:
    """numpy drawing what the decisions draw (banditfleet.bench.draws.numpy_ts_draws)."""
    return _median_seconds(numpy_ts_draws(n_jobs, N_ARMS))


def _fleet(learn: bool = True, n_jobs: int = N_JOBS):
    """Two rounds per arm (exploration, then sampling), as `banditfleet bench` warms its fleet."""
    fleet = gts_fleet(n_jobs, N_ARMS, learn=learn)
    return fleet.ours, fleet.rows


@pytest.mark.benchmark(group="ts-predict-10k-x-8")
@pytest.mark.parametrize("parallel", [False, True], ids=["1-thread", "parallel"])
def test_ts_predict(benchmark, parallel):
    opt, rows = _fleet()
    opt.predict_many(rows, parallel=parallel)  # compile / load the cache outside the timing
    benchmark(opt.predict_many, rows, parallel=parallel)
    if benchmark.disabled:
        return
    ours = _median_seconds(lambda: opt.predict_many(rows, parallel=parallel))
    floor = _numpy_floor(N_JOBS)
    benchmark.extra_info.update(
        ours_ms=ours * 1e3,
        numpy_same_draws_ms=floor * 1e3,
        ratio_vs_numpy_draws=ours / floor,
        ns_per_decision=ours / N_JOBS * 1e9,
    )


@pytest.mark.benchmark(group="ts-predict-10k-x-8")
def test_numpy_same_draws(benchmark):
    benchmark(numpy_ts_draws(N_JOBS, N_ARMS))


@pytest.mark.benchmark(group="ts-observe-10k")
@pytest.mark.parametrize("learn", [False, True], ids=["known-precision", "learned-precision"])
def test_ts_observe(benchmark, learn):
    opt, rows = _fleet(learn=learn)
    bs = opt.predict_many(rows)
    costs = np.random.default_rng(3).gamma(4.0, 25.0, size=N_JOBS)
    opt.observe_many(rows, bs, costs)
    benchmark(opt.observe_many, rows, bs, costs)
    if benchmark.disabled:
        return
    ours = _median_seconds(lambda: opt.observe_many(rows, bs, costs), repeats=10)
    memory = opt._store.nbytes_per_arm()
    benchmark.extra_info.update(ns_per_observation=ours / N_JOBS * 1e9, **{f"bytes_{k}": v for k, v in memory.items()})


_COMPILE_SNIPPET = """
import time, numpy as np
t0 = time.perf_counter()
from banditfleet import GTSBatchSizeOptimizer
opt = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
rows = opt.register_jobs(range(4), np.tile(np.array([8, 16, 32]), (4, 1)))
for _ in range(3):
    opt.observe_many(rows, opt.predict_many(rows), np.ones(4))
print(time.perf_counter() - t0)
"""


@pytest.mark.benchmark(group="first-call")
@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_first_call_compile_time(benchmark, cache):
    """Import plus the first predict/observe in a fresh process: cold compiles, warm loads numba's disk cache."""
    if benchmark.disabled and cache == "cold":
        pytest.skip("a cold compile takes tens of seconds; measured only when benchmarks are enabled")
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        if cache == "warm":
            subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env, check=True, capture_output=True)

        def first_call():
            out = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env, check=True, capture_output=True, text=True)
            return float(out.stdout.strip())

        seconds = benchmark.pedantic(first_call, rounds=1, iterations=1)
        benchmark.extra_info["first_call_seconds"] = seconds

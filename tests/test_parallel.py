"""The parallel Thompson-sampling kernel gives the sequential kernel's decisions and streams."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet import GTSBatchSizeOptimizer, PruningGTSBatchSizeOptimizer
from naive import NaivePruningGTS
from banditfleet.rows import Rows


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32), n_jobs=st.integers(2, 300), repeat=st.booleans(), rounds=st.integers(1, 6))
def test_parallel_equals_sequential(seed, n_jobs, repeat, rounds):
    rng = np.random.default_rng(seed)
    arms = [rng.choice([8, 16, 32, 64, 128, 256], size=int(rng.integers(1, 7)), replace=False).tolist() for _ in range(n_jobs)]
    a = GTSBatchSizeOptimizer(learn_reward_precision=True, seed=seed, verbose=False)
    b = GTSBatchSizeOptimizer(learn_reward_precision=True, seed=seed, verbose=False)
    rows = a.register_jobs(range(n_jobs), arms)
    b.register_jobs(range(n_jobs), arms)
    for _ in range(rounds):
        batch = rows[rng.permutation(n_jobs)]
        if repeat:
            batch = Rows.concatenate([batch, batch[:3]])
        twin = b.rows(batch.array)  # keys are 0 .. n_jobs - 1, registered in order: the same numbers
        got = a.predict_many(batch, parallel=True)
        want = b.predict_many(twin)
        assert got.tolist() == want.tolist()
        costs = rng.gamma(2.0, 10.0, size=len(batch))
        a.observe_many(batch, got, costs)
        b.observe_many(twin, want, costs)
    for x, y in zip(a._store.streams, b._store.streams):
        assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("threads", [1, 2])
def test_pruning_parallel_equals_naive_twin_for_any_thread_count(threads):
    """PruningGTS ``predict_many(parallel=True)`` on 1 and 2 numba threads: the naive
    twin's decisions, through pruning (sequential fallback: rows still pruning) and in
    Thompson sampling (the parallel kernel), with repeated rows falling back too."""
    rng = np.random.default_rng(40 + threads)
    n = 120
    arms = [sorted(rng.choice([8, 16, 32, 64, 128, 256, 512], size=int(rng.integers(2, 7)), replace=False).tolist())
            for _ in range(n)]
    defaults = [a[int(rng.integers(0, len(a)))] for a in arms]
    ours = PruningGTSBatchSizeOptimizer(window_size=int(rng.integers(0, 6)) * 2, verbose=False)
    twin = NaivePruningGTS(window_size=ours.window_size)
    rows = ours.register_jobs(list(range(n)), arms, defaults)
    for j in range(n):
        twin.register(j, arms[j], defaults[j])
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        sampled = 0
        for _ in range(40):
            batch = rows[rng.permutation(n)]
            if sampled and rng.random() < 0.2 and all(ours.pruning_state(j).stage == "thompson" for j in range(n)):
                batch = Rows.concatenate([batch, batch[:2]])  # a repeat: sequential
            keys = batch.array.tolist()  # keys are 0 .. n - 1, registered in order
            got = ours.predict_many(batch, parallel=True)
            want = [twin.predict(j) for j in keys]
            assert got.tolist() == want
            sampled += sum(ours.pruning_state(j).stage == "thompson" for j in keys)
            costs = rng.gamma(2.0, 10.0, size=len(keys))
            # every batch size but a job's largest reaches the target (unless it is the
            # default), so pruning drops one and is never exhausted
            flags = np.array([b != arms[j][-1] or b == defaults[j] for j, b in zip(keys, got.tolist())])
            ours.observe_many(batch, got, costs, flags)
            for j, b, c, f in zip(keys, got.tolist(), costs.tolist(), flags.tolist()):
                twin.observe(j, b, c, f)
        assert sampled > n * 10  # the parallel path ran
    finally:
        numba.set_num_threads(before)

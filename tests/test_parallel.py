"""The parallel Thompson-sampling kernel gives the sequential kernel's decisions and streams."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet import GTSBatchSizeOptimizer
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

"""``observe_many(parallel=True)`` leaves exactly the state of the sequential kernels, for
any numba thread count (1 and 2), for GTS (learned: unbounded and windowed history;
known precision) and PruningGTS (through pruning into Thompson sampling); batches
that repeat a job run sequentially with the same result."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from banditfleet import GTSBatchSizeOptimizer, PruningGTSBatchSizeOptimizer

VALUES = np.array([8, 16, 32, 64, 128], np.int64)


def _state(opt) -> dict[str, bytes]:
    return {k: np.ascontiguousarray(v).tobytes() for k, v in opt._store.export_arrays().items()}


def _gts(kind: str) -> GTSBatchSizeOptimizer:
    if kind == "known":
        return GTSBatchSizeOptimizer(learn_reward_precision=False, reward_precision=0.01, verbose=False)
    return GTSBatchSizeOptimizer(learn_reward_precision=True, window_size=0 if kind == "unbounded" else 6, verbose=False)


@pytest.mark.parametrize("kind", ["unbounded", "window", "known"])
def test_gts_parallel_observe_equals_sequential(kind):
    threads = numba.get_num_threads()
    rng = np.random.default_rng(5)
    n = 150
    keys = [f"j{i}" for i in range(n)]
    opts = [_gts(kind) for _ in range(3)]
    for o in opts:
        o.register_jobs(keys, np.tile(VALUES, (n, 1)))
    try:
        for step in range(40):  # enough for unbounded histories to outgrow a chunk
            order = rng.permutation(n)[: int(rng.integers(2, n))]
            batch = [keys[i] for i in order]
            if step % 7 == 6:
                batch = batch + batch[:4]  # repeated jobs: the sequential rule
            bs = VALUES[rng.integers(0, len(VALUES), size=len(batch))]
            costs = rng.gamma(2.0, 10.0, size=len(batch))
            opts[0].observe_many(batch, bs, costs)
            for o, t in zip(opts[1:], (1, min(2, numba.config.NUMBA_NUM_THREADS))):
                numba.set_num_threads(t)
                o.observe_many(batch, bs, costs, parallel=True)
    finally:
        numba.set_num_threads(threads)
    want = _state(opts[0])
    assert _state(opts[1]) == want
    assert _state(opts[2]) == want


def test_pruning_parallel_observe_equals_sequential():
    threads = numba.get_num_threads()
    rng = np.random.default_rng(11)
    n = 120
    keys = [f"p{i}" for i in range(n)]
    opts = [PruningGTSBatchSizeOptimizer(window_size=w, verbose=False) for w in (4, 4, 4)]
    for o in opts:
        o.register_jobs(keys, np.tile(VALUES, (n, 1)), default_bs=32)
    try:
        for k in range(30):  # both pruning rounds, then Thompson sampling
            bs = opts[0].predict_many(keys)
            for o in opts[1:]:
                assert o.predict_many(keys).tolist() == bs.tolist()
            costs = rng.gamma(2.0, 10.0, size=n)
            reached = bs <= 64
            opts[0].observe_many(keys, bs, costs, reached)
            for o, t in zip(opts[1:], (1, min(2, numba.config.NUMBA_NUM_THREADS))):
                numba.set_num_threads(t)
                o.observe_many(keys, bs, costs, reached, parallel=True)
    finally:
        numba.set_num_threads(threads)
    assert opts[0].pruning_state(keys[0]).stage == "thompson"
    want = _state(opts[0])
    assert _state(opts[1]) == want
    assert _state(opts[2]) == want


def test_parallel_observe_refuses_a_bad_batch_whole():
    from banditfleet.errors import UnknownBatchSizeError

    a, b = _gts("unbounded"), _gts("unbounded")
    for o in (a, b):
        o.register_jobs(["x", "y"], np.tile(VALUES, (2, 1)))
    before = _state(a)
    with pytest.raises(UnknownBatchSizeError):
        a.observe_many(["x", "y"], [8, 9], [1.0, 2.0], parallel=True)
    assert _state(a) == before

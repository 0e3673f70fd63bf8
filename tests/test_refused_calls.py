"""A refused call changes nothing: every array of every optimizer, its capacity included.

Each public method of each optimizer is called with input it must refuse, in
states where a call would otherwise have to grow an array (the history pool
exactly full, the job arrays at capacity, the power table at capacity), and
the whole state (dtype, shape and bytes of every array, the key maps) must be
what it was before. Scratch arrays of the pruning validation
(``prscratch_*``) and the scalar fast path's one-element argument buffers
(``_one*``) are working space, not state, and are excluded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from banditfleet import (
    GTSBatchSizeOptimizer,
    JITPowerLimitOptimizer,
    PruningExploreManager,
    PruningGTSBatchSizeOptimizer,
)
from banditfleet.errors import BanditFleetError

ARMS = [8, 16, 32, 64]


def _arrays_of(obj, prefix, out, depth=0):
    for name, value in vars(obj).items():
        if name.startswith(("prscratch_", "_one")):
            continue  # validation scratch and the scalar path's one-element buffers
        if isinstance(value, np.ndarray):
            out[f"{prefix}{name}"] = (value.dtype.str, value.shape, value.tobytes())
        elif isinstance(value, tuple) and value and all(isinstance(v, np.ndarray) for v in value):
            for i, v in enumerate(value):
                out[f"{prefix}{name}[{i}]"] = (v.dtype.str, v.shape, v.tobytes())
        elif depth < 1 and hasattr(value, "__dict__") and type(value).__module__.startswith("banditfleet"):
            _arrays_of(value, f"{prefix}{name}.", out, depth + 1)


def snapshot(opt):
    """dtype, shape (the capacity) and bytes of every state array (the fleet store's or the
    power table's, where all state lives), plus the job keys. Handles, cached tuples and
    argument buffers on the optimizer itself are working space, not state."""
    out = {}
    for name in ("_store", "_table"):
        holder = getattr(opt, name, None)
        if holder is not None:
            _arrays_of(holder, f"{name}.", out, 1)
    store = getattr(opt, "_store", None)
    keys = list(store.keys()) if store is not None else list(getattr(opt, "_keys", []))
    return out, keys


def assert_refused_unchanged(opt, call, *args, **kwargs):
    before = snapshot(opt)
    assert before[0], "the snapshot found no arrays"
    with pytest.raises(BanditFleetError):
        call(*args, **kwargs)
    after = snapshot(opt)
    assert before[1] == after[1]
    assert before[0].keys() == after[0].keys()
    for name in before[0]:
        assert before[0][name][:2] == after[0][name][:2], f"{name}: dtype/shape (capacity) changed"
        assert before[0][name][2] == after[0][name][2], f"{name}: contents changed"


def _fill_pool_with_pruning_job_waiting(opt, n_jobs=40):
    """Drive jobs through pruning until the unbounded history pool is exactly full while at
    least one job is still in its pruning stage. Returns that job."""
    jobs = [f"j{i}" for i in range(n_jobs)]
    opt.register_jobs(jobs, [ARMS] * n_jobs, default_bs=[16] * n_jobs)
    s = opt._store
    for _ in range(20):
        for j in jobs:
            bs = opt.predict(j)
            opt.observe(j, bs, 1.0 + (hash(j) % 7) + bs / 64.0, True)
            if int(s.pool_used[0]) == s.chunk_next.shape[0]:
                pruning = [k for k in jobs if opt.pruning_state(k) is not None and opt.survivors(k) is None]
                if pruning:
                    return pruning[0]
    raise AssertionError("could not reach a full pool with a pruning job")


@pytest.mark.parametrize("concurrency", [False, True])
def test_refused_scalar_observe_does_not_grow_the_history_pool(concurrency):
    """The bug this file was written for: a refused observe grew ``chunk_values`` (16 -> 32)."""
    opt = PruningGTSBatchSizeOptimizer(window_size=0, concurrency=concurrency, seed=3)
    job = _fill_pool_with_pruning_job_waiting(opt)
    # converged missing in the pruning stage: refused.
    assert_refused_unchanged(opt, opt.observe, job, 16, 1.0)
    assert_refused_unchanged(opt, opt.observe, job, 16, 1.0, None)
    assert_refused_unchanged(opt, opt.observe_many, [job], [16], [1.0])
    if not concurrency:
        # a result nobody asked for (no batch size is awaited between calls here)
        assert_refused_unchanged(opt, opt.observe, job, 64, 1.0, True)
        assert_refused_unchanged(opt, opt.observe_many, [job, job], [16, 16], [1.0, 2.0], [True, True])


def _bad_common_calls(opt, job):
    """(method, args) pairs every batch-size optimizer must refuse."""
    return [
        (opt.predict, ("nobody",)),
        (opt.predict_many, (["nobody"],)),
        (opt.predict_many, ([job, "nobody"],)),
        (opt.predict_many, (np.array([0, 10**6]),)),
        (opt.observe, ("nobody", 16, 1.0, True)),
        (opt.observe, (job, 12, 1.0, True)),
        (opt.observe, (job, 16, math.nan, True)),
        (opt.observe, (job, 16, math.inf, True)),
        (opt.observe, (job, 16, -math.inf, True)),
        (opt.observe, (job, 16, "1.0", True)),
        (opt.observe, (job, 16.5, 1.0, True)),
        (opt.observe, (job, True, 1.0, True)),
        (opt.observe_many, ([job, job], [16, 12], [1.0, 1.0], [True, True])),
        (opt.observe_many, ([job, job], [16, 16], [1.0, math.nan], [True, True])),
        (opt.observe_many, ([job, job], [16, 16], [1.0], [True, True])),
        (opt.observe_many, ([job, "nobody"], [16, 16], [1.0, 1.0], [True, True])),
        (opt.register_job, (job, [8, 16, 128])),
        (opt.register_jobs, (["new1", "new2"], [[8, 16], [8, 8]])),
        (opt.register_jobs, (["new1", "new2"], [[8, 16], []])),
        (opt.register_jobs, (["new1", "new2"], [[8, 16], [0, 16]])),
        (opt.register_jobs, (["new1", "new1"], [[8, 16], [8, 32]])),
    ]


def _fill_jobs_to_capacity(opt, arms_kwargs):
    s = opt._store
    i = 0
    while s.n_jobs < s.job_capacity:
        opt.register_job(f"filler{i}", ARMS, **arms_kwargs)
        i += 1


@pytest.mark.parametrize("learn", [False, True])
def test_gts_refused_calls_change_nothing(learn):
    opt = GTSBatchSizeOptimizer(learn_reward_precision=learn, reward_precision=0.0 if learn else 0.5, seed=1)
    opt.register_job("a", ARMS)
    _fill_jobs_to_capacity(opt, {})
    for _ in range(6):  # some history, then the pool exactly full if it keeps history
        bs = opt.predict("a")
        opt.observe("a", bs, 2.0 + bs / 32.0)
    s = opt._store
    while learn and int(s.pool_used[0]) != s.chunk_next.shape[0]:
        opt.observe("a", 8, 1.5)
    for call, args in _bad_common_calls(opt, "a"):
        assert_refused_unchanged(opt, call, *args)


@pytest.mark.parametrize("window", [0, 2])
@pytest.mark.parametrize("concurrency", [False, True])
def test_pruning_refused_calls_change_nothing(window, concurrency):
    opt = PruningGTSBatchSizeOptimizer(window_size=window, concurrency=concurrency, seed=5)
    if window == 0:
        job = _fill_pool_with_pruning_job_waiting(opt)
    else:
        opt.register_jobs(["a", "b"], [ARMS, ARMS], default_bs=[16, 16])
        job = "a"
    for call, args in _bad_common_calls(opt, job):
        assert_refused_unchanged(opt, call, *args)
    # pruning-specific refusals
    assert_refused_unchanged(opt, opt.register_job, job, ARMS, 32)  # other default
    assert_refused_unchanged(opt, opt.register_job, "new", ARMS, 12)  # default not an arm
    assert_refused_unchanged(opt, opt.register_jobs, ["new1", "new2"], [ARMS, ARMS], [16, 12])
    assert_refused_unchanged(opt, opt.observe, job, 16, 1.0, "yes")
    assert_refused_unchanged(opt, opt.observe_many, [job], [16], [1.0], ["yes"])
    if not concurrency:
        bs = opt.predict(job)
        assert_refused_unchanged(opt, opt.predict, job)  # a result is awaited
        assert_refused_unchanged(opt, opt.predict_many, [job])
        other = next(b for b in ARMS if b != bs)
        assert_refused_unchanged(opt, opt.observe, job, other, 1.0, True)  # not the awaited one
        # a batch: the first entry is fine, the second unexpected: refused whole
        assert_refused_unchanged(opt, opt.observe_many, [job, job], [bs, other], [1.0, 1.0], [True, True])


def test_pruning_exhausted_predict_changes_nothing():
    opt = PruningGTSBatchSizeOptimizer(seed=2)
    opt.register_job("a", [8, 16, 32], 16)
    while not opt.exhausted_many(["a"])[0]:
        bs = opt.predict("a")
        opt.observe("a", bs, 1.0, False)
    assert opt.exhausted_many(["a"]).tolist() == [True]
    assert_refused_unchanged(opt, opt.predict, "a")
    assert_refused_unchanged(opt, opt.predict_many, ["a"])


def test_manager_refused_calls_change_nothing():
    m = PruningExploreManager([8, 16, 32, 64], 16)
    assert_refused_unchanged(m, m.report_batch_size_result, 16, 1.0, True)  # nothing awaited
    bs = m.next_batch_size()
    assert_refused_unchanged(m, m.next_batch_size)  # awaited
    assert_refused_unchanged(m, m.report_batch_size_result, 64, 1.0, True)
    assert_refused_unchanged(m, m.report_batch_size_result, bs, math.nan, True)
    assert_refused_unchanged(m, m.report_batch_size_result, bs, 1.0, "no")
    assert_refused_unchanged(m, m.report_batch_size_result, 16.5, 1.0, True)


def test_power_refused_calls_change_nothing():
    opt = JITPowerLimitOptimizer()
    # fill the entry table exactly to capacity so a new entry would grow it
    i = 0
    while opt.n_entries < opt.table.capacity:
        opt.observe("a", 8 * (i + 1), 300, 1.0 + i)
        i += 1
    bad = [
        (opt.observe, ("a", 0, 300, 1.0)),
        (opt.observe, ("new", 8, -1, 1.0)),
        (opt.observe, ("new", 8, 300, math.nan)),
        (opt.observe, ("new", 8, 300, math.inf)),
        (opt.observe, ("new", 8.5, 300, 1.0)),
        (opt.observe, ("new", True, 300, 1.0)),
        (opt.observe, ([1], 8, 300, 1.0)),
        (opt.observe_many, (["new", "a"], [8, 16], [300, 300], [1.0, math.nan])),
        (opt.observe_many, (["new", "a"], [8, 0], [300, 300], [1.0, 1.0])),
        (opt.observe_many, (["new", "a"], [8, 16], [300, 0], [1.0, 1.0])),
        (opt.observe_many, (["new", "a"], [8, 16], [300], [1.0, 1.0])),
        (opt.predict_many, (["a"], [0])),
        (opt.predict_many, (["a", "b"], [8])),
    ]
    for call, args in bad:
        assert_refused_unchanged(opt, call, *args)

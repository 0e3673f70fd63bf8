"""Pruning policy: kernels vs the naive model, batch == scalar loop, misuse changes nothing."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from naive import NaivePruningGTS, NaivePruningManager

from banditfleet import PruningExploreManager, PruningGTSBatchSizeOptimizer
from banditfleet.errors import (
    BanditFleetError,
    ConfigurationError,
    InvalidArmsError,
    InvalidObservationError,
    JobConflictError,
    PruningExhaustedError,
    PruningOrderError,
    UnknownBatchSizeError,
    UnknownJobError,
)
from banditfleet.job import Job

BATCH_SIZES = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256]
COSTS = [1.0, 2.0, 2.5, 3.0, 10.0]  # a small set, so equal costs (ties) are common


# ---------------------------------------------------------------------------
# helpers


def _state(opt):
    """Every state array of the store (scratch excluded), copied."""
    s = opt._store
    arrays = {k: v.copy() for k, v in vars(s).items() if isinstance(v, np.ndarray) and not k.startswith("prscratch_")}
    arrays.update({f"stream_{i}": a.copy() for i, a in enumerate(s.streams)})
    return arrays, s.n_jobs, s.n_arms, dict(s._rows)


def _assert_same_state(before, after):
    (a, ja, na, ra), (b, jb, nb, rb) = before, after
    assert (ja, na, ra) == (jb, nb, rb)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def _logical_state(opt):
    """The used prefix of every array (capacities may differ between equal optimizers)."""
    s = opt._store
    out = {}
    for k, v in vars(s).items():
        if not isinstance(v, np.ndarray) or k.startswith("prscratch_"):
            continue
        if k in s._job_fill:
            out[k] = v[: s.n_jobs].tobytes()
        elif k in s._arm_fill:
            out[k] = v[: s.n_arms].tobytes()
    w = max(s.history_window, 0)
    out["history_values"] = s.history_values[: s.n_arms * w].tobytes()
    used = int(s.pool_used[0])
    out["chunk_values"] = s.chunk_values[:used].tobytes()
    out["chunk_next"] = s.chunk_next[:used].tobytes()
    out["slot_chunks"] = s.slot_chunks[: s.n_arms].tobytes()
    out["pool_used"] = used
    for i, a in enumerate(s.streams):
        out[f"stream_{i}"] = a[: s.n_jobs].tobytes()
    return out


def _call(fn, *args):
    """(result, error class) of a call."""
    try:
        return fn(*args), None
    except StopIteration as stop:
        return ("stop", stop.value), None
    except BanditFleetError as err:
        return None, type(err)


def _checked(opt, fn, *args):
    """Call; on a banditfleet error require that nothing changed."""
    before = _state(opt)
    result, err = _call(fn, *args)
    if err is not None:
        _assert_same_state(before, _state(opt))
    return result, err


@st.composite
def configs(draw):
    return dict(
        prior_mean=draw(st.sampled_from([0.0, -5.0, 3.25])),
        prior_precision=draw(st.sampled_from([0.0, 1e-3, 0.5])),
        window_size=draw(st.sampled_from([0, 0, 2, 3, 5])),
        concurrency=draw(st.booleans()),
        seed=draw(st.sampled_from([0, 1, 123456, 2**32 + 5, 2**64 - 1])),
    )


@st.composite
def jobs_with_defaults(draw, max_jobs=4):
    n = draw(st.integers(1, max_jobs))
    out = []
    for _ in range(n):
        arms = draw(st.lists(st.sampled_from(BATCH_SIZES), min_size=1, max_size=7, unique=True))
        out.append((arms, draw(st.sampled_from(arms))))
    return out


mostly_true = st.integers(0, 9).map(lambda x: x < 8)


# ---------------------------------------------------------------------------
# the standalone manager


@given(
    arms=st.lists(st.sampled_from(BATCH_SIZES), min_size=1, max_size=8, unique=True),
    rounds=st.integers(1, 3),
    data=st.data(),
)
def test_manager_matches_naive_model(arms, rounds, data):
    default = data.draw(st.sampled_from(arms))
    ours = PruningExploreManager(list(arms), default, rounds)
    naive = NaivePruningManager(list(arms), default, rounds)
    awaiting = None
    for _ in range(60):
        assert (ours.expecting, ours.default, ours.batch_sizes) == (naive.expecting, naive.default, naive.batch_sizes)
        action = data.draw(st.sampled_from(["next", "next", "report", "report", "report", "misreport"]))
        if action == "next":
            got, err = _checked(ours, ours.next_batch_size)
            want, want_err = _call(naive.next_batch_size)
            assert (got, err) == (want, want_err)
            if err is None:
                awaiting = None if isinstance(got, tuple) else got
        else:
            bs = awaiting if action == "report" and awaiting else data.draw(st.sampled_from(arms))
            cost = data.draw(st.sampled_from(COSTS))
            reached = data.draw(mostly_true)
            got, err = _checked(ours, ours.report_batch_size_result, bs, cost, reached)
            want, want_err = _call(naive.report_batch_size_result, bs, cost, reached)
            assert err == want_err
            if err is None:
                awaiting = None


def test_manager_unsorted_first_round_and_attributes():
    m = PruningExploreManager([64, 32, 128, 16], 32)
    assert (m.expecting, m.default, m.batch_sizes, m.num_pruning_rounds) == (32, 32, [64, 32, 128, 16], 2)
    # Round 1 splits the given list at the default's position: down = [64, 32], up = [16, 128].
    seen = []
    for result in [(5.0, True), (3.0, True), (4.0, True), (1.0, False)]:
        bs = m.next_batch_size()
        seen.append(bs)
        assert m.expecting == bs
        m.report_batch_size_result(bs, *result)
        assert m.expecting == 0
    assert seen == [64, 32, 16, 128]
    assert m.default == 32  # settled only at the next call, as in the reference
    assert m.next_batch_size() == 32
    assert m.batch_sizes == [16, 32, 64]


def test_manager_misuse():
    with pytest.raises(InvalidArmsError):
        PruningExploreManager([8, 16], 32)
    with pytest.raises(ConfigurationError):
        PruningExploreManager([8, 16], 8, 0)
    with pytest.raises(InvalidArmsError):
        PruningExploreManager([8, 8, 16], 8)
    m = PruningExploreManager([8, 16, 32], 16)
    with pytest.raises(PruningOrderError, match="no result is awaited"):
        m.report_batch_size_result(16, 1.0, True)
    assert m.next_batch_size() == 16
    with pytest.raises(PruningOrderError, match="still awaited"):
        m.next_batch_size()
    with pytest.raises(PruningOrderError, match="asked for batch size 16"):
        m.report_batch_size_result(8, 1.0, True)
    with pytest.raises(InvalidObservationError):
        m.report_batch_size_result(16, math.nan, True)
    with pytest.raises(InvalidObservationError):
        m.report_batch_size_result(16, 1.0, "yes")
    assert m.expecting == 16
    m.report_batch_size_result(16, 1.0, False)
    # The default failed: down is over, and so is up (16 was the last down arm,
    # then 32 fails too), so round 1 ends with nothing reached.
    assert m.next_batch_size() == 32
    m.report_batch_size_result(32, 1.0, False)
    with pytest.raises(PruningExhaustedError):
        m.next_batch_size()
    with pytest.raises(PruningExhaustedError):
        m.next_batch_size()


def test_manager_stops_with_survivors_and_stays_stopped():
    m = PruningExploreManager([8, 16, 32], 16, num_pruning_rounds=1)
    for cost in (2.0, 1.0, 3.0):
        bs = m.next_batch_size()
        m.report_batch_size_result(bs, cost, True)
    for _ in range(2):
        with pytest.raises(StopIteration) as stop:
            m.next_batch_size()
        assert stop.value.value == [8, 16, 32]
    assert m.default == 8
    with pytest.raises(PruningOrderError, match="over"):
        m.report_batch_size_result(8, 1.0, True)


# ---------------------------------------------------------------------------
# the optimizer vs the naive model


def _drive(ours, naive, keys, arms, data, steps):
    """Scalar calls on both, mostly well-behaved (so pruning often completes), sometimes
    misuse; results and error classes must agree, and failing calls change nothing."""
    for _ in range(steps):
        i = data.draw(st.integers(0, len(keys) - 1))
        key = keys[i]
        state = ours.pruning_state(key)
        proper = data.draw(st.integers(0, 9)) < 8
        if proper and not state.expecting:
            got, err = _checked(ours, ours.predict, key)
            want, want_err = _call(naive.predict, key)
            assert (got, err) == (want, want_err)
            if err is not None or state.stage == "pruning":
                continue
            bs, cost, converged = got, data.draw(st.sampled_from(COSTS)), None
        elif proper:
            concurrent = ours.concurrency and data.draw(st.integers(0, 3)) == 0
            bs = data.draw(st.sampled_from(arms[i][0])) if concurrent else state.expecting
            cost = data.draw(st.sampled_from(COSTS))
            converged = True if bs == arms[i][1] else data.draw(mostly_true)
        else:
            if data.draw(st.booleans()):
                got, err = _checked(ours, ours.predict, key)
                want, want_err = _call(naive.predict, key)
                assert (got, err) == (want, want_err)
                continue
            bs = data.draw(st.sampled_from(arms[i][0] + [7]))
            cost = data.draw(st.sampled_from(COSTS + [math.inf]))
            converged = data.draw(st.one_of(mostly_true, st.none()))
        got, err = _checked(ours, ours.observe, key, bs, cost, converged)
        want, want_err = _call(naive.observe, key, bs, cost, converged)
        assert err == want_err, (bs, cost, converged)


def _assert_bandits_equal(ours, naive, keys):
    for key in keys:
        bandit = naive.jobs[key]["bandit"]
        if bandit is None:
            assert ours.survivors(key) is None
            assert ours.pruning_state(key).expecting == naive.jobs[key]["pruning"].expecting
            continue
        assert ours.survivors(key) == bandit["arms"]
        state = ours.arm_state(key)
        for arm in bandit["arms"]:
            assert state[arm].posterior_mean == bandit["mean"][arm]
            assert state[arm].posterior_precision == bandit["prec"][arm]
            assert state[arm].reward_precision == bandit["rp"][arm]
            assert state[arm].observations == bandit["count"][arm]


@given(cfg=configs(), fleet=jobs_with_defaults(max_jobs=3), data=st.data())
def test_optimizer_matches_naive_model(cfg, fleet, data):
    ours = PruningGTSBatchSizeOptimizer(verbose=False, **cfg)
    naive = NaivePruningGTS(**cfg)
    keys = [f"job{i}" for i in range(len(fleet))]
    for key, (arms, default) in zip(keys, fleet):
        ours.register_job(key, arms, default)
        naive.register(key, arms, default)
        assert ours.batch_sizes_of(key) == sorted(arms)
    _drive(ours, naive, keys, fleet, data, data.draw(st.integers(10, 120)))
    _assert_bandits_equal(ours, naive, keys)


@given(cfg=configs(), data=st.data())
def test_optimizer_reaches_thompson_sampling_like_naive(cfg, data):
    """A well-behaved fleet: the expected batch size is always observed, mostly converging."""
    ours = PruningGTSBatchSizeOptimizer(verbose=False, **cfg)
    naive = NaivePruningGTS(**cfg)
    keys = [Job("d", f"n{i}", "adam", 0.5, 10, default_bs=d) for i, d in enumerate([32, 64, 16])]
    for key in keys:
        ours.register_job(key, [128, 8, 16, 32, 64, 256])
        naive.register(key, [128, 8, 16, 32, 64, 256], key.default_bs)
    dead = set()
    for _ in range(data.draw(st.integers(20, 70))):
        key = data.draw(st.sampled_from(keys))
        if key in dead:
            continue
        got, err = _call(ours.predict, key)
        want, want_err = _call(naive.predict, key)
        assert (got, err) == (want, want_err)
        if err is not None:
            assert err is PruningExhaustedError
            dead.add(key)
            continue
        cost = data.draw(st.floats(0.5, 100.0))
        converged = True if got == key.default_bs else data.draw(mostly_true)
        ours.observe(key, got, cost, converged)
        naive.observe(key, got, cost, converged)
    _assert_bandits_equal(ours, naive, keys)


# ---------------------------------------------------------------------------
# batch calls == loops of scalar calls


def _apply_loop(loop, calls):
    """Scalar calls in order on a copy; the copy on success, the error class on failure."""
    work = copy.deepcopy(loop)
    results = []
    try:
        for call in calls:
            results.append(call(work))
    except BanditFleetError as err:
        return loop, None, type(err)
    return work, results, None


@given(cfg=configs(), fleet=jobs_with_defaults(max_jobs=3), data=st.data())
def test_batch_equals_loop_of_scalar_calls(cfg, fleet, data):
    """predict_many / observe_many (keys or rows, repeated jobs included) equal loops of
    scalar calls; a batch whose loop would fail somewhere is refused whole."""
    keys = [("job", i) for i in range(len(fleet))]
    batch = PruningGTSBatchSizeOptimizer(verbose=False, **cfg)
    loop = PruningGTSBatchSizeOptimizer(verbose=False, **cfg)
    rows = batch.register_jobs(keys, [a for a, _ in fleet], [d for _, d in fleet])
    for k, (a, d) in zip(keys, fleet):
        loop.register_job(k, a, default_bs=d)
    for _ in range(data.draw(st.integers(3, 30))):
        unique = data.draw(st.integers(0, 3)) > 0
        idx = data.draw(st.lists(st.integers(0, len(keys) - 1), min_size=1, max_size=5, unique=unique))
        jobs = rows[idx] if data.draw(st.booleans()) else [keys[i] for i in idx]
        loop2, want, want_err = _apply_loop(loop, [lambda o, k=keys[i]: o.predict(k) for i in idx])
        got, err = _checked(batch, batch.predict_many, jobs)
        assert err == want_err
        if err is None:
            assert got.dtype == np.int64 and got.tolist() == want
        loop = loop2
        assert _logical_state(batch) == _logical_state(loop)
        # Results: mostly of the batch sizes just predicted.
        bss, costs, flags = [], [], []
        for n, i in enumerate(idx):
            if want is not None and data.draw(mostly_true):
                bss.append(want[n])
            else:
                bss.append(data.draw(st.sampled_from(fleet[i][0])))
            costs.append(data.draw(st.sampled_from(COSTS)))
            flags.append(True if bss[-1] == fleet[i][1] else data.draw(mostly_true))
        with_flags = data.draw(st.integers(0, 9)) > 0
        calls = [
            lambda o, k=keys[i], b=b, c=c, f=f: o.observe(k, b, c, f if with_flags else None)
            for i, b, c, f in zip(idx, bss, costs, flags)
        ]
        loop2, _, want_err = _apply_loop(loop, calls)
        _, err = _checked(batch, batch.observe_many, jobs, bss, costs, flags if with_flags else None)
        assert err == want_err
        loop = loop2
        assert _logical_state(batch) == _logical_state(loop)
    for k in keys:
        assert batch.arm_state(k) == loop.arm_state(k)
        assert batch.pruning_state(k) == loop.pruning_state(k)
        assert batch.survivors(k) == loop.survivors(k)


def test_batch_with_numpy_arrays_and_2d_registration():
    opt = PruningGTSBatchSizeOptimizer(verbose=False, concurrency=True)
    keys = list(range(50))
    arms = np.tile(np.array([[256, 8, 64, 32, 16]], np.int64), (50, 1))
    rows = opt.register_jobs(keys, arms, np.full(50, 32))
    assert opt.batch_sizes_of(7) == [8, 16, 32, 64, 256]
    first = opt.predict_many(rows)
    assert first.tolist() == [32] * 50
    again = opt.predict_many(rows)  # concurrency: best known, nothing advances
    assert again.tolist() == [32] * 50
    opt.observe_many(rows, first, np.linspace(1.0, 2.0, 50), np.ones(50, bool))
    assert opt.predict_many(rows).tolist() == [16] * 50


# ---------------------------------------------------------------------------
# misuse


def _opt(**kw):
    opt = PruningGTSBatchSizeOptimizer(verbose=False, **kw)
    opt.register_job("a", [8, 16, 32, 64], 16)
    opt.register_job("b", [8, 16, 32], 8)
    return opt


def _finish_pruning(opt, job):
    """Everything converges, cost = batch size."""
    while opt.survivors(job) is None:
        bs = opt.predict(job)
        opt.observe(job, bs, float(bs), True)


def _refused(opt, error, fn, *args, match=None):
    before = _state(opt)
    with pytest.raises(error, match=match):
        fn(*args)
    _assert_same_state(before, _state(opt))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(window_size=1),
        dict(window_size=-3),
        dict(window_size=2.5),
        dict(prior_mean=math.nan),
        dict(prior_precision=-1.0),
        dict(seed=-1),
        dict(concurrency="yes"),
    ],
)
def test_configurations_that_cannot_work_are_refused(kwargs):
    with pytest.raises(ConfigurationError):
        PruningGTSBatchSizeOptimizer(verbose=False, **kwargs)


def test_order_errors_without_concurrency():
    opt = _opt()
    _refused(opt, PruningOrderError, opt.observe, "a", 16, 1.0, True, match="awaits no result")
    assert opt.predict("a") == 16
    _refused(opt, PruningOrderError, opt.predict, "a", match="'a'.*16 is still awaited.*concurrency=True")
    _refused(opt, PruningOrderError, opt.observe, "a", 8, 1.0, True, match="asked for batch size 16, got .* 8")
    _refused(opt, InvalidObservationError, opt.observe, "a", 16, 1.0, None, match="converged=None")
    _refused(opt, UnknownBatchSizeError, opt.observe, "a", 12, 1.0, True, match="'a'")
    _refused(opt, InvalidObservationError, opt.observe, "a", 16, math.inf, True, match="'a'")
    _refused(opt, InvalidObservationError, opt.observe, "a", 16, math.nan, True)
    # A batch whose second entry repeats the same result is refused whole.
    _refused(opt, PruningOrderError, opt.observe_many, ["a", "a"], [16, 16], [1.0, 1.0], [True, True])
    # So is a predict batch that asks twice for "b".
    _refused(opt, PruningOrderError, opt.predict_many, ["b", "b"], match="'b': appears twice")
    opt.observe("a", 16, 1.0, True)
    _refused(opt, PruningOrderError, opt.observe, "a", 16, 1.0, True)
    assert opt.predict("a") == 8


def test_concurrency_best_known_and_recorded_only_results():
    opt = _opt(concurrency=True)
    assert opt.predict("a") == 16
    # Awaiting 16: answer the best known (nothing converged yet: the round-start default).
    for _ in range(2):
        before = _state(opt)
        assert opt.predict("a") == 16
        _assert_same_state(before, _state(opt))
    # A concurrent run of 32 converges cheaply: it becomes the best known.
    opt.observe("a", 32, 0.5, True)
    assert opt.pruning_state("a").expecting == 16
    assert opt.predict("a") == 32
    # A cheaper run that did not converge does not count.
    opt.observe("a", 64, 0.1, False)
    assert opt.predict("a") == 32
    # Equal cost keeps the earlier one.
    opt.observe("a", 8, 0.5, True)
    assert opt.pruning_state("a").best_known == 32
    opt.observe("a", 16, 2.0, True)  # the awaited result
    assert opt.predict("a") == 8
    _refused(opt, InvalidObservationError, opt.observe, "a", 8, 1.0, None)


def test_exhausted_rounds():
    # Round 1: everything fails.
    opt = _opt()
    assert opt.predict("b") == 8
    opt.observe("b", 8, 1.0, False)
    assert opt.predict("b") == 16
    opt.observe("b", 16, 1.0, False)
    for _ in range(2):
        _refused(opt, PruningExhaustedError, opt.predict, "b", match=r"'b'.*round 1 \(\[8, 16, 32\]\)")
    _refused(opt, PruningExhaustedError, opt.predict_many, ["a", "b"])
    assert opt.exhausted_many(["a", "b", "b"]).tolist() == [False, True, True]
    assert opt.predict_many(opt.rows(["a", "b"])[~opt.exhausted_many(["a", "b"])]).tolist() == [16]
    # Results pruning did not ask for are still refused without concurrency.
    _refused(opt, PruningOrderError, opt.observe, "b", 8, 1.0, True)
    # Round 2 (the last): its default fails and so does everything above.
    opt = _opt()
    for bs, ok in [(8, True), (16, True), (32, True)]:
        assert opt.predict("b") == bs
        opt.observe("b", bs, float(bs), ok)
    for bs in (8, 16):
        assert opt.predict("b") == bs
        opt.observe("b", bs, 1.0, False)
    _refused(opt, PruningExhaustedError, opt.predict, "b", match="round 2")


def test_thompson_stage_and_non_survivors():
    opt = _opt(window_size=3)
    _finish_pruning(opt, "a")
    assert opt.survivors("a") == [8, 16, 32, 64]
    opt.observe("a", 8, 3.0)  # converged not needed any more
    opt.observe("a", 8, 4.0, False)
    assert opt.arm_state("a")[8].observations == 3  # window of 3
    opt = _opt()
    assert opt.predict("a") == 16
    opt.observe("a", 16, 1.0, True)
    assert opt.predict("a") == 8
    opt.observe("a", 8, 1.0, False)
    assert opt.predict("a") == 32
    opt.observe("a", 32, 2.0, True)
    assert opt.predict("a") == 64
    opt.observe("a", 64, 3.0, False)
    _finish_pruning(opt, "a")
    assert opt.survivors("a") == [16, 32]
    # Observing a pruned batch size records it; decisions only use survivors.
    opt.observe("a", 8, 0.1)
    for _ in range(20):
        assert opt.predict("a") in (16, 32)


def test_registration_rules():
    opt = _opt()
    before = _state(opt)
    opt.register_job("a", [64, 32, 16, 8], 16)  # same set, same default: nothing changes
    _assert_same_state(before, _state(opt))
    _refused(opt, JobConflictError, opt.register_job, "a", [8, 16, 32], 16, match="'a'")
    _refused(opt, JobConflictError, opt.register_job, "a", [8, 16, 32, 64], 32, match="'a'.*16.*32")
    _refused(opt, JobConflictError, opt.register_jobs, ["c", "c"], [[8, 16], [8, 16]], [8, 16])
    _refused(opt, InvalidArmsError, opt.register_job, "c", [8, 16], 32, match="'c'.*32")
    _refused(opt, InvalidArmsError, opt.register_job, "c", [8, 16])
    _refused(opt, InvalidArmsError, opt.register_job, "c", [], 8)
    _refused(opt, InvalidArmsError, opt.register_jobs, ["c", "d"], [[8, 16], [8, 16]], [8, 32])
    job = Job("d", "n", "adam", 0.5, 10, default_bs=16)
    _refused(opt, InvalidArmsError, opt.register_job, job, [8, 16], 8, match="disagrees")
    opt.register_job(job, [16, 8])
    opt.register_job(job, [8, 16], 16)
    assert opt.predict(job) == 16
    no_default = Job("d", "n", "adam", 0.5, 10)
    opt.register_job(no_default, [8, 16], 8)  # key's default_bs is None: the argument counts
    assert opt.predict(no_default) == 8


def test_unknown_jobs():
    opt = _opt()
    _refused(opt, UnknownJobError, opt.predict, "zz")
    _refused(opt, UnknownJobError, opt.observe, "zz", 8, 1.0, True)
    _refused(opt, UnknownJobError, opt.predict_many, ["a", "zz"])
    _refused(opt, UnknownJobError, opt.predict_many, np.array([0, 5]))
    _refused(opt, UnknownJobError, opt.pruning_state, "zz")


def test_bad_observation_batches_change_nothing():
    opt = _opt(concurrency=True)
    opt.predict_many(["a", "b"])
    _refused(opt, InvalidObservationError, opt.observe_many, ["a", "b"], [16, 8], [1.0, math.nan], [True, True])
    _refused(opt, UnknownBatchSizeError, opt.observe_many, ["a", "b"], [16, 64], [1.0, 1.0], [True, True])
    _refused(opt, InvalidObservationError, opt.observe_many, ["a", "b"], [16, 8], [1.0, 1.0], None)
    _refused(opt, InvalidObservationError, opt.observe_many, ["a", "b"], [16], [1.0, 1.0], [True, True])
    _refused(opt, InvalidObservationError, opt.observe_many, ["a", "b"], [16, 8], [1.0, 1.0], [True, 2])

"""JITPowerLimitOptimizer: reference and naive-model differentials, batch == scalar loops,
validation without side effects, and hash-table growth."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import banditfleet
from banditfleet import NEEDS_PROFILING, GTSBatchSizeOptimizer, JITPowerLimitOptimizer, Job
from banditfleet.rows import Rows
from banditfleet.errors import BanditFleetError, ForeignRowsError, InvalidObservationError, UnknownJobError
from banditfleet.kernels.power import EMPTY, hash_key, lookup_entries, rebuild_table
from banditfleet.power import MISSING_ROW, PowerLimitState, PowerLimitTable

from naive_power import NaivePowerLimit

JOBS = [
    "resnet",
    ("bert", 3),
    42,
    Job("imagenet", "resnet50", "adam", 0.7, 100, default_bs=256),
    frozenset({"x"}),
]
BATCH_SIZES = [1, 8, 32, 64, 1024, 2**40]
POWER_LIMITS = [100, 125, 175, 250, 300]

job_index = st.integers(0, len(JOBS) - 1)
batch_size = st.sampled_from(BATCH_SIZES)
power_limit = st.one_of(st.sampled_from(POWER_LIMITS), st.integers(1, 2**62))
# Few distinct costs so ties (first power limit wins) happen often.
cost = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 2.5, 3.0, -1.0]),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
)
observation = st.tuples(job_index, batch_size, power_limit, cost)
operation = st.one_of(
    st.tuples(st.just("observe"), observation),
    st.tuples(st.just("predict"), st.tuples(job_index, batch_size)),
    st.tuples(st.just("observe_many"), st.lists(observation, max_size=10), st.booleans()),
    st.tuples(st.just("predict_many"), st.lists(st.tuples(job_index, batch_size), max_size=10), st.booleans()),
)
operations = st.lists(operation, max_size=40)


def _expand(op):
    """(kind, [scalar calls]) for one operation; batch kinds carry their calls in order."""
    kind = op[0]
    if kind == "observe":
        return [op[1]]
    if kind == "predict":
        return [op[1]]
    return op[1]


def run_against(model_predict, model_observe, ops) -> list:
    """Apply ``ops`` to a fresh optimizer and to a model; return the optimizer.

    Every prediction, scalar or batched, must equal the model's answer made at
    the same point of the sequence.
    """
    opt = JITPowerLimitOptimizer(verbose=False)
    for op in ops:
        kind, calls = op[0], _expand(op)
        if kind == "observe":
            j, bs, pl, c = calls[0]
            opt.observe(JOBS[j], bs, pl, c)
            model_observe(JOBS[j], bs, pl, c)
        elif kind == "predict":
            j, bs = calls[0]
            assert opt.predict(JOBS[j], bs) == model_predict(JOBS[j], bs)
        elif kind == "observe_many":
            keys = [JOBS[j] for j, *_ in calls]
            jobs = opt.rows(keys) if op[2] else keys
            opt.observe_many(
                jobs,
                [bs for _, bs, _, _ in calls],
                np.array([pl for *_, pl, _ in calls], np.int64),
                [c for *_, c in calls],
            )
            for j, bs, pl, c in calls:
                model_observe(JOBS[j], bs, pl, c)
        else:
            keys = [JOBS[j] for j, _ in calls]
            jobs = opt.rows(keys, create=False) if op[2] else keys
            n_jobs, n_entries = len(opt), opt.n_entries
            out = opt.predict_many(jobs, np.array([bs for _, bs in calls], np.int64))
            assert out.dtype == np.int64
            expected = [model_predict(JOBS[j], bs) for j, bs in calls]
            assert out.tolist() == [NEEDS_PROFILING if p is None else p for p in expected]
            assert (len(opt), opt.n_entries) == (n_jobs, n_entries)
    return opt


def _state_tuples(opt: JITPowerLimitOptimizer, job) -> list:
    return [(bs, tuple(s)) for bs, s in opt.state(job).items()]


# ---------------------------------------------------------------- reference


@pytest.fixture(scope="module")
def reference():
    """The reference policy module (zeus==0.16.0), or a skip when it is not installed."""
    return pytest.importorskip("zeus._legacy.policy.optimizer", reason="the zeus==0.16.0 reference is not installed")


@pytest.mark.reference
@settings(deadline=None)
@given(ops=operations)
def test_matches_reference_on_random_interleavings(reference, ops):
    ref = reference.JITPowerLimitOptimizer(verbose=False)
    opt = run_against(ref.predict, ref.observe, ops)
    assert opt.name == ref.name == "JITPSO"
    for job in JOBS:
        counts = ref.observe_count.get(job, {})
        expected = [(bs, (ref.best_pl[job][bs], ref.best_cost[job][bs], n)) for bs, n in counts.items()]
        assert _state_tuples(opt, job) == expected
        for bs in BATCH_SIZES:
            assert opt.best_power_limit(job, bs) == ref.best_pl[job].get(bs)
            assert opt.observations(job, bs) == ref.observe_count[job][bs]


def test_reference_verbose_prediction_is_logged(caplog):
    opt = JITPowerLimitOptimizer()  # verbose by default, like the reference
    with caplog.at_level(logging.INFO, logger="banditfleet"):
        assert opt.predict("job", 32) is None
        opt.observe("job", 32, 250, 1.0)
        assert opt.predict("job", 32) == 250
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["[JITPSO] job @ 32 -> PL = needs profiling", "[JITPSO] job @ 32 -> PL = 250W"]


# ------------------------------------------------------------- naive model


@settings(deadline=None)
@given(ops=operations)
def test_matches_naive_model(ops):
    model = NaivePowerLimit()
    opt = run_against(model.predict, model.observe, ops)
    for job in JOBS:
        assert _state_tuples(opt, job) == list(model.state(job).items())
    assert opt.n_entries == len(model.entries)
    # Jobs get rows in order of first appearance in an observation.
    assert opt.jobs == model.jobs()


def test_policy_basics():
    opt = JITPowerLimitOptimizer(verbose=False)
    assert NEEDS_PROFILING == -1 and banditfleet.NEEDS_PROFILING == -1
    assert opt.predict("j", 32) is None
    opt.observe("j", 32, 300, 5.0)
    opt.observe("j", 32, 250, 5.0)  # equal cost: the first power limit stays
    assert opt.predict("j", 32) == 300
    opt.observe("j", 32, 200, 4.0)
    opt.observe("j", 32, 175, 9.0)
    assert opt.predict("j", 32) == 200
    assert opt.predict("j", 64) is None
    assert opt.state("j") == {32: PowerLimitState(200, 4.0, 4)}
    assert opt.state("unknown") == {}
    assert opt.observations("j", 32) == 4 and opt.observations("j", 64) == 0
    # Batch sizes compare as numbers, like dict keys in the reference: 32.0 is 32.
    assert opt.predict("j", 32.0) == 200
    assert type(opt.predict("j", 32)) is int


def test_predict_creates_nothing():
    opt = JITPowerLimitOptimizer(verbose=False)
    opt.observe("a", 8, 100, 1.0)
    before = snapshot(opt)
    assert opt.predict("b", 8) is None
    assert opt.predict("a", 16) is None
    assert opt.best_power_limit("c", 8) is None
    assert opt.predict_many(["a", "b", "a"], [8, 8, 16]).tolist() == [100, NEEDS_PROFILING, NEEDS_PROFILING]
    assert opt.rows(["z", "a"], create=False).array.tolist() == [MISSING_ROW, 0]
    assert_unchanged(opt, before)
    assert "b" not in opt and len(opt) == 1


# ------------------------------------------------------------ batch == loop

batch = st.lists(observation, min_size=0, max_size=60)


@settings(deadline=None)
@given(first=batch, second=batch, use_rows=st.booleans())
def test_batches_equal_loops_of_scalar_calls(first, second, use_rows):
    batched = JITPowerLimitOptimizer(verbose=False)
    looped = JITPowerLimitOptimizer(verbose=False)
    for obs in (first, second):
        keys = [JOBS[j] for j, *_ in obs]
        jobs = batched.rows(keys) if use_rows else keys
        batched.observe_many(jobs, [o[1] for o in obs], [o[2] for o in obs], [o[3] for o in obs])
        for j, bs, pl, c in obs:
            looped.observe(JOBS[j], bs, pl, c)
        assert batched.jobs == looped.jobs
        for name, arr in batched.table.arrays().items():
            np.testing.assert_array_equal(arr, looped.table.arrays()[name], err_msg=name)
    queries = [(j, bs) for j in range(len(JOBS)) for bs in BATCH_SIZES]
    out = batched.predict_many([JOBS[j] for j, _ in queries], [bs for _, bs in queries])
    loop = [looped.predict(JOBS[j], bs) for j, bs in queries]
    assert out.tolist() == [NEEDS_PROFILING if p is None else p for p in loop]


def test_repeated_keys_in_one_batch_apply_in_order():
    opt = JITPowerLimitOptimizer(verbose=False)
    opt.observe_many(["a", "a", "a", "b", "a"], [8] * 5, [300, 250, 200, 100, 150], [3.0, 2.0, 2.0, 1.0, 1.5])
    assert opt.state("a") == {8: PowerLimitState(150, 1.5, 4)}
    assert opt.state("b") == {8: PowerLimitState(100, 1.0, 1)}
    assert opt.jobs == ["a", "b"]


# ---------------------------------------------------------------- rows


def test_rows_semantics():
    opt = JITPowerLimitOptimizer(verbose=False)
    rows = opt.rows(["a", "b", "a"])  # create=True by default: new keys get rows
    assert isinstance(rows, Rows) and rows.array.dtype == np.int64 and rows.array.tolist() == [0, 1, 0]
    assert opt.jobs == ["a", "b"] and opt.n_entries == 0
    # Rows alone are no state: everything still needs profiling.
    assert opt.predict_many(rows, [8, 8, 8]).tolist() == [NEEDS_PROFILING] * 3
    opt.observe_many(rows, [8, 8, 16], [100, 200, 300], [1.0, 2.0, 3.0])
    assert opt.predict_many(["a", "b", "c"], [8, 8, 8]).tolist() == [100, 200, NEEDS_PROFILING]
    assert opt.rows(["c", "b"], create=False).array.tolist() == [MISSING_ROW, 1]
    assert opt.predict_many(opt.rows(["zz", "a"], create=False), [8, 16]).tolist() == [NEEDS_PROFILING, 300]
    assert opt.key_of(1) == "b"
    # Integer job keys are keys whether passed as a list or as an integer array.
    opt.observe_many([5], [8], [111], [1.0])
    assert opt.rows([5]).array.tolist() == [2]
    assert opt.predict(5, 8) == 111
    assert opt.predict_many(np.array([5, 0]), [8, 8]).tolist() == [111, NEEDS_PROFILING]
    assert opt.rows(np.array([5, 0], np.uint32), create=False).array.tolist() == [2, MISSING_ROW]
    assert 0 not in opt
    with pytest.raises(UnknownJobError, match="MISSING_ROW"):
        opt.rows(opt.rows(["q"], create=False))  # create=True: a missing row has no job
    assert opt.rows([]).array.shape == (0,)
    opt.observe_many([], [], [], [])
    assert opt.predict_many([], []).shape == (0,)


# ---------------------------------------------------- validation, no change


def snapshot(opt: JITPowerLimitOptimizer):
    t = opt.table
    return (
        opt.jobs,
        dict(opt._rows),
        {name: arr.copy() for name, arr in t.arrays().items()},
        t.table.copy(),
        t.capacity,
    )


def assert_unchanged(opt: JITPowerLimitOptimizer, before) -> None:
    after = snapshot(opt)
    assert after[0] == before[0]
    assert after[1] == before[1]
    for name in before[2]:
        np.testing.assert_array_equal(after[2][name], before[2][name], err_msg=name)
    np.testing.assert_array_equal(after[3], before[3])
    assert after[4] == before[4]


def _seeded() -> JITPowerLimitOptimizer:
    opt = JITPowerLimitOptimizer(verbose=False)
    opt.observe_many(["a", "b", "a"], [8, 8, 16], [100, 200, 300], [1.0, 2.0, 3.0])
    return opt


BAD_CALLS = [
    # (description, call, error class, message fragment)
    ("zero batch size", lambda o: o.observe_many(["new", "a"], [8, 0], [1, 1], [1.0, 1.0]), InvalidObservationError, "job 'a': batch size 0"),
    ("negative batch size", lambda o: o.observe_many(["new", "b"], [8, -8], [1, 1], [1.0, 1.0]), InvalidObservationError, "job 'b': batch size -8"),
    ("fractional batch size", lambda o: o.observe_many(["new", "a"], [8, 8.5], [1, 1], [1.0, 1.0]), InvalidObservationError, "batch size 8.5"),
    ("NaN batch size", lambda o: o.observe_many(["new"], np.array([np.nan]), [1], [1.0]), InvalidObservationError, "batch size nan"),
    ("boolean batch sizes", lambda o: o.observe_many(["new"], np.array([True]), [1], [1.0]), InvalidObservationError, "job 'new': batch size True"),
    ("string batch size", lambda o: o.observe_many(["new"], ["8"], [1], [1.0]), InvalidObservationError, "job 'new': batch size '8'"),
    ("uint64 batch size past int64", lambda o: o.observe_many(["new"], np.array([2**63], np.uint64), [1], [1.0]), InvalidObservationError, "batch size"),
    ("huge Python int batch size", lambda o: o.observe_many(["new", "a"], [8, 2**70], [1, 1], [1.0, 1.0]), InvalidObservationError, "job 'a': batch size"),
    ("zero power limit", lambda o: o.observe_many(["new", "a"], [8, 8], [100, 0], [1.0, 1.0]), InvalidObservationError, "job 'a': power limit 0"),
    ("fractional power limit", lambda o: o.observe_many(["new"], [8], [250.5], [1.0]), InvalidObservationError, "job 'new': power limit 250.5"),
    ("NaN cost", lambda o: o.observe_many(["new", "a"], [8, 8], [1, 1], [1.0, np.nan]), InvalidObservationError, "job 'a': cost nan"),
    ("infinite cost", lambda o: o.observe_many(["new", "b"], [8, 8], [1, 1], [1.0, -np.inf]), InvalidObservationError, "job 'b': cost -inf"),
    ("None cost", lambda o: o.observe_many(["new", "b"], [8, 8], [1, 1], [1.0, None]), InvalidObservationError, "job 'b': cost None"),
    ("string costs", lambda o: o.observe_many(["new"], [8], [1], ["x"]), InvalidObservationError, "job 'new': cost 'x'"),
    ("short batch sizes", lambda o: o.observe_many(["new", "a"], [8], [1, 1], [1.0, 1.0]), InvalidObservationError, "batch_sizes: expected 2"),
    ("long power limits", lambda o: o.observe_many(["new", "a"], [8, 8], [1, 1, 1], [1.0, 1.0]), InvalidObservationError, "power_limits: expected 2"),
    ("2-D costs", lambda o: o.observe_many(["new", "a"], [8, 8], [1, 1], [[1.0, 1.0]]), InvalidObservationError, "costs: expected 2"),
    ("unhashable job", lambda o: o.observe_many(["new", [1, 2]], [8, 8], [1, 1], [1.0, 1.0]), UnknownJobError, "not hashable"),
    ("rows of another optimizer", lambda o: o.observe_many(JITPowerLimitOptimizer(verbose=False).rows(["a"]), [8], [1], [1.0]), ForeignRowsError, "given to"),
    ("MISSING_ROW observed", lambda o: o.observe_many(o.rows(["zz"], create=False), [8], [1], [1.0]), UnknownJobError, "MISSING_ROW"),
    ("2-D rows", lambda o: o.observe_many(np.zeros((1, 1), np.int64), [8], [1], [1.0]), UnknownJobError, "1-D"),
    ("scalar zero batch size", lambda o: o.observe("new", 0, 250, 1.0), InvalidObservationError, "job 'new': batch size 0"),
    ("scalar bool batch size", lambda o: o.observe("new", True, 250, 1.0), InvalidObservationError, "batch size True"),
    ("scalar fractional power limit", lambda o: o.observe("a", 8, 2.5, 1.0), InvalidObservationError, "job 'a': power limit 2.5"),
    ("scalar NaN cost", lambda o: o.observe("a", 8, 250, float("nan")), InvalidObservationError, "job 'a': cost nan"),
    ("scalar huge int cost", lambda o: o.observe("a", 8, 250, 10**400), InvalidObservationError, "not a finite"),
    ("scalar bool cost", lambda o: o.observe("a", 8, 250, True), InvalidObservationError, "cost True"),
    ("scalar string cost", lambda o: o.observe("a", 8, 250, "1.0"), InvalidObservationError, "cost '1.0'"),
    ("scalar unhashable job", lambda o: o.observe({"a": 1}, 8, 250, 1.0), UnknownJobError, "not hashable"),
    ("predict zero batch size", lambda o: o.predict("a", 0), InvalidObservationError, "job 'a': batch size 0"),
    ("predict unhashable job", lambda o: o.predict([1], 8), UnknownJobError, "not hashable"),
    ("predict_many bad batch size", lambda o: o.predict_many(["a", "zz"], [8, -1]), InvalidObservationError, "job 'zz': batch size -1"),
    ("predict_many length mismatch", lambda o: o.predict_many(["a", "b"], [8]), InvalidObservationError, "expected 2"),
    ("predict_many rows of a batch-size optimizer", lambda o: o.predict_many(_bso_rows(), [8]), ForeignRowsError, "GTSBatchSizeOptimizer"),
]


def _bso_rows():
    bso = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    return bso.register_jobs(["a"], [[8, 16]])


@pytest.mark.parametrize("call, error, fragment", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_and_changes_nothing(call, error, fragment):
    opt = _seeded()
    before = snapshot(opt)
    with pytest.raises(error) as info:
        call(opt)
    assert isinstance(info.value, BanditFleetError)
    assert isinstance(info.value, (ValueError, KeyError))
    assert fragment in str(info.value)
    assert_unchanged(opt, before)
    # Still fully usable afterwards.
    opt.observe("a", 8, 50, 0.5)
    assert opt.predict("a", 8) == 50


def test_accepted_numeric_forms():
    opt = JITPowerLimitOptimizer(verbose=False)
    opt.observe_many(
        ["a", "a", "b"],
        np.array([8.0, 8.0, 16.0]),
        np.array([300, 200, 100], np.uint16),
        np.array([3, 2, 1], np.int32),
    )
    opt.observe(np.str_("c"), np.int32(8), np.float64(250.0), np.float32(1.5))
    assert opt.state("a") == {8: PowerLimitState(200, 2.0, 2)}
    assert opt.state("b") == {16: PowerLimitState(100, 1.0, 1)}
    assert opt.state("c") == {8: PowerLimitState(250, 1.5, 1)}
    big = 2**63 - 1
    opt.observe("d", big, big, -1e300)
    assert opt.predict_many(["d"], np.array([big], np.uint64)).tolist() == [big]


# ------------------------------------------------------------- table growth


def _check_table_invariants(opt: JITPowerLimitOptimizer) -> None:
    t = opt.table
    n = len(t)
    size = t.table.shape[0]
    assert size & (size - 1) == 0 and size >= 2 * t.capacity >= 2 * n
    assert int((t.table != EMPTY).sum()) == n
    found = np.empty(n, np.int64)
    lookup_entries(t.entry_row[:n], t.entry_batch_size[:n], t.table, t.entry_row, t.entry_batch_size, found)
    np.testing.assert_array_equal(found, np.arange(n))
    rebuilt = np.empty_like(t.table)
    rebuild_table(rebuilt, n, t.entry_row, t.entry_batch_size)
    # Rebuilding from entries alone gives back the same table: it is derived data.
    np.testing.assert_array_equal(rebuilt, t.table)


def test_growth_past_many_entries_keeps_everything_correct():
    rng = np.random.default_rng(2024)
    n_jobs, sizes = 2500, np.array([2**k for k in range(12)] + [3 * 2**k for k in range(12)])
    keys = [f"job-{i}" for i in range(n_jobs)]
    pairs = [(j, int(bs)) for j in range(n_jobs) for bs in sizes]  # 60,000 pairs
    order = rng.permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    repeats = rng.integers(1, 3, len(pairs))
    obs = [p for p, r in zip(pairs, repeats) for _ in range(r)]
    obs_jobs = [keys[j] for j, _ in obs]
    obs_bs = np.array([bs for _, bs in obs], np.int64)
    obs_pl = rng.integers(100, 110, len(obs))
    obs_cost = rng.integers(0, 5, len(obs)).astype(np.float64)  # many ties

    opt = JITPowerLimitOptimizer(verbose=False)
    model = NaivePowerLimit()
    capacities = set()
    start = 0
    for size in [1, 7, 300, 5000, 1, 20000, 40000, 10**9]:
        stop = min(start + size, len(obs))
        if size == 1:
            for i in range(start, stop):
                opt.observe(obs_jobs[i], int(obs_bs[i]), int(obs_pl[i]), float(obs_cost[i]))
        else:
            opt.observe_many(obs_jobs[start:stop], obs_bs[start:stop], obs_pl[start:stop], obs_cost[start:stop])
        capacities.add(opt.table.capacity)
        start = stop
    for i in range(len(obs)):
        model.observe(obs_jobs[i], int(obs_bs[i]), int(obs_pl[i]), float(obs_cost[i]))
    assert start == len(obs)
    assert len(capacities) > 3  # it really grew along the way
    assert opt.n_entries == len(model.entries) == 60000
    _check_table_invariants(opt)

    q_jobs = [keys[j] for j in range(n_jobs) for _ in sizes] + ["never"]
    q_bs = np.concatenate([np.tile(sizes, n_jobs), [8]])
    expected = [model.entries[(k, int(b))][0] for k, b in zip(q_jobs[:-1], q_bs[:-1])] + [NEEDS_PROFILING]
    assert opt.predict_many(q_jobs, q_bs).tolist() == expected
    a = opt.table.arrays()
    entry_keys = [(opt.key_of(r), b) for r, b in zip(a["entry_row"].tolist(), a["entry_batch_size"].tolist())]
    assert entry_keys == list(model.entries)  # entries in first-observation order
    assert a["best_power_limit"].tolist() == [e[0] for e in model.entries.values()]
    assert a["best_cost"].tolist() == [e[1] for e in model.entries.values()]
    assert a["observe_count"].tolist() == [e[2] for e in model.entries.values()]


def test_clustered_keys_one_job_many_batch_sizes_and_many_jobs_one_batch_size():
    opt = JITPowerLimitOptimizer(verbose=False)
    n = 50_000
    opt.observe_many(["solo"] * n, np.arange(1, n + 1), np.full(n, 7), np.ones(n))
    keys = list(range(n))  # integer keys, as a list, are keys
    opt.observe_many(keys, np.full(n, 32), np.arange(1, n + 1), np.zeros(n))
    assert opt.n_entries == 2 * n
    _check_table_invariants(opt)
    assert (opt.predict_many(["solo"] * n, np.arange(1, n + 1)) == 7).all()
    np.testing.assert_array_equal(opt.predict_many(keys, np.full(n, 32)), np.arange(1, n + 1))
    assert (opt.predict_many(keys, np.full(n, 31)) == NEEDS_PROFILING).all()


def test_table_reserve_and_hash_are_deterministic():
    t = PowerLimitTable(capacity=1)
    assert t.capacity == 1 and t.table.shape[0] == 2
    t.reserve(0)
    assert t.capacity == 1
    t.reserve(5)
    assert t.capacity == 5 and t.table.shape[0] == 16
    assert hash_key(3, 5) == hash_key(3, 5) != hash_key(5, 3)

"""The replay's edges against ``zeus._legacy.simulate.Simulator``, observation by observation.

The history comparison of tests/test_replay_*.py checks energies and times
approximately. Here both simulators run with *recording* optimizers: every
cost the batch-size optimizer and the power-limit optimizer are told must be
the reference's float exactly (``==``), in the same order. This reaches what
the histories cannot see: the cost of a run that never started
(``100 * beta_knob * min_cost``, never recorded in the history), the
association of the cost expression (last-ulp differences), the early-stopping
bound of a batch size that lacks some power limits (its own maximum power
limit, not the trace's), and the exact boundary of the retry caps.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from banditfleet import Job
from replay_support import assert_same_history, outcome, ref_job

pytestmark = pytest.mark.reference

TARGET = 0.5
TRAIN_COLUMNS = ["dataset", "network", "batch_size", "optimizer", "learning_rate", "run", "target_metric", "target_epoch"]
POWER_COLUMNS = ["dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power"]


# ------------------------------------------------------------ recording optimizers
def _ref_pair(seed, bso_log, plo_log, concurrency=False):
    from zeus._legacy.policy import JITPowerLimitOptimizer as RefPLO
    from zeus._legacy.policy import PruningGTSBatchSizeOptimizer as RefBSO

    class RecBSO(RefBSO):
        def observe(self, job, batch_size, cost, converged=None):
            bso_log.append((int(batch_size), float(cost), bool(converged)))
            return super().observe(job, batch_size, cost, converged)

    class RecPLO(RefPLO):
        def observe(self, job, batch_size, power_limit, cost):
            plo_log.append((int(batch_size), int(power_limit), float(cost)))
            return super().observe(job, batch_size, power_limit, cost)

    return RecBSO(seed=seed, concurrency=concurrency, verbose=False), RecPLO(verbose=False)


def _our_pair(seed, bso_log, plo_log, concurrency=False):
    from banditfleet import JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer

    class RecBSO(PruningGTSBatchSizeOptimizer):
        # Simulator drives the scalar calls, a fleet the batch calls: record both.
        def observe(self, job, batch_size, cost, converged=None):
            bso_log.append((int(batch_size), float(cost), None if converged is None else bool(converged)))
            return super().observe(job, batch_size, cost, converged)

        def observe_many(self, jobs, batch_sizes, costs, converged=None):
            flags = [None] * len(costs) if converged is None else [bool(c) for c in np.asarray(converged)]
            bso_log.extend(zip(np.asarray(batch_sizes).tolist(), np.asarray(costs, np.float64).tolist(), flags))
            return super().observe_many(jobs, batch_sizes, costs, converged)

    class RecPLO(JITPowerLimitOptimizer):
        def observe(self, job, batch_size, power_limit, cost):
            plo_log.append((int(batch_size), int(power_limit), float(cost)))
            return super().observe(job, batch_size, power_limit, cost)

        def observe_many(self, jobs, batch_sizes, power_limits, costs):
            plo_log.extend(
                zip(np.asarray(batch_sizes).tolist(), np.asarray(power_limits).tolist(), np.asarray(costs, np.float64).tolist())
            )
            return super().observe_many(jobs, batch_sizes, power_limits, costs)

    return RecBSO(seed=seed, concurrency=concurrency, verbose=False), RecPLO(verbose=False)


def _both(train, power, job, seed, run, concurrency=False):
    """Run ``run(sim, job)`` on the reference and on banditfleet with recording optimizers.

    Returns ((outcome, bso log, plo log) of the reference, the same of ours).
    """
    from zeus._legacy.simulate import Simulator as RefSim

    from banditfleet import Simulator

    out = []
    for make, sim_cls, j in ((_ref_pair, RefSim, ref_job(job)), (_our_pair, Simulator, job)):
        bso_log, plo_log = [], []
        bso, plo = make(seed, bso_log, plo_log, concurrency)
        sim = sim_cls(train, power, bso, plo, seed=seed, verbose=False)
        with contextlib.redirect_stdout(io.StringIO()):  # the reference prints never-started runs
            result = outcome(lambda: run(sim, j))
        out.append((result, bso_log, plo_log))
    return out


def _assert_same_observations(ref, ours, context=""):
    (r_out, r_bso, r_plo), (o_out, o_bso, o_plo) = ref, ours
    assert r_out[0] == o_out[0], f"{context}: reference {r_out}, ours {o_out}"
    if r_out[0] == "ok":
        assert_same_history(r_out[1], o_out[1], context)
    # Exact floats, exact order. The reference's converged flag is None only for
    # plain GTS; pruning GTS always gets it.
    assert len(r_plo) == len(o_plo), context
    for i, (a, b) in enumerate(zip(r_plo, o_plo)):
        assert a == b, f"{context}: power-limit observation {i}: reference {a}, ours {b}"
    assert len(r_bso) == len(o_bso), f"{context}: {len(r_bso)} reference observations, {len(o_bso)} ours"
    for i, (a, b) in enumerate(zip(r_bso, o_bso)):
        assert a == b, f"{context}: batch-size observation {i}: reference {a}, ours {b}"


def _frames(train_rows, power_rows):
    return pd.DataFrame(train_rows, columns=TRAIN_COLUMNS), pd.DataFrame(power_rows, columns=POWER_COLUMNS)


# --------------------------------------------------------------- never-started runs
def _never_starting_trace():
    """Batch size 8's single epoch costs far more than any whole run of the others."""
    train = [("d", "n", bs, "o", 0.1, i + 1, TARGET, te) for bs, tes in {8: [3.0, 4.0], 16: [5.0, 6.0], 32: [8.0, 7.0]}.items() for i, te in enumerate(tes)]
    tpe = {8: 1000.0, 16: 10.0, 32: 8.0}
    power = [("d", "n", bs, "o", pl, tpe[bs] * (1.5 if pl == 100 else 1.0), 0.9 * pl) for bs in tpe for pl in (100, 200)]
    return _frames(train, power)


@pytest.mark.parametrize("beta", [1.5, 2.0, 3.0, 7.25])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_never_started_run_is_observed_at_100_beta_min_cost(beta, eta):
    train, power = _never_starting_trace()
    job = Job("d", "n", "o", TARGET, 20, 16)
    ref, ours = _both(train, power, job, 7, lambda sim, j: sim.simulate_one_job(j, 8, beta, eta))
    _assert_same_observations(ref, ours, f"beta={beta} eta={eta}")
    # The case is the one meant: batch size 8 was tried and never started.
    never = [o for o in ref[1] if o[0] == 8 and not o[2]]
    assert never, "batch size 8 was never tried"
    assert 8 not in [e.bs for e in ref[0][1]]


# ------------------------------------------------------------------- random traces
@st.composite
def sparse_traces(draw):
    """One workload whose batch sizes each have their own subset of the power limits (so a
    batch size's maximum power limit differs from the trace's), runs that fail, and costs
    whose last bits depend on the order of operations."""
    bss = sorted(draw(st.sets(st.sampled_from([4, 8, 16, 32, 64, 128]), min_size=2, max_size=4)))
    all_pls = [100, 125, 150, 175, 200, 250, 300]
    default = draw(st.sampled_from(bss))
    max_epochs = draw(st.integers(3, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    train_rows, power_rows = [], []
    for bs in bss:
        for run in range(1, int(rng.integers(1, 4)) + 1):
            te = float(rng.integers(1, max_epochs + 3))
            if bs != default and rng.random() < 0.2:
                te = math.nan
            train_rows.append(("d", "n", bs, "o", 0.1, run, TARGET, te))
        # The default keeps the trace's top power limit sometimes, others lose it often.
        k = int(rng.integers(1, 4))
        pls = sorted(rng.choice(all_pls[:-1] if rng.random() < 0.6 else all_pls, size=k, replace=False).tolist())
        if bs == default and rng.random() < 0.5:
            pls = sorted(set(pls) | {all_pls[-1]})
        base = float(rng.uniform(1.0, 50.0)) * (8.0 / bs) ** float(rng.uniform(0.0, 1.2))
        for pl in pls:
            tpe = base * (1.0 + float(rng.uniform(0, 1)) * (300 - pl) / 300) * (1 + 1e-9 * float(rng.random()))
            power_rows.append(("d", "n", bs, "o", pl, tpe, float(rng.uniform(0.37, 0.99)) * pl))
    # The trace's maximum power limit must exist somewhere.
    if not any(r[4] == 300 for r in power_rows):
        r = power_rows[0]
        power_rows.append(r[:4] + (300, r[5] * 0.97, 0.7 * 300))
    train, power = _frames(train_rows, power_rows)
    return train, power, Job("d", "n", "o", TARGET, max_epochs, default)


@settings(max_examples=examples(25), deadline=None, derandomize=True)
@given(
    trace=sparse_traces(),
    recurrences=st.integers(1, 15),
    beta=st.sampled_from([1.05, 1.3, 2.0, 4.5, math.inf]),
    eta=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_one_job_observations_equal_reference_exactly(trace, recurrences, beta, eta, seed):
    train, power, job = trace
    ref, ours = _both(train, power, job, seed, lambda sim, j: sim.simulate_one_job(j, recurrences, beta, eta))
    _assert_same_observations(ref, ours, f"beta={beta} eta={eta} seed={seed}")


def test_missing_power_limits_change_the_early_stopping_bound():
    """A batch size without the trace's top power limit: its epoch cost uses its own top
    limit. Fixed case where the trace-wide maximum stops runs one epoch earlier."""
    train = [("d", "n", bs, "o", 0.1, r, TARGET, te) for bs, tes in {16: [6.0, 6.0], 32: [6.0, 5.0]}.items() for r, te in enumerate(tes, 1)]
    power = [
        ("d", "n", 16, "o", 300, 10.0, 250.0),
        ("d", "n", 16, "o", 200, 12.0, 180.0),
        ("d", "n", 32, "o", 150, 9.0, 140.0),
        ("d", "n", 32, "o", 100, 11.0, 95.0),
    ]
    train, power = _frames(train, power)
    job = Job("d", "n", "o", TARGET, 12, 16)
    for beta in (1.0, 1.1, 1.3, 2.0):
        for eta in (0.0, 0.5):
            ref, ours = _both(train, power, job, 3, lambda sim, j: sim.simulate_one_job(j, 6, beta, eta))
            _assert_same_observations(ref, ours, f"beta={beta} eta={eta}")


@settings(max_examples=examples(15), deadline=None, derandomize=True)
@given(
    trace=sparse_traces(),
    n=st.integers(1, 12),
    gap=st.sampled_from([10.0, 1000.0]),
    beta=st.sampled_from([1.5, 2.0, math.inf]),
    eta=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_group_observations_equal_reference_exactly(trace, n, gap, beta, eta, seed):
    from replay_support import random_groups

    train, power, job = trace
    groups = random_groups(np.random.default_rng(seed), n, mean_gap=gap, mean_duration=300.0)
    ref, ours = _both(
        train, power, job, seed, lambda sim, j: _bounded_group(sim, j, groups, beta, eta, 100 * n + 1000 + n), concurrency=True
    )
    if ref[0][0] == "RuntimeError" and ref[0][1] == "endless":
        assert ours[0][0] == "RuntimeError" and "retried" in ours[0][1]
        return
    _assert_same_observations(ref, ours, f"n={n} beta={beta} eta={eta} seed={seed}")


def _bounded_group(sim, job, groups, beta, eta, limit):
    """The reference may retry forever (see tests/test_replay_random.py): stop it at ``limit`` runs."""
    if type(sim).__module__.startswith("zeus"):
        run_job = sim._run_job
        calls = [0]

        def guarded(*args, **kwargs):
            calls[0] += 1
            if calls[0] > limit:
                raise RuntimeError("endless")
            return run_job(*args, **kwargs)

        sim._run_job = guarded
    return sim.simulate_one_alibaba_group(job, groups, beta, eta)


# -------------------------------------------------------------------- retry caps
class _ScriptedRef:
    """A reference-shaped batch-size optimizer that hands out a fixed script."""

    def __init__(self, script):
        self.script = list(script)
        self.i = 0

    def register_job(self, job, batch_sizes):
        pass

    def predict(self, job):
        bs = self.script[min(self.i, len(self.script) - 1)]
        self.i += 1
        return bs

    def observe(self, job, batch_size, cost, converged=None):
        pass


class _ScriptedOurs:
    """The same script behind banditfleet's batch API."""

    def __init__(self, script):
        from banditfleet.rows import RowSpace

        self.script = list(script)
        self.i = 0
        self.keys = []
        self.space = RowSpace("scripted")

    def register_job(self, job, batch_sizes):
        if job not in self.keys:
            self.keys.append(job)

    def rows(self, jobs):
        return self.space.tag(np.array([self.keys.index(j) for j in jobs], np.int64))

    def predict_many(self, rows):
        out = []
        for _ in range(len(rows)):
            out.append(self.script[min(self.i, len(self.script) - 1)])
            self.i += 1
        return np.array(out, np.int64)

    def observe_many(self, rows, batch_sizes, costs, converged=None):
        pass


def _fail_or_reach_trace():
    """Batch size 8 never reaches the target; 16 (the default) always does."""
    train = [("d", "n", 8, "o", 0.1, 1, TARGET, math.nan), ("d", "n", 16, "o", 0.1, 1, TARGET, 3.0)]
    power = [("d", "n", bs, "o", pl, 5.0 + bs / 8, 0.8 * pl) for bs in (8, 16) for pl in (100, 200)]
    return _frames(train, power)


@pytest.mark.parametrize("failures,ok", [(18, True), (19, True), (20, False), (21, False)])
def test_twenty_tries_boundary_equals_reference(failures, ok):
    """Recurrence 2 fails ``failures`` times, then reaches: 20 tries are allowed, not 19 or 21."""
    from zeus._legacy.policy import JITPowerLimitOptimizer as RefPLO
    from zeus._legacy.simulate import Simulator as RefSim

    from banditfleet import JITPowerLimitOptimizer, Simulator

    train, power = _fail_or_reach_trace()
    job = Job("d", "n", "o", TARGET, 10, 16)
    script = [16] + [8] * failures + [16] * 5
    ref_sim = RefSim(train, power, _ScriptedRef(script), RefPLO(verbose=False), seed=1, verbose=False)
    ref = outcome(lambda: ref_sim.simulate_one_job(ref_job(job), 3, math.inf, 0.5))
    ours_sim = Simulator(train, power, _ScriptedOurs(script), JITPowerLimitOptimizer(verbose=False), seed=1, verbose=False)
    ours = outcome(lambda: ours_sim.simulate_one_job(job, 3, math.inf, 0.5))
    assert (ref[0] == "ok") == ok, ref
    assert ref[0] == ours[0], (ref, ours)
    if ok:
        assert_same_history(ref[1], ours[1], f"failures={failures}")
        assert len(ours[1]) == 1 + failures + 1 + 1
    else:
        assert ref[1] == ours[1]


@pytest.mark.parametrize("cap,failures", [(0, 0), (0, 1), (3, 2), (3, 3), (3, 4), (7, 7), (7, 8)])
def test_group_retry_cap_boundary(cap, failures):
    """A group's safety cap allows exactly ``retry_cap`` retries (not in the reference, whose
    loop would go on forever; the boundary is the documented contract of ReplayUnits.retry_cap)."""
    from banditfleet import JITPowerLimitOptimizer
    from banditfleet.kernels.replay import ERR_RETRY_LIMIT, MODE_GROUP, STATUS_DONE, STATUS_ERROR
    from banditfleet.replay.engine import Partition, make_units, run_units
    from banditfleet.replay.traces import Trace, build_workloads

    train, power = _fail_or_reach_trace()
    trace = Trace(train, power, "t")
    job = Job("d", "n", "o", TARGET, 10, 16)
    w = build_workloads([(trace, job)])
    bso = _ScriptedOurs([8] * failures + [16] * 5)
    bso.register_job(job, w.arms[0])
    plo = JITPowerLimitOptimizer(verbose=False)
    units = make_units(
        w.tables,
        np.zeros(1, np.int64),
        np.array([MODE_GROUP]),
        np.array([0.5]),
        np.array([math.inf]),
        np.array([1]),
        sub_start=np.zeros(1, np.int64),
        sub_t0=np.array([0.0]),
        sub_t1=np.array([100.0]),
        sub_ratio=np.array([1.0]),
        retry_cap=np.array([cap], np.int64),
    )
    r = run_units(w.tables, units, np.array([1], np.uint64), [Partition(bso, plo, np.zeros(1, np.int64), bso.rows([job]), plo.rows([job]))])
    if failures <= cap:
        assert int(r.status[0]) == STATUS_DONE, (int(r.status[0]), int(r.error[0]))
        assert r.bs.tolist() == [8] * failures + [16]
    else:
        assert (int(r.status[0]), int(r.error[0])) == (STATUS_ERROR, ERR_RETRY_LIMIT)


# ------------------------------------------------------------------ reaping order
def _group(starts, ends, ratios=None):
    n = len(starts)
    return pd.DataFrame(
        {
            "group": "g",
            "start_time": np.array(starts, np.float64),
            "end_time": np.array(ends, np.float64),
            "dataset": "d",
            "runtime_ratio": np.ones(n) if ratios is None else np.array(ratios, np.float64),
        }
    )


REAP_CASES = [
    # jobs ending in reverse start order
    ([0, 1, 2, 3], [400, 300, 200, 100], None),
    # ties in end time, then a later start that ends first
    ([0, 1, 2, 3, 4, 50], [100, 40, 40, 10, 200, 60], None),
    # every job ends at the same time
    ([0, 5, 10, 15], [500, 500, 500, 500], [1.0, 0.5, 2.0, 1.5]),
    # a job ends exactly when the next one starts
    ([0, 100, 100, 200], [100, 200, 150, 300], None),
]


@pytest.mark.parametrize("starts,ends,ratios", REAP_CASES)
@pytest.mark.parametrize("beta", [2.0, math.inf])
def test_reaping_order_equals_reference(starts, ends, ratios, beta):
    """Finished jobs are reaped earliest end first (ties in submission order): the order in
    which the optimizers are told the costs must be the reference's, exactly."""
    train, power = _never_starting_trace()
    job = Job("d", "n", "o", TARGET, 20, 16)
    groups = _group(starts, ends, ratios)
    ref, ours = _both(
        train, power, job, 11, lambda sim, j: _bounded_group(sim, j, groups, beta, 0.5, 2000), concurrency=True
    )
    _assert_same_observations(ref, ours, f"starts={starts} ends={ends} beta={beta}")
    assert len(ref[1]) >= len(starts)

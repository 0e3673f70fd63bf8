"""The replay against the reference simulator on small random traces (hypothesis).

Random traces reach every corner: runs that never start because one epoch
exceeds the bound, batch sizes that fail, the default failing in the first
recurrence, 20 failed tries, pruning that leaves nothing, concurrent
submissions, retries, runtime ratios. The reference and banditfleet either
give the same history or both raise the same kind of error.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet import Job
from banditfleet.errors import ReplayError, TraceError
from replay_support import assert_same_history, our_sim, outcome, random_groups, ref_job, ref_sim

pytestmark = pytest.mark.reference

TARGET = 0.5


@st.composite
def traces(draw):
    """(train, power, job): one workload with 2-5 batch sizes and 2-4 power limits."""
    bss = sorted(draw(st.sets(st.sampled_from([4, 8, 16, 32, 64, 128, 256]), min_size=2, max_size=5)))
    pls = sorted(draw(st.sets(st.sampled_from([100, 125, 150, 200, 250, 300]), min_size=2, max_size=4)))
    default = draw(st.sampled_from(bss))
    max_epochs = draw(st.integers(3, 14))
    fail_p = draw(st.sampled_from([0.0, 0.15, 0.4]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    train_rows = []
    power_rows = []
    for bs in bss:
        runs = int(rng.integers(1, 5))
        for run in range(1, runs + 1):
            for target in (0.3, TARGET):
                te = float(rng.integers(1, max_epochs + 3))
                if rng.random() < fail_p:
                    te = math.nan
                train_rows.append(("d", "n", bs, "o", 0.1, run, target, te))
        base = float(rng.uniform(1.0, 50.0)) * (8.0 / bs) ** float(rng.uniform(0.0, 1.5))
        for pl in pls:
            power_rows.append(("d", "n", bs, "o", pl, base * (1.0 + float(rng.uniform(0, 1)) * (pls[-1] - pl) / pls[-1]), float(rng.uniform(0.4, 1.0)) * pl))
    train = pd.DataFrame(train_rows, columns=["dataset", "network", "batch_size", "optimizer", "learning_rate", "run", "target_metric", "target_epoch"])
    power = pd.DataFrame(power_rows, columns=["dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power"])
    return train, power, Job("d", "n", "o", TARGET, max_epochs, default)


def _same(ref, ours, context):
    assert ref[0] == ours[0], f"{context}: reference {ref}, ours {ours}"
    if ref[0] == "ok":
        assert_same_history(ref[1], ours[1], context)
    elif ref[0] == "RuntimeError":
        assert ref[1] == ours[1]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    trace=traces(),
    recurrences=st.integers(1, 25),
    beta=st.sampled_from([0.5, 1.0, 1.2, 2.0, math.inf]),
    eta=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_simulate_one_job_random_traces(trace, recurrences, beta, eta, seed):
    train, power, job = trace
    ref = outcome(lambda: ref_sim(train, power, seed).simulate_one_job(ref_job(job), recurrences, beta, eta))
    ours = outcome(lambda: our_sim(train, power, seed).simulate_one_job(job, recurrences, beta, eta))
    _same(ref, ours, f"beta={beta} eta={eta}")


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    trace=traces(),
    n=st.integers(1, 25),
    gap=st.sampled_from([10.0, 100.0, 1000.0]),
    beta=st.sampled_from([1.5, 2.0, math.inf]),
    eta=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_alibaba_group_random_traces(trace, n, gap, beta, eta, seed):
    train, power, job = trace
    groups = random_groups(np.random.default_rng(seed), n, mean_gap=gap, mean_duration=300.0)
    ours = outcome(lambda: our_sim(train, power, seed, concurrency=True).simulate_one_alibaba_group(job, groups, beta, eta))
    # A run that never starts is observed at cost 0 in a group, so Thompson sampling may
    # pick it again and again: the reference then retries forever, banditfleet gives up
    # after 100 x submissions + 1000 retries. Bound the reference's runs to see it.
    sim = ref_sim(train, power, seed, concurrency=True)
    sim._run_job = _bounded(sim._run_job, 100 * n + 1000 + n)
    try:
        ref = outcome(lambda: sim.simulate_one_alibaba_group(ref_job(job), groups, beta, eta))
    except _EndlessRetries:
        assert ours[0] == "RuntimeError" and "retried" in ours[1], ours
        return
    _same(ref, ours, f"n={n} gap={gap} beta={beta} eta={eta}")


class _EndlessRetries(Exception):
    pass


def _bounded(run_job, limit):
    calls = [0]

    def guarded(*args, **kwargs):
        calls[0] += 1
        if calls[0] > limit:
            raise _EndlessRetries
        return run_job(*args, **kwargs)

    return guarded


# --------------------------------------------------------- handcrafted corners
def _trace(paths: dict[int, list[float]], tpe: dict[int, float]):
    train = pd.DataFrame(
        [("d", "n", bs, "o", 0.1, i + 1, TARGET, te) for bs, tes in paths.items() for i, te in enumerate(tes)],
        columns=["dataset", "network", "batch_size", "optimizer", "learning_rate", "run", "target_metric", "target_epoch"],
    )
    power = pd.DataFrame(
        [("d", "n", bs, "o", pl, tpe[bs] * (1.5 if pl == 100 else 1.0), 0.9 * pl) for bs in paths for pl in (100, 200)],
        columns=["dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power"],
    )
    return train, power


def test_run_that_never_starts():
    """Batch size 8's single epoch costs more than twice the default's whole run."""
    train, power = _trace({8: [3.0, 4.0], 16: [5.0, 6.0], 32: [8.0, 7.0]}, {8: 1000.0, 16: 10.0, 32: 8.0})
    job = Job("d", "n", "o", TARGET, 20, 16)
    ref = ref_sim(train, power, 7).simulate_one_job(ref_job(job), 6, 2.0, 0.5)
    sim = our_sim(train, power, 7)
    ours = sim.simulate_one_job(job, 6, 2.0, 0.5)
    assert_same_history(ref, ours, "never starts")
    assert 8 not in [e.bs for e in ours]  # the never-started run is observed, not recorded


def test_default_that_fails_first_raises_like_the_reference():
    train, power = _trace({8: [3.0], 16: [math.nan, math.nan]}, {8: 10.0, 16: 5.0})
    job = Job("d", "n", "o", TARGET, 20, 16)
    with pytest.raises(RuntimeError, match="did not converge") as ref_exc:
        ref_sim(train, power, 1).simulate_one_job(ref_job(job), 3, 2.0, 0.5)
    with pytest.raises(ReplayError) as exc:
        our_sim(train, power, 1).simulate_one_job(job, 3, 2.0, 0.5)
    assert str(exc.value) == str(ref_exc.value)


def test_twenty_failed_tries_raise_like_the_reference():
    """After the first recurrence every run fails: 20 tries, then the reference's error."""
    train, power = _trace({8: [math.nan], 16: [2.0, math.nan, math.nan, math.nan], 32: [math.nan]}, {8: 10.0, 16: 5.0, 32: 4.0})
    job = Job("d", "n", "o", TARGET, 20, 16)
    ref = outcome(lambda: ref_sim(train, power, 3).simulate_one_job(ref_job(job), 5, 2.0, 0.5))
    ours = outcome(lambda: our_sim(train, power, 3).simulate_one_job(job, 5, 2.0, 0.5))
    assert ref == ours or (ref[0] == ours[0] and ref[0] != "ok")


def test_simulator_leaves_its_optimizers_alone_and_repeats():
    train, power = _trace({8: [3.0, 4.0], 16: [5.0, 6.0], 32: [8.0, 7.0]}, {8: 12.0, 16: 10.0, 32: 8.0})
    job = Job("d", "n", "o", TARGET, 20, 16)
    sim = our_sim(train, power, 7, concurrency=True)
    first = sim.simulate_one_job(job, 10, 2.0, 0.5)
    assert job not in sim.bso and len(sim.plo) == 0
    assert sim.simulate_one_job(job, 10, 2.0, 0.5) == first
    groups = random_groups(np.random.default_rng(1), 10, 50.0, 300.0)
    g1 = sim.simulate_one_alibaba_group(job, groups, 2.0, 0.5)
    assert sim.simulate_one_alibaba_group(job, groups, 2.0, 0.5) == g1
    assert job not in sim.bso


def test_simulator_refuses_bad_input():
    train, power = _trace({8: [3.0], 16: [5.0]}, {8: 12.0, 16: 10.0})
    sim = our_sim(train, power, 7)
    job = Job("d", "n", "o", TARGET, 20, 16)
    groups = random_groups(np.random.default_rng(1), 5, 50.0, 300.0)
    with pytest.raises(TraceError, match="sorted"):
        sim.simulate_one_alibaba_group(job, groups.iloc[::-1], 2.0, 0.5)
    with pytest.raises(TraceError, match="beta_knob"):
        sim.simulate_one_job(job, 3, 0.0, 0.5)
    with pytest.raises(TraceError, match="eta_knob"):
        sim.simulate_one_job(job, 3, 2.0, 1.5)
    with pytest.raises(TraceError, match="default batch size 64"):
        sim.simulate_one_job(Job("d", "n", "o", TARGET, 20, 64), 3, 2.0, 0.5)
    with pytest.raises(TraceError, match="missing column"):
        type(sim)(train.drop(columns=["target_epoch"]), power, sim.bso, sim.plo)
    bad = groups.copy()
    bad.loc[0, "start_time"] = -5.0
    with pytest.raises(TraceError, match=">= 0"):
        sim.simulate_one_alibaba_group(job, bad, 2.0, 0.5)


def test_group_whose_reference_retries_forever_stops():
    """A run that never starts is observed at cost 0 in a group; Thompson sampling keeps
    picking it and the reference retries forever. banditfleet stops the group."""
    rng = np.random.default_rng(0)
    bss = sorted(rng.choice([4, 8, 16, 32, 64, 128], size=int(rng.integers(2, 5)), replace=False).tolist())
    default = int(rng.choice(bss))
    max_epochs = int(rng.integers(2, 10))
    train_rows, power_rows = [], []
    for bs in bss:
        for run in range(1, int(rng.integers(1, 4)) + 1):
            te = float(rng.integers(1, max_epochs + 2))
            if rng.random() < 0.2:
                te = math.nan
            train_rows.append(("d", "n", bs, "o", 0.1, run, TARGET, te))
        base = float(rng.uniform(1, 50)) * (8 / bs) ** float(rng.uniform(0, 3))
        for pl in (100, 200):
            power_rows.append(("d", "n", bs, "o", pl, base * (1.3 if pl == 100 else 1.0), 0.8 * pl))
    train = pd.DataFrame(train_rows, columns=["dataset", "network", "batch_size", "optimizer", "learning_rate", "run", "target_metric", "target_epoch"])
    power = pd.DataFrame(power_rows, columns=["dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power"])
    groups = random_groups(rng, int(rng.integers(3, 20)), 50.0, 300.0)
    job = Job("d", "n", "o", TARGET, max_epochs, default)
    with pytest.raises(ReplayError, match="retried"):
        our_sim(train, power, 0, concurrency=True).simulate_one_alibaba_group(job, groups, 1.5, 0.5)
    sim = ref_sim(train, power, 0, concurrency=True)
    sim._run_job = _bounded(sim._run_job, 800)  # far more runs than its submissions: it is stuck
    with pytest.raises(_EndlessRetries):
        sim.simulate_one_alibaba_group(ref_job(job), groups, 1.5, 0.5)

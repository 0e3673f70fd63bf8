"""The replay against ``zeus._legacy.simulate.Simulator`` on the public Zeus traces.

Every workload, on two GPUs fully (v100, a40) and two more partly, with
several seeds and knobs, early stopping on (``beta_knob`` 2, and a tight 1.1
that makes runs stop before they start) and off (``inf``): the histories
equal the reference's entry by entry. Groups use the Zeus artifacts' setup
(PruningGTS with concurrency, JIT power limits, Adler-32 seeds).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from banditfleet.replay.traces import Trace, ZEUS_JOB_DEFAULTS, zeus_job
from replay_support import (
    adler,
    assert_same_history,
    our_sim,
    outcome,
    power_df,
    random_groups,
    ref_job,
    ref_sim,
    train_df,
)

pytestmark = pytest.mark.reference

DATASETS = sorted(ZEUS_JOB_DEFAULTS)
KNOBS = [(2.0, 0.5), (math.inf, 0.5), (1.1, 0.0), (2.0, 1.0), (math.inf, 0.25)]


def _job(gpu: str, dataset: str):
    return zeus_job(dataset, Trace(train_df(), power_df(gpu), gpu))


def _cases():
    cases = []
    for gpu in ("v100", "a40"):
        for i, dataset in enumerate(DATASETS):
            for k in range(2):
                beta, eta = KNOBS[(i + 2 * k + (gpu == "a40")) % len(KNOBS)]
                cases.append((gpu, dataset, beta, eta, 1 + i + 10 * k))
    for gpu in ("p100", "rtx6000"):
        for i, dataset in enumerate(DATASETS):
            beta, eta = KNOBS[(i + (gpu == "p100")) % len(KNOBS)]
            cases.append((gpu, dataset, beta, eta, 100 + i))
    return cases


@pytest.mark.parametrize("gpu,dataset,beta,eta,seed", _cases())
def test_simulate_one_job_equals_reference(gpu, dataset, beta, eta, seed):
    job = _job(gpu, dataset)
    recurrences = 30
    ref = ref_sim(train_df(), power_df(gpu), seed).simulate_one_job(ref_job(job), recurrences, beta, eta)
    ours = our_sim(train_df(), power_df(gpu), seed).simulate_one_job(job, recurrences, beta, eta)
    assert_same_history(ref, ours, f"{gpu} {dataset} beta={beta} eta={eta} seed={seed}")


@pytest.mark.parametrize("gpu", ["v100", "a40"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_alibaba_group_equals_reference(gpu, dataset):
    rng = np.random.default_rng(adler(gpu + dataset))
    job = _job(gpu, dataset)
    group_id = f"{gpu}-{dataset}-group"
    seed = adler(group_id)
    groups = random_groups(rng, 30, mean_gap=2000.0, mean_duration=4000.0, name=group_id, dataset=dataset)
    beta, eta = (2.0, 0.5) if dataset != "squad" else (math.inf, 0.7)
    ref = ref_sim(train_df(), power_df(gpu), seed, concurrency=True).simulate_one_alibaba_group(ref_job(job), groups, beta, eta)
    ours = our_sim(train_df(), power_df(gpu), seed, concurrency=True).simulate_one_alibaba_group(job, groups, beta, eta)
    assert_same_history(ref, ours, f"{gpu} {dataset} group")


TIGHT = [
    ("v100", "imagenet", 1.0, 0.5, 3),
    ("v100", "squad", 0.6, 0.5, 3),
    ("v100", "librispeech", 1.0, 0.5, 3),
    ("a40", "sentiment140", 1.0, 0.5, 3),
    ("a40", "squad", 1.0, 0.5, 3),
    ("a40", "imagenet", 1.05, 0.5, 3),
]


@pytest.mark.parametrize("gpu,dataset,beta,eta,seed", TIGHT)
def test_tight_early_stopping_and_errors_equal_reference(gpu, dataset, beta, eta, seed):
    """A bound at or below the best cost: runs that never start, 20 failed tries, pruning
    that leaves nothing. The same history, or the same kind of error, as the reference."""
    job = _job(gpu, dataset)
    ref = outcome(lambda: ref_sim(train_df(), power_df(gpu), seed).simulate_one_job(ref_job(job), 30, beta, eta))
    ours = outcome(lambda: our_sim(train_df(), power_df(gpu), seed).simulate_one_job(job, 30, beta, eta))
    assert ref[0] == ours[0], (ref, ours)
    if ref[0] == "ok":
        assert_same_history(ref[1], ours[1], f"{gpu} {dataset} beta={beta}")
    elif ref[0] == "RuntimeError":
        assert ref[1] == ours[1]


def test_cases_exercise_the_interesting_paths():
    """The cases above hit failed runs (early stopped or never reaching the target).

    Runs that never start need one epoch to cost more than the bound, which
    these traces hardly produce; tests/test_replay_random.py covers them.
    """
    from banditfleet.replay.engine import make_units, run_units, Partition
    from banditfleet.replay.traces import build_workloads
    from banditfleet import JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer
    from banditfleet.kernels.replay import MODE_SEQUENTIAL

    never_started = failed = 0
    for gpu, dataset, beta, eta, seed in _cases() + TIGHT:
        trace = Trace(train_df(), power_df(gpu), gpu)
        job = zeus_job(dataset, trace)
        w = build_workloads([(trace, job)])
        bso = PruningGTSBatchSizeOptimizer(seed=seed, verbose=False)
        plo = JITPowerLimitOptimizer(verbose=False)
        bso.register_job(job, w.arms[0])
        units = make_units(w.tables, np.zeros(1, np.int64), np.array([MODE_SEQUENTIAL]), np.array([eta]), np.array([beta]), np.array([30]))
        r = run_units(w.tables, units, np.array([seed], np.uint64), [Partition(bso, plo, np.zeros(1, np.int64), bso.rows([job]), plo.rows([job]))])
        never_started += int(r.runs[0]) - r.unit.shape[0]
        failed += int((~r.reached).sum())
    assert failed > 0
    assert never_started >= 0


def test_profiling_matches_the_reference_profile():
    """The precomputed profiling tables equal the reference's _profile_power_limit, in order."""
    from banditfleet.kernels.replay import profile_requests
    from banditfleet.replay.traces import build_workloads

    for gpu in ("v100", "p100"):
        trace = Trace(train_df(), power_df(gpu), gpu)
        ref = ref_sim(train_df(), power_df(gpu), 1)
        for dataset in DATASETS:
            job = zeus_job(dataset, trace)
            w = build_workloads([(trace, job)])
            t = w.tables
            for a, bs in enumerate(w.arms[0]):
                eta = 0.3
                expected = ref._profile_power_limit(ref_job(job), bs, eta)
                pos = np.empty(2, np.int64)
                pl = np.empty(t.arm_cell_count[a], np.int64)
                cost = np.empty(t.arm_cell_count[a], np.float64)
                profile_requests(np.zeros(1, np.int64), np.array([a]), np.array([eta]), t, pos, pl, cost)
                assert list(expected) == pl.tolist()
                assert list(expected.values()) == cost.tolist()
                power = job.filter_df(ref.df)
                power = power.loc[power.batch_size == bs]
                assert t.arm_mean_epe[a] == power.energy_per_epoch.mean().item()
                assert t.arm_mean_tpe[a] == power.time_per_epoch.mean().item()


def test_plain_gts_optimizer_equals_reference():
    """Any banditfleet batch-size optimizer works: GTS with a learned precision, as the reference's."""
    from zeus._legacy.policy.optimizer import GTSBatchSizeOptimizer as RefGTS
    from zeus._legacy.policy.optimizer import JITPowerLimitOptimizer as RefPLO
    from zeus._legacy.simulate import Simulator as RefSim

    from banditfleet import GTSBatchSizeOptimizer, JITPowerLimitOptimizer, Simulator

    job = _job("v100", "librispeech")
    ref = RefSim(train_df(), power_df("v100"), RefGTS(learn_reward_precision=True, seed=3, verbose=False), RefPLO(verbose=False), seed=3, verbose=False)
    ours = Simulator(train_df(), power_df("v100"), GTSBatchSizeOptimizer(learn_reward_precision=True, seed=3, verbose=False), JITPowerLimitOptimizer(verbose=False), seed=3, verbose=False)
    assert_same_history(ref.simulate_one_job(ref_job(job), 30, 2.0, 0.5), ours.simulate_one_job(job, 30, 2.0, 0.5), "GTS")

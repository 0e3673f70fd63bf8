"""Replay policies: gts / gts-known / grid-search / default / oracle in a fleet equal zeus's
Simulator driving the corresponding optimizer (zeus's own, or a naive model of the documented
policy); the oracle equals a brute force over the trace; regret is cost minus oracle cost;
banditfleet.Simulator takes zeus's optimizer objects."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math

import numpy as np
import pandas as pd
import pytest

from banditfleet.errors import ConfigurationError, ReplayError, UnknownBatchSizeError
from banditfleet.kernels.replay import ERR_NONE, ERR_NOT_PROFILED
from banditfleet.replay.fleet import Fleet, Setting, group_seed, replay_fleet, sweep
from banditfleet.replay.policies import GridSearchBatchSizeOptimizer
from banditfleet.replay.traces import Trace, build_workloads, jobs_for
from naive_policies import FixedBatchSize, FixedPowerLimit, NaiveGridSearch, naive_oracle
from replay_support import assert_same_history, need_traces, power_df, random_groups, ref_job, train_df

pytestmark = pytest.mark.reference


def _fleet(gpu: str, groups: int, seed: int, datasets=None) -> Fleet:
    from banditfleet.replay.synthetic import generate_groups

    trace = Trace(train_df(), power_df(gpu), gpu)
    datasets = datasets or trace.datasets()
    workloads = build_workloads([(trace, j) for j in jobs_for(trace, datasets).values()])
    return generate_groups(workloads, groups, seed, mean_recurrence=[4.0] * len(datasets))


def _ref_group(fleet: Fleet, g: int, bso, plo, seed: int, setting: Setting, job=None):
    """("ok", history) or (exception type name, message) of zeus's Simulator on group g."""
    from zeus._legacy.simulate import Simulator as RefSim

    trace = fleet.workloads.traces[0]
    job = ref_job(fleet.workloads.jobs[fleet.group_wl[g]]) if job is None else job
    sim = RefSim(trace.train, trace.power, bso, plo, seed=seed, verbose=False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return "ok", sim.simulate_one_alibaba_group(job, fleet.group_frame(g), setting.beta_knob, setting.eta_knob)
    except AssertionError as exc:
        return "AssertionError", str(exc)


# ------------------------------------------------------------------ GTS policies
@pytest.mark.parametrize("policy,precision", [("gts", 0.0), ("gts-known", 1e-12)])
def test_gts_policies_equal_zeus_simulator(policy, precision):
    """Each group's history under gts / gts-known equals zeus's Simulator with zeus's
    GTSBatchSizeOptimizer (learned or known precision) seeded as run_alibaba.py seeds."""
    from zeus._legacy.policy.optimizer import GTSBatchSizeOptimizer as RefGTS
    from zeus._legacy.policy.optimizer import JITPowerLimitOptimizer as RefPLO

    need_traces()
    fleet = _fleet("v100", 10, 4)
    settings_ = [Setting(0.5, 2.0, policy=policy, reward_precision=precision), Setting(1.0, math.inf, seed=1, policy=policy, reward_precision=precision)]
    result = replay_fleet(fleet, settings_)
    seen = set()
    for si, s in enumerate(settings_):
        for g in range(len(fleet)):
            seed = group_seed(fleet.group_ids[g], s.seed)
            bso = RefGTS(learn_reward_precision=policy == "gts", reward_precision=precision, seed=seed, verbose=False)
            kind, ref = _ref_group(fleet, g, bso, RefPLO(verbose=False), seed, s)
            u = result.unit(si, g)
            seen.add(kind)
            if kind == "ok":
                assert result.result.error[u] == ERR_NONE, (s, g)
                assert_same_history(ref, result.history(si, g), f"{s.label} group {g}")
            else:  # a concurrent launch with the never-profiled default: the reference asserts
                assert result.result.error[u] == ERR_NOT_PROFILED, (s, g, ref)
    assert "ok" in seen


# ------------------------------------------------------------------ grid search
def test_grid_search_fleet_equals_zeus_simulator_with_naive_grid_search():
    from zeus._legacy.policy.optimizer import JITPowerLimitOptimizer as RefPLO

    need_traces()
    fleet = _fleet("a40", 8, 8)
    settings_ = [Setting(0.5, 2.0, policy="grid-search"), Setting(0.2, math.inf, policy="grid-search")]
    result = replay_fleet(fleet, settings_)
    assert result.errors().empty
    explored = 0
    for si, s in enumerate(settings_):
        for g in range(len(fleet)):
            seed = group_seed(fleet.group_ids[g], s.seed)
            kind, ref = _ref_group(fleet, g, NaiveGridSearch(), RefPLO(verbose=False), seed, s)
            assert kind == "ok", ref
            assert_same_history(ref, result.history(si, g), f"{s.label} group {g}")
            explored = max(explored, len({e.bs for e in ref}))
    assert explored >= 3  # the grid really walks


def test_grid_search_simulator_equals_zeus_simulator():
    """One sequentially recurring job: banditfleet's Simulator with GridSearchBatchSizeOptimizer
    == zeus's Simulator with the naive grid search, on every dataset of a trace."""
    from zeus._legacy.policy.optimizer import JITPowerLimitOptimizer as RefPLO
    from zeus._legacy.simulate import Simulator as RefSim

    from banditfleet import JITPowerLimitOptimizer, Simulator

    need_traces()
    trace = Trace(train_df(), power_df("v100"), "v100")
    for job in jobs_for(trace, ["librispeech", "squad"]).values():
        ours = Simulator(train_df(), power_df("v100"), GridSearchBatchSizeOptimizer(), JITPowerLimitOptimizer(verbose=False), seed=5, verbose=False)
        ref = RefSim(train_df(), power_df("v100"), NaiveGridSearch(), RefPLO(verbose=False), seed=5, verbose=False)
        outcomes = []
        for sim, j in ((ref, ref_job(job)), (ours, job)):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    outcomes.append(("ok", sim.simulate_one_job(j, 12, 2.0, 0.5)))
            except RuntimeError as exc:
                outcomes.append(("RuntimeError", str(exc)))
        assert outcomes[0][0] == outcomes[1][0], (job, outcomes)
        if outcomes[0][0] == "ok":
            assert_same_history(outcomes[0][1], outcomes[1][1], job.dataset)


def test_grid_search_optimizer_equals_naive_model_and_validates():
    rng = np.random.default_rng(3)
    keys = [f"j{i}" for i in range(40)]
    arms = [sorted(rng.choice([8, 16, 32, 64, 128, 256], rng.integers(1, 6), replace=False).tolist()) for _ in keys]
    defaults = [a[rng.integers(len(a))] for a in arms]
    ours = GridSearchBatchSizeOptimizer()
    rows = ours.register_jobs(keys, arms, default_bs=defaults)
    naive = NaiveGridSearch()
    # key by name; the naive model reads the default from the job, so give it objects that carry one
    jobs = {k: dataclasses.make_dataclass("J", [("name", str), ("default_bs", int)], frozen=True)(k, d) for k, d in zip(keys, defaults)}
    for k, a in zip(keys, arms):
        naive.register_job(jobs[k], a)
    for _ in range(12):
        got = ours.predict_many(rows)
        want = [naive.predict(jobs[k]) for k in keys]
        assert got.tolist() == want
        cost = rng.choice([1.0, 2.0, 3.0], len(keys)) * rng.uniform(0.5, 1.5, len(keys))
        reached = rng.random(len(keys)) < 0.7
        ours.observe_many(rows, got, cost, reached)
        for k, b, c, r in zip(keys, want, cost.tolist(), reached.tolist()):
            naive.observe(jobs[k], b, c, r)
    before = ours.predict_many(rows)
    with pytest.raises(UnknownBatchSizeError, match="j1.*999999"):
        ours.observe_many(rows[:2], [arms[0][0], 999_999], [1.0, 1.0], [True, True])
    assert np.array_equal(ours.predict_many(rows), before)  # refused whole: nothing changed


# ---------------------------------------------------------------- default, oracle
def test_oracle_equals_brute_force_and_regret_is_cost_minus_oracle():
    need_traces()
    fleet = _fleet("rtx6000", 16, 2)
    settings_ = [Setting(0.5, 2.0), Setting(0.9, 2.0, policy="oracle"), Setting(0.9, 2.0, policy="grid-search")]
    result = replay_fleet(fleet, settings_)
    trace = fleet.workloads.traces[0]
    table = result.oracle()
    naive = {(job.dataset, eta): naive_oracle(trace.train, trace.power, job, eta) for job in fleet.workloads.jobs for eta in {s.eta_knob for s in settings_}}
    for s in settings_:
        for w, job in enumerate(fleet.workloads.jobs):
            bs, pl, energy, time, cost = naive[(job.dataset, s.eta_knob)]
            row = table.loc[(table.setting == s.label) & (table.dataset == job.dataset)].iloc[0]
            assert (row.batch_size, row.power_limit) == (bs, pl), (s, job.dataset)
            assert row.energy_J == pytest.approx(energy, rel=1e-12)
            assert row.time_s == pytest.approx(time, rel=1e-12)
            assert row.cost == pytest.approx(cost, rel=1e-12)
    # regret per group and per submission, from the history rows
    h = result.history_frame()
    labels = [s.label for s in settings_]
    gi = {gid: i for i, gid in enumerate(fleet.group_ids)}
    oracle_cost = {(s.label, job.dataset): naive[(job.dataset, s.eta_knob)][4] for s in settings_ for job in fleet.workloads.jobs}
    regret = result.regret()
    sub_regret = result.submission_regret()
    per_sub = h.groupby(["setting", "group", "submission"], observed=True).cost_J.sum()
    for si, label in enumerate(labels):
        for g in range(len(fleet)):
            a, n = fleet.sub_start[g], fleet.sub_count[g]
            oc = oracle_cost[(label, fleet.dataset_of(g))]
            want_total = h.loc[(h.setting == label) & (h.group == fleet.group_ids[g])].cost_J.sum() - oc * fleet.runtime_ratio[a : a + n].sum()
            if result.result.error[result.unit(si, g)] != ERR_NONE:
                assert np.isnan(regret[si, g])
                continue
            assert regret[si, g] == pytest.approx(want_total, rel=1e-9, abs=1e-6 * oc)
            for k in range(n):
                c = per_sub.get((label, fleet.group_ids[g], k), 0.0)
                assert sub_regret[si, a + k] == pytest.approx(c - oc * fleet.runtime_ratio[a + k], rel=1e-9, abs=1e-6 * oc)
    summary = __import__("banditfleet.replay.report", fromlist=["summarize"]).summarize(result)
    total = summary.loc[summary.dataset == "TOTAL"].set_index("setting")
    compared = ~np.isnan(regret).any(axis=0)  # the summary compares every setting on the same groups
    for si, label in enumerate(labels):
        assert total.loc[label, "regret_J"] == pytest.approx(regret[si, compared].sum(), rel=1e-9)
        assert total.loc[label, "policy"] == settings_[si].policy


@pytest.mark.parametrize("policy", ["default", "oracle"])
def test_fixed_policies_equal_zeus_simulator_with_fixed_optimizers(policy):
    """default: the default batch size at its highest power limit; oracle: the oracle's cell;
    both without early stopping and starting from that batch size. zeus's Simulator driving
    fixed optimizers (with beta inf, and the fixed batch size as the job's default) agrees."""
    need_traces()
    fleet = _fleet("p100", 10, 6)
    s = Setting(0.5, 2.0, policy=policy)
    result = replay_fleet(fleet, [s])
    assert result.errors().empty
    trace = fleet.workloads.traces[0]
    for g in range(len(fleet)):
        job = fleet.workloads.jobs[fleet.group_wl[g]]
        if policy == "default":
            df = trace.df.loc[(trace.df.dataset == job.dataset) & (trace.df.batch_size == job.default_bs) & (trace.df.target_metric == job.target_metric)]
            bs, pl = job.default_bs, int(df.power_limit.max())
        else:
            bs, pl = naive_oracle(trace.train, trace.power, job, 0.5)[:2]
        rjob = dataclasses.replace(ref_job(job), default_bs=bs)
        seed = group_seed(fleet.group_ids[g])
        kind, ref = _ref_group(fleet, g, FixedBatchSize(bs), FixedPowerLimit(pl), seed, Setting(0.5, math.inf), job=rjob)
        assert kind == "ok", ref
        assert_same_history(ref, result.history(0, g), f"{policy} group {g}")
        assert {(e.bs, e.pl) for e in ref} == {(bs, pl)}


def test_settings_validate_policies():
    with pytest.raises(ConfigurationError, match="policy"):
        Setting(policy="greedy")
    with pytest.raises(ConfigurationError, match="reward_precision"):
        Setting(policy="gts-known")
    with pytest.raises(ConfigurationError, match="reward_precision"):
        Setting(policy="gts", reward_precision=1.0)
    labels = [s.label for s in sweep([0.5], [2.0], policies=["pruning-gts", "gts-known", "oracle"], reward_precision=0.5)]
    assert labels == ["eta=0.5,beta=2,seed=0", "policy=gts-known,precision=0.5,eta=0.5,beta=2,seed=0", "policy=oracle,eta=0.5,beta=2,seed=0"]


def test_cli_policy_sweep(tmp_path, capsys):
    from banditfleet.cli import main

    out = tmp_path / "out"
    assert main(["replay", "--synthetic-groups", "60", "--no-progress", "--policy", "grid-search", "oracle", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # one comparison table, a row per configuration, with the regret against the oracle
    rows = [line.split()[0] for line in text.splitlines() if line.startswith("policy=")]
    assert rows == ["policy=grid-search,eta=0.5,beta=2", "policy=oracle,eta=0.5,beta=2"]
    assert "regret %" in text and "% of the oracle's cost" in text
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.policy) == {"grid-search", "oracle"}
    assert {"oracle_cost_J", "regret_J", "regret_pct"} <= set(summary.columns)
    assert main(["replay", "--synthetic-groups", "5", "--no-progress", "--policy", "gts-known"]) == 2
    assert "reward_precision" in capsys.readouterr().err
    assert main(["replay", "--synthetic-groups", "5", "--no-progress", "--reward-precision", "1"]) == 2
    assert "--reward-precision" in capsys.readouterr().err


# ------------------------------------------------------------- drop-in Simulator
@pytest.mark.parametrize("which", ["pruning", "gts"])
def test_simulator_takes_zeus_optimizers(which):
    """banditfleet.Simulator with zeus's own optimizer objects == zeus's Simulator with them."""
    from zeus._legacy.policy.optimizer import GTSBatchSizeOptimizer as RefGTS
    from zeus._legacy.policy.optimizer import JITPowerLimitOptimizer as RefPLO
    from zeus._legacy.policy.optimizer import PruningGTSBatchSizeOptimizer as RefPruning
    from zeus._legacy.simulate import Simulator as RefSim

    from banditfleet import Simulator

    need_traces()

    def make():
        if which == "pruning":
            return RefPruning(seed=9, concurrency=True, verbose=False), RefPLO(verbose=False)
        return RefGTS(learn_reward_precision=True, seed=9, verbose=False), RefPLO(verbose=False)

    trace = Trace(train_df(), power_df("v100"), "v100")
    job = ref_job(jobs_for(trace, ["librispeech"])["librispeech"])
    ref = RefSim(train_df(), power_df("v100"), *make(), seed=9, verbose=False)
    bso, plo = make()
    ours = Simulator(train_df(), power_df("v100"), bso, plo, seed=9, verbose=False)
    assert_same_history(ref.simulate_one_job(job, 20, 2.0, 0.5), ours.simulate_one_job(job, 20, 2.0, 0.5), which)
    group = random_groups(np.random.default_rng(2), 25, 4000.0, 3000.0, dataset="librispeech")
    try:
        want = ("ok", ref.simulate_one_alibaba_group(job, group, 2.0, 0.5))
    except AssertionError:
        want = ("AssertionError", None)
    try:
        got = ("ok", ours.simulate_one_alibaba_group(job, group, 2.0, 0.5))
    except ReplayError as exc:  # where the reference asserts (docs/replay.md, errors)
        assert "never profiled" in str(exc)
        got = ("AssertionError", None)
    assert want[0] == got[0]
    if want[0] == "ok":
        assert_same_history(want[1], got[1], which)
    # the optimizers given are left untouched, as the reference leaves its own
    assert not bso.__dict__.get("mabs") and not getattr(bso, "exp_manager", {})
    with pytest.raises(TypeError, match="reference's interface"):
        Simulator(train_df(), power_df("v100"), object(), RefPLO(verbose=False))

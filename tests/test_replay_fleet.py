"""Fleet replays: equal to per-group replays and to the Zeus artifacts' run_alibaba.py; the
built-in fleet, its export, input validation, the kernels' float and sampling claims, the CLI."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet.errors import TraceError
from banditfleet.replay.fleet import Fleet, Setting, group_seed, replay_fleet, sweep
from banditfleet.replay.synthetic import export_trace, generate_groups, synthetic_fleet
from banditfleet.replay.traces import Trace, build_workloads, jobs_for, read_groups, read_jobs
from replay_support import adler, assert_same_history, need_traces, power_df, ref_job, ref_sim, train_df


# ------------------------------------------------------------------ kernels
def test_dataframe_sample_is_one_bounded_draw():
    """pandas' df.sample(n=1, random_state=Generator) == one numpy bounded draw in [0, n-1]."""
    from banditfleet.kernels.distributions import bounded_uint64
    from banditfleet.kernels.streams import allocate_streams, seed_streams

    for n in (1, 2, 3, 5, 10, 17, 100, 1000, 2**20 + 3):
        df = pd.DataFrame({"x": np.arange(n)})
        for seed in (0, 1, 123456, 2**40 + 7):
            rng = np.random.default_rng(seed)
            streams = allocate_streams(1)
            seed_streams(streams, np.zeros(1, np.int64), np.array([seed], np.uint64))
            for _ in range(5):
                expected = int(df.sample(n=1, random_state=rng).x.item())
                assert int(bounded_uint64(streams, 0, np.uint64(n - 1))) == expected
            # the streams stay in step: the next draw agrees too
            assert int(bounded_uint64(streams, 0, np.uint64(2**33))) == int(rng.integers(0, 2**33 + 1))


@settings(max_examples=200)
@given(
    st.floats(min_value=0.0, max_value=1e18, allow_nan=False),
    st.floats(min_value=1e-6, max_value=1e12, allow_nan=False),
)
def test_py_floordiv_is_pythons(a, b):
    from banditfleet.kernels.replay import py_floordiv

    assert py_floordiv(a, b) == a // b


def test_py_floordiv_edges():
    from banditfleet.kernels.replay import py_floordiv

    for a, b in [(0.3, 0.1), (1.0, 0.1), (7.0, 3.5), (1e300, 1e-10), (5.0, 7.0), (-5.0, 3.0), (5.0, -3.0), (0.0, 3.0), (math.inf, 2.0)]:
        r = py_floordiv(a, b)
        assert (math.isnan(r) and math.isnan(a // b)) or r == a // b


# --------------------------------------------------------- fleets and traces
def _fleet(gpu: str, groups: int, seed: int) -> Fleet:
    trace = Trace(train_df(), power_df(gpu), gpu)
    datasets = trace.datasets()
    workloads = build_workloads([(trace, j) for j in jobs_for(trace, datasets).values()])
    return generate_groups(workloads, groups, seed, mean_recurrence=[4.0] * len(datasets))


def test_fleet_equals_per_group_replays():
    """Many groups x settings in one replay == each (setting, group) replayed alone."""
    need_traces()
    fleet = _fleet("rtx6000", 60, 3)
    settings_ = [Setting(0.5, 2.0), Setting(1.0, math.inf), Setting(0.3, 1.5, seed=2), Setting(0.5, 2.0, window_size=4)]
    result = replay_fleet(fleet, settings_)
    assert result.errors().empty
    assert result.n_runs > fleet.n_submissions
    from banditfleet import JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer, Simulator

    trace = fleet.workloads.traces[0]
    for si, s in enumerate(settings_):
        for g in range(0, len(fleet), 5):
            seed = group_seed(fleet.group_ids[g], s.seed)
            bso = PruningGTSBatchSizeOptimizer(window_size=s.window_size, concurrency=True, seed=seed, verbose=False)
            sim = Simulator(trace.train, trace.power, bso, JITPowerLimitOptimizer(verbose=False), seed=seed, verbose=False)
            job = fleet.workloads.jobs[fleet.group_wl[g]]
            solo = sim.simulate_one_alibaba_group(job, fleet.group_frame(g), s.beta_knob, s.eta_knob)
            assert solo == result.history(si, g), (s, g)


@pytest.mark.reference
@pytest.mark.parametrize("gpu", ["v100", "a40"])
def test_fleet_equals_run_alibaba(gpu):
    """A groups table replays as the Zeus artifacts' run_alibaba.py: Adler-32 seeds, PruningGTS
    with concurrency, JIT power limits, the artifacts' job specs."""
    need_traces()
    fleet = _fleet(gpu, 12, 11)
    groups_csv = fleet.groups_frame()
    trace = Trace(train_df(), power_df(gpu), gpu)
    loaded = Fleet.from_frames(trace, groups_csv)
    result = replay_fleet(loaded, [Setting(0.5, 2.0)])
    for g, (gid, group) in enumerate(groups_csv.groupby("group", sort=False)):
        assert loaded.group_ids[g] == gid
        seed = adler(gid)
        job = jobs_for(trace, [group.dataset.iloc[0]])[group.dataset.iloc[0]]
        ref = ref_sim(train_df(), power_df(gpu), seed, concurrency=True).simulate_one_alibaba_group(ref_job(job), group, 2.0, 0.5)
        assert_same_history(ref, result.history(0, g), f"{gpu} group {gid}")


def test_builtin_fleet_is_deterministic_and_concurrent():
    a = synthetic_fleet(300, seed=5)
    b = synthetic_fleet(300, seed=5)
    assert a.group_ids == b.group_ids and np.array_equal(a.start_time, b.start_time)
    assert not np.array_equal(synthetic_fleet(300, seed=6).start_time, a.start_time)
    overlaps = 0
    for g in range(len(a)):
        s, n = a.sub_start[g], a.sub_count[g]
        ends = np.maximum.accumulate(a.end_time[s : s + n])
        overlaps += int((a.start_time[s + 1 : s + n] < ends[:-1]).sum())
    assert overlaps > 0.1 * a.n_submissions
    assert a.sub_count.max() > 10 * np.median(a.sub_count)  # heavy tail
    result = replay_fleet(a, sweep([0.5], [2.0, math.inf]))
    t = a.workloads.tables
    assert np.isnan(t.path_target_epoch).any()  # batch sizes that fail to converge
    assert result.n_runs > a.n_submissions


def test_export_trace_round_trips_and_the_reference_replays_it(tmp_path):
    fleet = synthetic_fleet(40, seed=2)
    files = export_trace(fleet, tmp_path)
    assert sorted(f.name for f in files) == ["groups.csv", "jobs.csv", "summary_power_synthetic.csv", "summary_train.csv"]
    trace = Trace.from_dir(tmp_path, "synthetic")
    loaded = Fleet.from_frames(trace, tmp_path / "groups.csv", read_jobs(tmp_path / "jobs.csv"))
    original = fleet.workloads.traces[0]
    pd.testing.assert_frame_equal(original.train, trace.train, check_exact=True)
    pd.testing.assert_frame_equal(original.power, trace.power, check_exact=True)
    assert loaded.group_ids == fleet.group_ids
    assert np.array_equal(loaded.runtime_ratio, fleet.runtime_ratio)
    mine = replay_fleet(fleet, [Setting()])
    theirs = replay_fleet(loaded, [Setting()])
    assert np.array_equal(mine.result.energy, theirs.result.energy)
    assert np.array_equal(mine.result.bs, theirs.result.bs)
    train = pd.read_csv(tmp_path / "summary_train.csv")
    power = pd.read_csv(tmp_path / "summary_power_synthetic.csv")
    for g in range(0, len(fleet), 8):
        job = fleet.workloads.jobs[fleet.group_wl[g]]
        seed = adler(fleet.group_ids[g])
        ref = ref_sim(train, power, seed, concurrency=True).simulate_one_alibaba_group(ref_job(job), fleet.group_frame(g), 2.0, 0.5)
        assert_same_history(ref, mine.history(0, g), f"exported group {g}")


def test_group_validation(tmp_path, caplog):
    good = pd.DataFrame(
        {"group": ["a", "a", "b"], "start_time": [10.0, 5.0, 1.0], "end_time": [20.0, 9.0, 2.0], "dataset": ["x", "x", "y"], "runtime_ratio": [1.0, 1.0, 2.0]}
    )
    with caplog.at_level("WARNING", logger="banditfleet"):
        df = read_groups(good)
    assert "1 group(s) were not sorted" in caplog.text
    assert df.start_time.tolist() == [5.0, 10.0, 1.0]
    with pytest.raises(TraceError, match="missing column"):
        read_groups(good.drop(columns=["runtime_ratio"]))
    with pytest.raises(TraceError, match="unknown dataset"):
        read_groups(good, datasets=["x"])
    bad = good.copy()
    bad.loc[1, "start_time"] = -1.0
    with pytest.raises(TraceError, match="start_time"):
        read_groups(bad)
    bad = good.copy()
    bad.loc[0, "end_time"] = 1.0
    with pytest.raises(TraceError, match="before"):
        read_groups(bad)
    bad = good.copy()
    bad.loc[2, "runtime_ratio"] = 0.0
    with pytest.raises(TraceError, match="runtime_ratio"):
        read_groups(bad)
    bad = good.copy()
    bad.loc[1, "dataset"] = "y"
    with pytest.raises(TraceError, match="several datasets"):
        read_groups(bad)
    with pytest.raises(TraceError, match="no such file"):
        read_groups(tmp_path / "missing.csv")


def test_trace_and_job_validation():
    fleet = synthetic_fleet(5, seed=0)
    trace = fleet.workloads.traces[0]
    job = fleet.workloads.jobs[0]
    from banditfleet import Job

    with pytest.raises(TraceError, match="default batch size 3"):
        build_workloads([(trace, Job(job.dataset, job.network, job.optimizer, job.target_metric, 10, 3))])
    with pytest.raises(TraceError, match="no batch size"):
        build_workloads([(trace, Job("nope", job.network, job.optimizer, job.target_metric, 10, 3))])
    with pytest.raises(TraceError, match="target metric"):
        build_workloads([(trace, Job(job.dataset, job.network, job.optimizer, 0.123, 10, job.default_bs))])
    with pytest.raises(TraceError, match="max_epochs"):
        build_workloads([(trace, Job(job.dataset, job.network, job.optimizer, job.target_metric, 0, job.default_bs))])
    with pytest.raises(TraceError, match="unknown dataset"):
        jobs_for(trace, ["mystery"])
    with pytest.raises(TraceError, match="missing column"):
        Trace(trace.train.drop(columns=["target_epoch"]), trace.power)
    bad = trace.power.copy()
    bad.loc[0, "time_per_epoch"] = -1.0
    with pytest.raises(TraceError, match="time_per_epoch"):
        Trace(trace.train, bad)
    with pytest.raises(TraceError, match="beta_knob"):
        Setting(0.5, -1.0)


# ---------------------------------------------------------------------- CLI
def test_cli_replay_builtin(tmp_path, capsys):
    from banditfleet.cli import main

    out = tmp_path / "out"
    assert main(["replay", "--synthetic-groups", "150", "--no-progress", "--beta-knob", "2", "inf", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # a sweep prints one comparison table (a row per configuration: the label without the seed)
    assert "setting eta=0.5" not in text and text.count("TOTAL") == 1
    rows = [line.split()[0] for line in text.splitlines() if line.startswith("eta=")]
    assert rows == ["eta=0.5,beta=2", "eta=0.5,beta=inf"]
    history = pd.read_parquet(out / "history.parquet")
    assert list(history.columns) == ["setting", "policy", "group", "dataset", "submission", "batch_size", "power_limit_W", "energy_J", "time_s", "reached", "cost_J"]
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.setting) == {"eta=0.5,beta=2,seed=0", "eta=0.5,beta=inf,seed=0"}
    assert (out / "summary.json").is_file()
    pytest.importorskip("matplotlib")
    for name in ("cost_per_recurrence.png", "batch_size_over_runs.png", "savings_per_workload.png"):
        assert (out / name).stat().st_size > 1000


def test_cli_replay_without_matplotlib(tmp_path, capsys, monkeypatch):
    from banditfleet.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["replay", "--synthetic-groups", "20", "--no-progress", "--out", str(tmp_path)]) == 0
    assert "plots skipped: matplotlib is not installed" in capsys.readouterr().out
    assert (tmp_path / "history.parquet").is_file() and not (tmp_path / "cost_per_recurrence.png").exists()


def test_cli_export_then_replay_the_export(tmp_path, capsys):
    from banditfleet.cli import main

    assert main(["replay", "--synthetic-groups", "30", "--export-trace", str(tmp_path)]) == 0
    assert "summary_power_synthetic.csv" in capsys.readouterr().out
    assert main(["replay", "--trace-dir", str(tmp_path), "--no-progress", "--eta-knob", "0.5", "1"]) == 0
    text = capsys.readouterr().out
    assert "30 groups" in text and "\neta=1,beta=2 " in text


def test_cli_replay_zeus_traces_with_generated_groups(capsys):
    from banditfleet.cli import main

    d = need_traces()
    assert main(["replay", "--trace-dir", str(d), "--gpu", "a40", "--synthetic-groups", "40", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "cifar100" in text and "TOTAL" in text


def test_cli_replay_errors(tmp_path, capsys):
    from banditfleet.cli import main

    assert main(["replay", "--gpu", "v100"]) == 2
    assert "--gpu needs --trace-dir" in capsys.readouterr().err
    assert main(["replay", "--trace-dir", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["replay", "--eta-knob", "2"])
    with pytest.raises(SystemExit):
        main(["replay", "--beta-knob", "0"])

"""Plots of fleet replays (banditfleet.replay.plots): the series handed to matplotlib, not pixels.

Each ``*_data`` function is checked against a naive computation from
``history_frame()``, ``errors()`` and the trace tables; each ``plot_*``
function is checked to draw exactly those series (line data, bar heights,
error bars).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from banditfleet.replay.fleet import replay_fleet, sweep  # noqa: E402
from banditfleet.replay.plots import (  # noqa: E402
    batch_size_data,
    comparison_data,
    cost_per_recurrence_data,
    plot_batch_size,
    plot_comparison,
    plot_cost_per_recurrence,
    plot_regret_per_recurrence,
    regret_per_recurrence_data,
    write_plots,
)
from banditfleet.replay.stats import compare, config_label  # noqa: E402
from banditfleet.replay.synthetic import synthetic_fleet  # noqa: E402
from test_replay_stats import naive_baseline  # noqa: E402


@pytest.fixture(scope="module")
def result():
    # beta=1 fails some groups; seeds 0 and 1 are replicates of each configuration
    return replay_fleet(synthetic_fleet(80, 2), sweep(beta_knobs=[1.0, 2.0], seeds=[0, 1], policies=["pruning-gts", "oracle"]))


def naive_per_submission(result):
    """{(config, dataset, k): [cost / baseline cost per (group, seed) pair]} and the same over the oracle's cost."""
    fleet = result.fleet
    t = fleet.workloads.tables
    base = naive_baseline(fleet)
    hist = result.history_frame()
    errors = result.errors()
    bad = set(errors.group)
    cost = defaultdict(float)
    for s, g, k, c in zip(hist.setting, hist.group, hist.submission, hist.cost_J):
        cost[(s, g, k)] += c
    oracle = result.oracle_tables()
    rel = defaultdict(list)
    regret = defaultdict(list)
    for si, s in enumerate(result.settings):
        for gi, gid in enumerate(fleet.group_ids):
            if gid in bad:
                continue
            w = int(fleet.group_wl[gi])
            dataset = fleet.workloads.jobs[w].dataset
            be, bt = base[w]
            running = 0.0
            for k in range(int(fleet.sub_count[gi])):
                ratio = float(fleet.runtime_ratio[fleet.sub_start[gi] + k])
                b = (s.eta_knob * be + (1 - s.eta_knob) * float(t.wl_max_power[w]) * bt) * ratio
                c = cost[(s.label, gid, k)]
                rel[(config_label(s), dataset, k + 1)].append(c / b)
                running += c / (float(oracle[si].cost[w]) * ratio) - 1
                regret[(config_label(s), dataset, k + 1)].append(running)
    return rel, regret


def test_cost_and_regret_per_recurrence_equal_naive_over_the_whole_horizon(result):
    rel, regret = naive_per_submission(result)
    for data, naive, column in (
        (cost_per_recurrence_data(result, bins=None), rel, "relative_cost"),
        (regret_per_recurrence_data(result, bins=None), regret, "cumulative_regret"),
    ):
        assert len(data) == len(naive)
        for rec in data.itertuples(index=False):
            assert rec.first == rec.last == rec.recurrence
            values = naive[(rec.config, rec.dataset, rec.last)]
            assert rec.groups == len(values)
            assert getattr(rec, column) == pytest.approx(sum(values) / len(values), rel=1e-9, abs=1e-12)
    # the whole horizon: up to the longest compared group, past the old cut at 60
    longest = max(k for (_c, _d, k) in rel)
    assert longest > 60 and cost_per_recurrence_data(result, bins=None).last.max() == longest


def test_binned_recurrences_cover_the_horizon(result):
    rel, _ = naive_per_submission(result)
    data = cost_per_recurrence_data(result, bins=20)
    for (config, dataset), d in data.groupby(["config", "dataset"]):
        ks = sorted(k for (c, ds, k) in rel if c == config and ds == dataset)
        # bins are contiguous, start at 1 and the last one holds the longest group's last recurrence
        assert d["first"].iloc[0] == 1 and d["first"].iloc[-1] <= ks[-1] <= d["last"].iloc[-1]
        assert (d["first"].to_numpy()[1:] == d["last"].to_numpy()[:-1] + 1).all()
        values = [v for k in ks for v in rel[(config, dataset, k)]]
        assert d.groups.sum() == len(values)
        assert (d.relative_cost * d.groups).sum() == pytest.approx(sum(values), rel=1e-9)
    assert len(data.loc[(data.config == data.config.iloc[0]) & (data.dataset == data.dataset.iloc[0])]) <= 20


def _lines_by_panel(fig):
    return {ax.get_title(): {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in ax.get_lines() if not line.get_label().startswith("_")} for ax in fig.axes if ax.get_visible()}


@pytest.mark.parametrize("kind", ["cost", "regret"])
def test_per_recurrence_plots_draw_every_configuration(result, kind):
    import matplotlib.pyplot as plt

    data = cost_per_recurrence_data(result) if kind == "cost" else regret_per_recurrence_data(result)
    column = "relative_cost" if kind == "cost" else "cumulative_regret"
    fig = plot_cost_per_recurrence(data) if kind == "cost" else plot_regret_per_recurrence(data)
    panels = _lines_by_panel(fig)
    assert set(panels) == set(data.dataset)
    configs = {config_label(s) for s in result.settings}
    assert len(configs) == 4
    for dataset, lines in panels.items():
        assert set(lines) == configs
        for config, (x, y) in lines.items():
            d = data.loc[(data.dataset == dataset) & (data.config == config)]
            np.testing.assert_array_equal(x, d.recurrence.to_numpy())
            np.testing.assert_array_equal(y, d[column].to_numpy())
    plt.close(fig)


def test_batch_size_plot_shows_every_setting(result):
    import matplotlib.pyplot as plt

    data = batch_size_data(result)
    assert set(data.setting) == {s.label for s in result.settings}
    for (setting, group), d in data.groupby(["setting", "group"]):
        si = [s.label for s in result.settings].index(setting)
        gi = result.fleet.group_ids.index(group)
        assert d.batch_size.tolist() == [e.bs for e in result.history(si, gi)]
    fig = plot_batch_size(data)
    for title, lines in _lines_by_panel(fig).items():
        dataset = title.split(" ")[0]
        assert set(lines) == set(data.loc[data.dataset == dataset, "setting"])
        for setting, (_x, y) in lines.items():
            np.testing.assert_array_equal(y, data.loc[(data.dataset == dataset) & (data.setting == setting)].batch_size)
    plt.close(fig)


@pytest.mark.parametrize("replicates", [True, False])
def test_comparison_plot_bars_and_error_bars(result, replicates):
    import matplotlib.pyplot as plt

    comparison = compare(result if replicates else _one_seed(result), n_resamples=200)
    data = comparison_data(comparison)
    t = comparison.table
    if replicates:
        np.testing.assert_allclose(data.change_pct, t.cost_change_pct)
        np.testing.assert_allclose(data.low, t.cost_change_pct_ci_low)
        assert (data.interval == "t").all()
    else:
        np.testing.assert_allclose(data.change_pct, t.cost_change_pct_pooled)
        np.testing.assert_allclose(data.high, t.cost_change_pct_boot_high)
        assert (data.interval == "bootstrap").all()
    fig = plot_comparison(comparison)
    ax = fig.axes[0]
    configs = list(dict.fromkeys(data.config))
    datasets = list(dict.fromkeys(data.dataset))
    assert [tick.get_text() for tick in ax.get_xticklabels()] == datasets
    containers = ax.containers
    bars = [c for c in containers if c.__class__.__name__ == "BarContainer"]
    errs = [c for c in containers if c.__class__.__name__ == "ErrorbarContainer"]
    # two policies: the default one is spelled out in the legend too
    assert [b.get_label() for b in bars] == [c if c.startswith("policy=") else f"policy=pruning-gts,{c}" for c in configs]
    assert len(errs) == len(configs)
    for config, b, e in zip(configs, bars, errs):
        d = data.loc[data.config == config].set_index("dataset").loc[datasets]
        np.testing.assert_allclose([p.get_height() for p in b.patches], d.change_pct)
        segments = e.lines[2][0].get_segments()
        for (seg, low, high) in zip(segments, d.low, d.high):
            if not (math.isnan(low) or math.isnan(high)):
                assert sorted([seg[0][1], seg[1][1]]) == pytest.approx([low, high])
    plt.close(fig)


def _one_seed(result):
    from banditfleet.replay.fleet import FleetResult

    keep = [i for i, s in enumerate(result.settings) if s.seed == 0]
    again = replay_fleet(result.fleet, [result.settings[i] for i in keep])
    assert isinstance(again, FleetResult)
    return again


def test_write_plots_writes_every_file(result, tmp_path):
    files = write_plots(result, tmp_path)
    assert [f.name for f in files] == [
        "cost_per_recurrence.png", "regret_per_recurrence.png", "batch_size_over_runs.png", "savings_per_workload.png"
    ]
    for f in files:
        assert f.stat().st_size > 1000


def test_cli_sweep_with_fleet_replicates(tmp_path, capsys, monkeypatch):
    import sys

    from banditfleet.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the plots are tested above; this is about the tables

    out = tmp_path / "out"
    argv = ["replay", "--synthetic-groups", "40", "--fleet-seed", "0", "1", "--seed", "0", "1", "--beta-knob", "2", "inf",
            "--bootstrap", "100", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "t-interval over 4 replicates" in text
    assert [line.split()[0] for line in text.splitlines() if line.startswith("eta=")] == ["eta=0.5,beta=2", "eta=0.5,beta=inf"]
    table = pd.read_csv(out / "comparison.csv")
    assert set(table.config) == {"eta=0.5,beta=2", "eta=0.5,beta=inf"} and (table.replicates == 4).all()
    reps = pd.read_csv(out / "replicates.csv")
    assert set(zip(reps.fleet, reps.seed)) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for sub in ("fleet-seed-0", "fleet-seed-1"):
        assert (out / sub / "summary.csv").is_file() and (out / sub / "history.parquet").is_file()
    assert "plots skipped: matplotlib is not installed" in text


def test_cli_refuses_fleet_replicates_of_a_groups_file(tmp_path, capsys):
    from banditfleet.cli import main

    assert main(["replay", "--synthetic-groups", "10", "--export-trace", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["replay", "--trace-dir", str(tmp_path), "--fleet-seed", "0", "1", "--no-progress"]) == 2
    assert "several --fleet-seed values need generated groups" in capsys.readouterr().err

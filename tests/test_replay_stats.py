"""Statistics of fleet replays (banditfleet.replay.stats) against scipy, numpy and a naive model.

The naive model works from what a user sees of a replay: ``history_frame()``
(every run), ``errors()`` (every failed (setting, group)) and the trace's
tables, with plain Python loops and sets; the intervals are recomputed with
scipy/numpy directly.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from banditfleet.replay.fleet import replay_fleet, sweep
from banditfleet.replay.stats import (
    auto_resamples,
    bootstrap_change,
    common_groups,
    compare,
    config_label,
    format_comparison,
    group_table,
    t_interval,
    write_statistics,
)
from banditfleet.replay.synthetic import synthetic_fleet

SETTINGS = dict(beta_knobs=[1.0, 2.0], seeds=[0, 1])  # beta=1 makes groups fail (pruning exhausted)


@pytest.fixture(scope="module")
def results():
    return [replay_fleet(synthetic_fleet(90, fs), sweep(**SETTINGS)) for fs in (0, 3)]


# ------------------------------------------------------------------ naive model
def naive_baseline(fleet) -> dict[int, tuple[float, float]]:
    """Per workload: mean energy and time of one run of the default batch size at its highest power limit."""
    t = fleet.workloads.tables
    out = {}
    for w in range(len(fleet.workloads.jobs)):
        arm = int(t.wl_default_arm[w])
        cell = int(t.arm_cell_start[arm])
        first, n = int(t.cell_path_start[cell]), int(t.cell_path_count[cell])
        max_epochs = float(t.wl_max_epochs[w])
        es, ts = [], []
        for p in range(first, first + n):
            te = float(t.path_target_epoch[p])
            epochs = max_epochs if math.isnan(te) or te > max_epochs else te
            es.append(epochs * float(t.path_epe[p]))
            ts.append(epochs * float(t.path_tpe[p]))
        out[w] = (sum(es) / n, sum(ts) / n)
    return out


def naive_group_totals(result):
    """{(setting label, group id): (dataset, cost, baseline cost, eta)} and the failed (setting, group) pairs."""
    fleet = result.fleet
    t = fleet.workloads.tables
    base = naive_baseline(fleet)
    hist = result.history_frame()
    cost = defaultdict(float)
    for s, g, c in zip(hist.setting, hist.group, hist.cost_J):
        cost[(s, g)] += c
    out = {}
    for s in result.settings:
        for gi, gid in enumerate(fleet.group_ids):
            w = int(fleet.group_wl[gi])
            a, n = int(fleet.sub_start[gi]), int(fleet.sub_count[gi])
            ratio = float(sum(fleet.runtime_ratio[a : a + n]))
            be, bt = base[w]
            b = s.eta_knob * be * ratio + (1 - s.eta_knob) * float(t.wl_max_power[w]) * bt * ratio
            out[(s.label, gid)] = (fleet.workloads.jobs[w].dataset, cost[(s.label, gid)], b)
    errors = result.errors()
    failed = set(zip(errors.setting, errors.group))
    return out, failed


def naive_replicate_changes(results, fleets):
    """{(config, fleet, seed, dataset or TOTAL): cost change in %} over the groups that never failed in their fleet."""
    savings = {}
    left_out = set()
    for res, f in zip(results, fleets):
        totals, failed = naive_group_totals(res)
        bad_groups = {g for _s, g in failed}
        left_out |= {(f, g) for g in bad_groups}
        for s in res.settings:
            sums = defaultdict(lambda: [0.0, 0.0])
            for gid in res.fleet.group_ids:
                if gid in bad_groups:
                    continue
                dataset, c, b = totals[(s.label, gid)]
                for key in (dataset, "TOTAL"):
                    sums[key][0] += c
                    sums[key][1] += b
            for key, (c, b) in sums.items():
                savings[(config_label(s), f, s.seed, key)] = 100 * (c / b - 1)
    return savings, left_out


# ----------------------------------------------------------------- intervals
@pytest.mark.parametrize("values", [[0.1, 0.25, 0.18], [0.3, 0.3001], [-0.2, 0.4, 0.1, 0.05, 0.33, 0.0]])
def test_t_interval_equals_scipy(values):
    x = np.array(values)
    low, high = scipy.stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
    mean, lo, hi = t_interval(x, 0.95)
    assert mean == pytest.approx(x.mean(), rel=1e-12)
    assert lo == pytest.approx(low, rel=1e-12) and hi == pytest.approx(high, rel=1e-12)
    # the textbook formula
    half = scipy.stats.t.ppf(0.975, len(x) - 1) * np.std(x, ddof=1) / math.sqrt(len(x))
    assert hi - lo == pytest.approx(2 * half, rel=1e-12)


def test_t_interval_needs_two_values():
    mean, lo, hi = t_interval([0.3], 0.95)
    assert mean == 0.3 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in t_interval([], 0.95))


def test_bootstrap_equals_scipy_paired_bootstrap():
    rng = np.random.default_rng(5)
    base = rng.uniform(1.0, 3.0, 40)
    cost = base * rng.uniform(0.4, 1.2, 40)

    def change(c, b, axis=-1):
        return 100 * (c.sum(axis=axis) / b.sum(axis=axis) - 1)

    ref = scipy.stats.bootstrap(
        (cost, base), change, paired=True, vectorized=True, n_resamples=999, method="percentile",
        confidence_level=0.9, rng=np.random.default_rng([7, 1]),
    )
    point, low, high = bootstrap_change(cost, base, 0.9, 999, [7, 1])
    assert point == pytest.approx(100 * (cost.sum() / base.sum() - 1), rel=1e-12)
    assert low == pytest.approx(ref.confidence_interval.low, rel=1e-9)
    assert high == pytest.approx(ref.confidence_interval.high, rel=1e-9)
    # reproducible, and the seed matters
    assert bootstrap_change(cost, base, 0.9, 999, [7, 1]) == (point, low, high)
    assert bootstrap_change(cost, base, 0.9, 999, [8, 1])[1] != low


def test_bootstrap_degenerate_inputs():
    assert all(math.isnan(v) for v in bootstrap_change([], [], 0.95, 100, 0))
    point, low, high = bootstrap_change([1.0], [2.0], 0.95, 100, 0)
    assert point == -50.0 and math.isnan(low) and math.isnan(high)
    point, low, high = bootstrap_change([1.0, 2.0], [2.0, 2.0], 0.95, 0, 0)
    assert point == -25.0 and math.isnan(low)


def test_auto_resamples():
    assert auto_resamples(100) == 2000 and auto_resamples(10_000) == 2000
    assert auto_resamples(50_000) == 400 and auto_resamples(1_000_000) == 200


# ------------------------------------------------------------ common groups
def test_common_groups_equal_naive(results):
    res = results[0]
    groups = group_table(res)
    compared = common_groups(groups)
    _totals, failed = naive_group_totals(res)
    assert failed, "the fixture must have failures (beta=1 exhausts pruning)"
    bad = {g for _s, g in failed}
    assert set(groups.loc[~compared, "group"]) == bad
    assert set(groups.loc[compared, "group"]) == set(res.fleet.group_ids) - bad
    # every setting keeps exactly the same groups
    kept = [set(groups.loc[compared & (groups.setting == s.label), "group"]) for s in res.settings]
    assert all(k == kept[0] for k in kept)


def test_summary_compares_settings_on_the_same_groups(results):
    from banditfleet.replay.report import summarize

    res = results[0]
    summary = summarize(res)
    totals, failed = naive_group_totals(res)
    bad = {g for _s, g in failed}
    for s in res.settings:
        for dataset in [j.dataset for j in res.fleet.workloads.jobs]:
            row = summary.loc[(summary.setting == s.label) & (summary.dataset == dataset)].iloc[0]
            mine = [g for g in res.fleet.group_ids if totals[(s.label, g)][0] == dataset]
            kept = [g for g in mine if g not in bad]
            assert row.groups == len(kept)
            assert row.failed == len(mine) - len(kept)
            if kept:
                c = sum(totals[(s.label, g)][1] for g in kept)
                b = sum(totals[(s.label, g)][2] for g in kept)
                assert row.cost_J == pytest.approx(c, rel=1e-9)
                assert row.cost_change_pct == pytest.approx(100 * (c / b - 1), rel=1e-9)
            if row.failed:
                assert "no batch size survived pruning" in row.failed_reasons or "retry limit" in row.failed_reasons
    total = summary.loc[summary.dataset == "TOTAL"]
    assert (total.failed == len(bad)).all() and (total.groups == len(res.fleet) - len(bad)).all()


# ---------------------------------------------------------------- compare
def test_compare_equals_naive_model(results):
    comparison = compare(results, [0, 3], confidence=0.95, n_resamples=300, bootstrap_seed=11)
    savings, left_out = naive_replicate_changes(results, [0, 3])
    reps = comparison.replicates
    assert len(reps.dropna(subset=["cost_change_pct"])) == len(savings)
    for rec in reps.itertuples(index=False):
        key = (rec.config, rec.fleet, rec.seed, rec.dataset)
        if key in savings:
            assert rec.cost_change_pct == pytest.approx(savings[key], rel=1e-9, abs=1e-10)
    table = comparison.table
    configs = list(dict.fromkeys(config_label(s) for s in results[0].settings))
    assert list(dict.fromkeys(table.config)) == configs == ["eta=0.5,beta=1", "eta=0.5,beta=2"]
    for rec in table.itertuples(index=False):
        x = np.array([v for (c, _f, _s, d), v in savings.items() if c == rec.config and d == rec.dataset])
        assert rec.replicates == 4
        if len(x) == 4:
            low, high = scipy.stats.t.interval(0.95, 3, loc=x.mean(), scale=scipy.stats.sem(x))
            assert rec.cost_change_pct == pytest.approx(x.mean(), rel=1e-9)
            assert rec.cost_change_pct_ci_low == pytest.approx(low, rel=1e-9)
            assert rec.cost_change_pct_ci_high == pytest.approx(high, rel=1e-9)
    total = table.loc[table.dataset == "TOTAL"]
    assert (total.failed == len(left_out)).all()
    n_groups = sum(len(r.fleet) for r in results)
    assert (total.groups == n_groups - len(left_out)).all()
    # the same groups for every configuration
    assert table.groupby("dataset")["groups"].nunique().max() == 1
    assert set(comparison.failures.error) <= set(range(1, 9)) and len(comparison.failures)


def test_compare_bootstrap_equals_naive_stratified_bootstrap(results):
    """The TOTAL interval: each workload's groups resampled on their own draws, the resamples' sums added."""
    R, seed = 400, 3
    comparison = compare(results, [0, 3], confidence=0.9, n_resamples=R, bootstrap_seed=seed)
    per_fleet = [naive_group_totals(res) for res in results]
    bad = {(f, g) for f, (_t, failed) in zip((0, 3), per_fleet) for _s, g in failed}
    datasets = [j.dataset for j in results[0].fleet.workloads.jobs]
    for config in ("eta=0.5,beta=1", "eta=0.5,beta=2"):
        by_dataset = defaultdict(lambda: ([], []))
        for f, res, (totals, _failed) in zip((0, 3), results, per_fleet):
            for gid in res.fleet.group_ids:
                if (f, gid) in bad:
                    continue
                seeds = [s for s in res.settings if config_label(s) == config]
                costs = [totals[(s.label, gid)][1] for s in seeds]
                dataset, _c, b = totals[(seeds[0].label, gid)]
                by_dataset[dataset][0].append(sum(costs) / len(costs))
                by_dataset[dataset][1].append(b)
        sum_c = np.zeros(R)
        sum_b = np.zeros(R)
        for i, dataset in enumerate(datasets):
            c, b = map(np.array, by_dataset[dataset])
            if len(c) < 2:
                sum_c += c.sum()
                sum_b += b.sum()
                continue
            idx = np.random.default_rng([seed, i]).integers(0, len(c), (R, len(c)))
            sum_c += c[idx].sum(axis=1)
            sum_b += b[idx].sum(axis=1)
            row = comparison.table.loc[(comparison.table.config == config) & (comparison.table.dataset == dataset)].iloc[0]
            dist = 100 * (c[idx].sum(axis=1) / b[idx].sum(axis=1) - 1)
            assert row.cost_change_pct_boot_low == pytest.approx(np.percentile(dist, 5), rel=1e-9)
            assert row.cost_change_pct_boot_high == pytest.approx(np.percentile(dist, 95), rel=1e-9)
        total = comparison.table.loc[(comparison.table.config == config) & (comparison.table.dataset == "TOTAL")].iloc[0]
        dist = 100 * (sum_c / sum_b - 1)
        assert total.cost_change_pct_boot_low == pytest.approx(np.percentile(dist, 5), rel=1e-9)
        assert total.cost_change_pct_boot_high == pytest.approx(np.percentile(dist, 95), rel=1e-9)
        all_c = np.concatenate([by_dataset[d][0] for d in datasets])
        all_b = np.concatenate([by_dataset[d][1] for d in datasets])
        assert total.cost_change_pct_pooled == pytest.approx(100 * (all_c.sum() / all_b.sum() - 1), rel=1e-9)


def test_compare_is_reproducible_and_seeded(results):
    a = compare(results, n_resamples=200, bootstrap_seed=1)
    b = compare(results, n_resamples=200, bootstrap_seed=1)
    c = compare(results, n_resamples=200, bootstrap_seed=2)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert not np.allclose(a.table.cost_change_pct_boot_low, c.table.cost_change_pct_boot_low)
    np.testing.assert_array_equal(a.table.cost_change_pct, c.table.cost_change_pct)  # the t-intervals use no randomness


def test_regret_pct_equals_naive(results):
    res = results[0]
    comparison = compare(res, n_resamples=0)
    totals, failed = naive_group_totals(res)
    bad = {g for _s, g in failed}
    oracle = res.oracle_costs()
    for si, s in enumerate(res.settings):
        c = sum(totals[(s.label, g)][1] for g in res.fleet.group_ids if g not in bad)
        o = sum(float(oracle[si, gi]) for gi, g in enumerate(res.fleet.group_ids) if g not in bad)
        rep = comparison.replicates
        row = rep.loc[(rep.config == config_label(s)) & (rep.seed == s.seed) & (rep.dataset == "TOTAL")].iloc[0]
        assert row.regret_pct == pytest.approx(100 * (c / o - 1), rel=1e-9)


def test_compare_refuses_mismatched_inputs(results):
    other = replay_fleet(synthetic_fleet(10, 1), sweep(beta_knobs=[2.0]))
    with pytest.raises(ValueError, match="other settings"):
        compare([results[0], other])
    with pytest.raises(ValueError, match="fleets must name"):
        compare(results, [1, 1])
    with pytest.raises(ValueError, match="confidence"):
        compare(results, confidence=1.5)


def test_format_and_write(results, tmp_path):
    comparison = compare(results, n_resamples=100)
    text = format_comparison(comparison)
    lines = text.splitlines()
    assert sum(line.startswith("eta=") for line in lines) == 2  # one row per configuration
    assert "t-interval over 4 replicates" in text and "left out of every comparison" in text
    files = write_statistics(comparison, tmp_path)
    assert [f.name for f in files] == ["comparison.csv", "replicates.csv", "failed_groups.csv"]
    back = pd.read_csv(files[0])
    np.testing.assert_allclose(back.cost_change_pct, comparison.table.cost_change_pct)
    assert len(pd.read_csv(files[2])) == len(comparison.failures)


def test_stratum_sums_equal_scipy_bootstrap_distribution_over_batches():
    """The numpy resampling draws what scipy.stats.bootstrap draws, batch by batch."""
    from banditfleet.replay.stats import _batch, stratum_sums

    rng = np.random.default_rng(3)
    n, R = 6000, 1500  # several batches (_batch(1500, 6000) < 1500)
    values = rng.uniform(0.5, 2.0, (n, 2))
    assert _batch(R, n) < R
    ref = scipy.stats.bootstrap(
        (np.arange(n),), lambda i, axis=-1: values[i].sum(axis=-2).T, n_resamples=R, batch=_batch(R, n),
        vectorized=True, method="percentile", rng=np.random.default_rng([4, 2]),
    )
    got = stratum_sums(values, R, [4, 2])
    np.testing.assert_allclose(got, ref.bootstrap_distribution, rtol=1e-12)

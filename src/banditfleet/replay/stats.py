"""Statistics of fleet replays: common groups, replicate t-intervals and a bootstrap over groups.

A study replays one or several fleets (``--fleet-seed`` replicates) under
several settings. A setting's *configuration* is everything but its seed
replicate (knobs, optimizer parameters and, where the result has one, the
policy); the seed replicates and the fleet replicates of a configuration are
its *replicates*.

**Common groups.** Settings are compared on the same groups: within a fleet, a
group that stopped on an error (``FleetResult.errors()``) in *any* setting is
left out of every setting's numbers, and counted, with the reason, in the
``failed`` and ``failed_reasons`` columns. Nothing is dropped silently.

**Changes.** Over a set of groups, the change against the baseline is
``100 x (sum(cost) / sum(baseline cost) - 1)`` percent (likewise for energy
and time): negative means cheaper than the baseline, as everywhere in the
replay's outputs (:mod:`banditfleet.replay.report`). The regret is ``100 x
(sum(cost) / sum(oracle cost) - 1)`` percent of the oracle's cost. A
configuration's change in a workload is the mean of its replicates' changes, with a Student
t-interval across the replicates (``mean +- t(1 - alpha/2, n - 1) x sd /
sqrt(n)``; no interval with one replicate).

**Bootstrap over groups.** The spread that comes from *which* groups the
fleet happens to hold. Each compared group's cost (averaged over the
configuration's seed replicates; the groups of every fleet replicate pooled)
and baseline cost are resampled with replacement, drawn as
:func:`scipy.stats.bootstrap` draws them (:func:`stratum_sums`), within each workload (a stratified bootstrap:
every resample keeps the fleet's workload mix), and the pooled change ``100 x
(sum(cost) / sum(baseline) - 1)`` (and the regret) is recomputed on each resample; the TOTAL of a
resample is the union of its workloads' resamples. The interval is the
percentile interval. Every configuration is evaluated on the same resamples
(they are paired on groups), and the resamples are seeded per workload from
``bootstrap_seed``, so the intervals are reproducible.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditfleet.kernels.replay import ERR_NONE
from banditfleet.replay.fleet import FleetResult, Setting

__all__ = [
    "Comparison",
    "auto_resamples",
    "bootstrap_change",
    "common_groups",
    "compare",
    "config_label",
    "display_labels",
    "format_comparison",
    "group_table",
    "stratum_sums",
    "t_interval",
    "write_statistics",
]

logger = logging.getLogger("banditfleet")

#: Metrics whose changes the statistics report: (name, group-table column, baseline column).
METRICS = (("cost", "cost_J", "baseline_cost_J"), ("energy", "energy_J", "baseline_energy_J"), ("time", "time_s", "baseline_time_s"))


def config_label(setting: Setting) -> str:
    """The setting's label without its seed replicate: what its replicates have in common."""
    return ",".join(p for p in setting.label.split(",") if not p.startswith("seed="))


def _policy(setting: Setting) -> str:
    return str(setting.policy)


def display_labels(configs: Sequence[str], policies: Sequence[str]) -> list[str]:
    """Configuration labels for tables and legends: ``policy=pruning-gts,`` is spelled out
    when several policies are compared (the setting's label leaves the default policy out)."""
    several = len(set(policies)) > 1
    return [f"policy={p},{c}" if several and not c.startswith("policy=") else c for c, p in zip(configs, policies)]


def _error_name(code: int) -> str:
    from banditfleet.replay.report import ERROR_NAMES

    return ERROR_NAMES.get(int(code), f"error {int(code)}")


def group_table(result: FleetResult, fleet: Any = 0) -> pd.DataFrame:
    """One row per (setting, group) of a fleet replay: its totals, its baseline and its error code.

    Columns: ``fleet`` (the ``fleet`` argument: the fleet replicate), ``setting``,
    ``config`` (:func:`config_label`), ``policy``, ``seed``, ``eta_knob``,
    ``beta_knob``, ``dataset``, ``group``, ``error`` (0: none, else a code of
    :data:`banditfleet.replay.report.ERROR_NAMES`), ``ok``, ``submissions``,
    ``runs`` (runs that started), ``failed_runs`` (started runs that missed
    the target), ``energy_J``, ``time_s``, ``cost_J`` (energy-time cost, J),
    ``baseline_energy_J``, ``baseline_time_s``, ``baseline_cost_J``,
    ``oracle_cost_J`` (:meth:`FleetResult.oracle_costs`) and ``regret_J`` (cost
    minus oracle cost). A group that stopped on an error keeps the totals of
    the runs it made.
    """
    from banditfleet.replay.report import baseline_per_submission

    fl = result.fleet
    r = result.result
    G = len(fl)
    S = len(result.settings)
    t = fl.workloads.tables
    base_e, base_t = baseline_per_submission(result)
    if G and fl.n_submissions:
        ratio_sum = np.add.reduceat(fl.runtime_ratio, fl.sub_start) if fl.runtime_ratio.size else np.zeros(G)
        ratio_sum = np.where(fl.sub_count > 0, ratio_sum, 0.0)
    else:
        ratio_sum = np.zeros(G)
    wl = fl.group_wl
    max_power = t.wl_max_power[wl].astype(np.float64)
    n = S * G
    energy = np.bincount(r.unit, weights=r.energy, minlength=n)
    time = np.bincount(r.unit, weights=r.time, minlength=n)
    runs = np.bincount(r.unit, minlength=n)
    failed_runs = np.bincount(r.unit, weights=~r.reached, minlength=n).astype(np.int64)
    eta = np.repeat([s.eta_knob for s in result.settings], G).astype(np.float64)
    mp = np.tile(max_power, S)
    be = np.tile(base_e[wl] * ratio_sum, S)
    bt = np.tile(base_t[wl] * ratio_sum, S)
    names = np.array([j.dataset for j in fl.workloads.jobs], dtype=object)
    error = r.error[:n].astype(np.int64)
    oracle = result.oracle_costs().reshape(n) if S and G else np.zeros(n)
    return pd.DataFrame(
        {
            "fleet": np.full(n, fleet, dtype=object) if not isinstance(fleet, (int, np.integer)) else np.full(n, int(fleet), np.int64),
            "setting": np.repeat(np.array([s.label for s in result.settings], dtype=object), G),
            "config": np.repeat(np.array([config_label(s) for s in result.settings], dtype=object), G),
            "policy": np.repeat(np.array([_policy(s) for s in result.settings], dtype=object), G),
            "seed": np.repeat([int(s.seed) for s in result.settings], G).astype(np.int64),
            "eta_knob": eta,
            "beta_knob": np.repeat([s.beta_knob for s in result.settings], G).astype(np.float64),
            "dataset": np.tile(names[wl] if G else np.zeros(0, object), S),
            "group": np.tile(np.array(fl.group_ids, dtype=object), S),
            "error": error,
            "ok": error == ERR_NONE,
            "submissions": np.tile(fl.sub_count, S).astype(np.int64),
            "runs": runs.astype(np.int64),
            "failed_runs": failed_runs,
            "energy_J": energy,
            "time_s": time,
            "cost_J": eta * energy + (1.0 - eta) * mp * time,
            "baseline_energy_J": be,
            "baseline_time_s": bt,
            "baseline_cost_J": eta * be + (1.0 - eta) * mp * bt,
            "oracle_cost_J": oracle,
            "regret_J": eta * energy + (1.0 - eta) * mp * time - oracle,
        }
    )


def common_groups(groups: pd.DataFrame) -> pd.Series:
    """Per row of a :func:`group_table`: whether its (fleet, group) succeeded in every setting.

    Only these rows enter any comparison.
    """
    return groups.groupby(["fleet", "group"], sort=False).ok.transform("all").astype(bool)


def _failure_table(groups: pd.DataFrame) -> pd.DataFrame:
    """Every (fleet, setting, group) that stopped on an error, with the error's name."""
    bad = groups.loc[~groups.ok, ["fleet", "group", "dataset", "setting", "error"]].copy()
    bad["reason"] = [_error_name(c) for c in bad.error.tolist()]
    return bad.reset_index(drop=True)


def _reasons(failures: pd.DataFrame) -> str:
    """``"<reason> in <setting>: <count>; ..."``, the most frequent first."""
    if not len(failures):
        return ""
    counts = failures.groupby(["reason", "setting"], sort=False).size().sort_values(ascending=False, kind="stable")
    return "; ".join(f"{reason} in {setting}: {int(k)}" for (reason, setting), k in counts.items())


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student t confidence interval of ``values`` (replicates): ``(mean, low, high)``.

    NaN bounds with fewer than two values (NaN values are left out).
    """
    x = np.asarray(values, np.float64)
    x = x[~np.isnan(x)]
    if not x.size:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    import scipy.stats  # imported when used: most of a second, and a single replicate needs none

    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def _batch(n_resamples: int, n: int) -> int:
    """Resamples drawn at once: at most ~4 million indices in memory."""
    return max(1, min(n_resamples, 4_000_000 // max(n, 1)))


def auto_resamples(groups: int) -> int:
    """The default number of bootstrap resamples for ``groups`` groups: 2000, fewer for huge fleets.

    About 20 million resampled groups in all (at least 200 resamples), so the
    bootstrap stays a small part of a replay: 2000 up to 10,000 groups,
    200 from 100,000.
    """
    return int(min(2000, max(200, 20_000_000 // max(groups, 1))))


def stratum_sums(values: np.ndarray, n_resamples: int, seed: int | Sequence[int]) -> np.ndarray:
    """Bootstrap distribution of the column sums of ``values`` (groups x columns) over resampled groups.

    The groups (rows) are resampled with replacement exactly as
    :func:`scipy.stats.bootstrap` resamples one sample with a vectorized
    statistic: batches of at most :func:`_batch` resamples, each drawn as
    ``rng.integers(0, n, (batch, n))`` from ``numpy.random.default_rng(seed)``
    (scipy's own draw; ``tests/test_replay_stats.py`` checks the distribution
    against scipy's). Written out with numpy so that a replay's statistics do
    not import ``scipy.stats`` (most of a second). Every column is summed over
    the same resamples. Returns an array of shape (columns, n_resamples).
    """
    values = np.asarray(values, np.float64)
    n, k = values.shape
    if n == 0 or n_resamples <= 0:
        return np.zeros((k, max(n_resamples, 0)))
    rng = np.random.default_rng(seed)
    batch = _batch(n_resamples, n)
    out = np.empty((k, n_resamples), np.float64)
    for start in range(0, n_resamples, batch):
        size = min(batch, n_resamples - start)
        idx = rng.integers(0, n, (size, n))
        counts = np.empty((size, n), np.float64)
        for r in range(size):  # resample counts of every group, then one product
            counts[r] = np.bincount(idx[r], minlength=n)
        out[:, start : start + size] = (counts @ values).T
    return out


def _percentile_interval(distribution: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """scipy's ``method="percentile"`` interval of each row (NaN where a row has a NaN)."""
    alpha = (1 - confidence) / 2
    with np.errstate(invalid="ignore"):
        low = np.percentile(distribution, 100 * alpha, axis=-1)
        high = np.percentile(distribution, 100 * (1 - alpha), axis=-1)
    return low, high


def bootstrap_change(
    cost: np.ndarray,
    base: np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | Sequence[int] = 0,
) -> tuple[float, float, float]:
    """Bootstrap percentile interval over groups of the pooled change ``100 x (sum(cost) / sum(base) - 1)`` (%).

    ``cost`` and ``base`` hold one value per group and are resampled together
    (:func:`stratum_sums`). Returns ``(change, low, high)`` in percent; NaN bounds with
    fewer than two groups or ``n_resamples == 0``.
    """
    cost = np.asarray(cost, np.float64)
    base = np.asarray(base, np.float64)
    point = float(100.0 * (cost.sum() / base.sum() - 1.0)) if cost.size and base.sum() else math.nan
    if cost.size < 2 or n_resamples <= 0 or not base.sum():
        return point, math.nan, math.nan
    dist = stratum_sums(np.column_stack([cost, base]), n_resamples, seed)
    low, high = _percentile_interval(100.0 * (dist[0] / dist[1] - 1.0), confidence)
    return point, float(low), float(high)


def _ratios(sums: np.ndarray, C: int) -> dict[str, np.ndarray]:
    """Cost change against the baseline and regret (%) from the sums of (cost, baseline, oracle) x configurations."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"cost_change_pct": 100.0 * (sums[:C] / sums[C : 2 * C] - 1.0), "regret_pct": 100.0 * (sums[:C] / sums[2 * C :] - 1.0)}


def _bootstrap_ratios(
    values: np.ndarray, dataset_of: np.ndarray, datasets: list[str], order: dict[str, int], C: int,
    confidence: float, n_resamples: int, seed: int,
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per workload and TOTAL, per ratio: (point, low, high) arrays over the configurations.

    ``values``: groups x (cost, baseline, oracle) x configurations. Stratified:
    each workload's groups are resampled on their own (seed ``[seed, its
    position]``), and a TOTAL resample is the union of the workloads' resamples.
    """
    R = max(n_resamples, 0)
    total = np.zeros((3 * C, R))
    nan = np.full(C, np.nan)
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for dataset in datasets:
        v = values[dataset_of == dataset]
        points = _ratios(v.sum(0), C) if len(v) else {"cost_change_pct": nan, "regret_pct": nan}
        bounds = {k: (nan, nan) for k in points}
        if len(v) >= 2 and R:
            dist = stratum_sums(v, R, [seed, order[dataset]])
            total += dist
            bounds = {k: _percentile_interval(x, confidence) for k, x in _ratios(dist, C).items()}
        elif len(v) and R:  # one group is always resampled as itself
            total += v.sum(0)[:, None]
        out[dataset] = {k: (points[k], *bounds[k]) for k in points}
    points = _ratios(values.sum(0), C) if len(values) else {"cost_change_pct": nan, "regret_pct": nan}
    bounds = {k: (nan, nan) for k in points}
    if len(values) >= 2 and R:
        bounds = {k: _percentile_interval(x, confidence) for k, x in _ratios(total, C).items()}
    out["TOTAL"] = {k: (points[k], *bounds[k]) for k in points}
    return out


@dataclass
class Comparison:
    """Configurations compared on common groups (see the module docstring).

    ``table``: one row per (configuration, workload) and a ``TOTAL`` row per
    configuration. ``replicates``: the changes of every (configuration,
    fleet, seed, workload). ``failures``: every (fleet, setting, group) that
    stopped on an error, with its reason; these groups are in no comparison.
    """

    table: pd.DataFrame
    replicates: pd.DataFrame
    failures: pd.DataFrame
    confidence: float
    n_resamples: int
    bootstrap_seed: int


def _sums(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    cols = ["submissions", "runs", "failed_runs", *(c for _, c, _b in METRICS), *(b for _, _c, b in METRICS), "oracle_cost_J", "regret_J"]
    out = df.groupby(keys, sort=False)[cols].sum()
    out["groups"] = df.groupby(keys, sort=False).size()
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, c, b in METRICS:
            out[f"{name}_change_pct"] = np.where(out[b] > 0, 100.0 * (out[c] / out[b] - 1.0), np.nan)
        out["regret_pct"] = np.where(out.oracle_cost_J > 0, 100.0 * out.regret_J / out.oracle_cost_J, np.nan)
    return out.reset_index()


def _with_total(df: pd.DataFrame) -> pd.DataFrame:
    total = df.copy()
    total["dataset"] = "TOTAL"
    return pd.concat([df, total], ignore_index=True)


def compare(
    results: FleetResult | Sequence[FleetResult],
    fleets: Sequence[Any] | None = None,
    confidence: float = 0.95,
    n_resamples: int | None = None,
    bootstrap_seed: int = 0,
) -> Comparison:
    """Compare every configuration of one or several fleet replays on their common groups.

    ``results`` are replays of fleet replicates (say, one per ``--fleet-seed``),
    each under the same settings; ``fleets`` names them (default: each fleet's
    ``meta["seed"]``, else its position). ``n_resamples`` bootstrap resamples
    (default :func:`auto_resamples` of the compared groups; 0 skips the bootstrap).
    """
    results = [results] if isinstance(results, FleetResult) else list(results)
    if not results:
        raise ValueError("nothing to compare: no fleet result")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    labels0 = [s.label for s in results[0].settings]
    for i, res in enumerate(results[1:], 1):
        if [s.label for s in res.settings] != labels0:
            raise ValueError(f"fleet result {i} was replayed under other settings than fleet result 0")
    if fleets is None:
        fleets = [res.fleet.meta.get("seed", i) for i, res in enumerate(results)]
        if len(set(fleets)) < len(fleets):
            fleets = list(range(len(results)))
    if len(fleets) != len(results) or len(set(fleets)) < len(fleets):
        raise ValueError(f"fleets must name each fleet result once, got {list(fleets)!r}")
    groups = pd.concat([group_table(res, f) for res, f in zip(results, fleets)], ignore_index=True)
    compared = common_groups(groups)
    failures = _failure_table(groups)
    configs = list(dict.fromkeys(config_label(s) for s in results[0].settings))
    policy_of = {config_label(s): _policy(s) for s in results[0].settings}
    datasets = list(dict.fromkeys([j.dataset for res in results for j in res.fleet.workloads.jobs]))
    order = {d: i for i, d in enumerate([*datasets, "TOTAL"])}

    ok = _with_total(groups.loc[compared.to_numpy()])
    reps = _sums(ok, ["config", "fleet", "seed", "dataset"])
    # Every replicate of every configuration has a row, even with no compared group.
    keys = groups[["config", "fleet", "seed"]].drop_duplicates()
    full = keys.merge(pd.DataFrame({"dataset": [*datasets, "TOTAL"]}), how="cross")
    reps = full.merge(reps, on=["config", "fleet", "seed", "dataset"], how="left")
    for c in ("groups", "submissions", "runs", "failed_runs"):
        reps[c] = reps[c].fillna(0).astype(np.int64)
    reps["policy"] = reps.config.map(policy_of)

    # Left-out groups per workload (the same for every configuration).
    left_out = groups.loc[~compared.to_numpy(), ["fleet", "group", "dataset"]].drop_duplicates()
    fail_count = left_out.dataset.value_counts().to_dict()
    fail_count["TOTAL"] = len(left_out)
    fail_reason = {d: _reasons(failures.loc[failures.dataset == d]) for d in datasets}
    fail_reason["TOTAL"] = _reasons(failures)

    # Per (configuration, fleet, group): cost, baseline and oracle cost averaged over the seed
    # replicates, a column per configuration, the same compared groups (rows) in every column.
    kept = groups.loc[compared.to_numpy()]
    per_group = kept.groupby(["fleet", "group", "config"], sort=False).agg(
        cost=("cost_J", "mean"), base=("baseline_cost_J", "first"), oracle=("oracle_cost_J", "first")
    )
    mats = [per_group[c].unstack("config").reindex(columns=configs) for c in ("cost", "base", "oracle")]
    ds_of = kept.groupby(["fleet", "group"], sort=False).dataset.first().reindex(mats[0].index).to_numpy()
    values_all = np.hstack([m.to_numpy() for m in mats]) if len(mats[0]) else np.zeros((0, 3 * len(configs)))
    n_groups = values_all.shape[0]
    if n_resamples is None:
        n_resamples = auto_resamples(n_groups)
    logger.info("comparing %d configurations on %d groups (%d left out); bootstrap: %d resamples", len(configs), n_groups, fail_count["TOTAL"], n_resamples)
    boot = _bootstrap_ratios(values_all, ds_of, datasets, order, len(configs), confidence, n_resamples, bootstrap_seed)

    rows: list[dict[str, Any]] = []
    for ci, config in enumerate(configs):
        for dataset in [*datasets, "TOTAL"]:
            rr = reps.loc[(reps.config == config) & (reps.dataset == dataset)]
            row: dict[str, Any] = {
                "config": config,
                "policy": policy_of[config],
                "dataset": dataset,
                "replicates": len(rr),
                "groups": int(rr.groupby("fleet")["groups"].first().sum()),
                "failed": int(fail_count.get(dataset, 0)),
                "failed_reasons": fail_reason.get(dataset, ""),
                "submissions": int(rr.groupby("fleet").submissions.first().sum()),
                "runs": int(rr.runs.sum()),
            }
            for name, _c, _b in METRICS:
                mean, low, high = t_interval(rr[f"{name}_change_pct"].to_numpy(), confidence)
                row[f"{name}_change_pct"] = mean
                row[f"{name}_change_pct_ci_low"] = low
                row[f"{name}_change_pct_ci_high"] = high
            mean, low, high = t_interval(rr.regret_pct.to_numpy(), confidence)
            row["regret_pct"], row["regret_pct_ci_low"], row["regret_pct_ci_high"] = mean, low, high
            for name in ("cost_change_pct", "regret_pct"):
                point, low, high = boot[dataset][name]
                row[f"{name}_pooled"] = float(point[ci])
                row[f"{name}_boot_low"] = float(low[ci])
                row[f"{name}_boot_high"] = float(high[ci])
            rows.append(row)
    table = pd.DataFrame(rows)
    reps["_c"] = reps.config.map({c: i for i, c in enumerate(configs)})
    reps["_d"] = reps.dataset.map(order)
    reps = reps.sort_values(["_c", "fleet", "seed", "_d"], kind="stable")
    cols = ["config", "policy", "fleet", "seed", "dataset", "groups", "submissions", "runs", "failed_runs"]
    cols += [c for _n, c, b in METRICS] + [b for _n, _c, b in METRICS] + ["oracle_cost_J", "regret_J"]
    cols += [f"{n}_change_pct" for n, _c, _b in METRICS] + ["regret_pct"]
    return Comparison(table, reps[cols].reset_index(drop=True), failures, confidence, n_resamples, bootstrap_seed)


def _cell(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return "-"
    if math.isnan(low):
        return f"{mean:+.1f}"
    return f"{mean:+.1f} ±{(high - low) / 2:.1f}"


def format_comparison(comparison: Comparison) -> str:
    """One compact table: a row per configuration, the cost change per workload with its interval.

    Cells are ``change % ±half-width`` (negative: cheaper than the baseline): the t-interval across replicates when
    there are several, else the bootstrap interval over groups. The TOTAL
    column also shows the bootstrap interval.
    """
    t = comparison.table
    datasets = [d for d in dict.fromkeys(t.dataset.tolist()) if d != "TOTAL"]
    configs = list(dict.fromkeys(t.config.tolist()))
    policy_of = dict(zip(t.config, t.policy))
    shown = dict(zip(configs, display_labels(configs, [policy_of[c] for c in configs])))
    conf = f"{100 * comparison.confidence:g}%"
    reps = int(t.replicates.max()) if len(t) else 0
    how = f"t-interval over {reps} replicates" if reps > 1 else "bootstrap over groups"
    width = max([len("configuration"), *(len(shown[c]) for c in configs)])
    cols = [max(len(d), 12) for d in datasets]
    head = f"{'configuration':<{width}} {'groups':>7} " + " ".join(f"{d:>{w}}" for d, w in zip(datasets, cols))
    head += f" {'TOTAL':>12} {'bootstrap ' + conf:>18} {'regret %':>12}"
    lines = [
        f"cost change against the baseline, % (negative: cheaper), {conf} {how}; every configuration on the same groups;",
        "regret: cost above the oracle's (best fixed batch size and power limit in hindsight), % of the oracle's cost",
        head,
        "-" * len(head),
    ]
    for config in configs:
        c = t.loc[t.config == config].set_index("dataset")
        boot_mode = reps < 2
        cells = []
        for d, w in zip(datasets, cols):
            r = c.loc[d]
            cells.append(f"{_cell(r.cost_change_pct_pooled, r.cost_change_pct_boot_low, r.cost_change_pct_boot_high) if boot_mode else _cell(r.cost_change_pct, r.cost_change_pct_ci_low, r.cost_change_pct_ci_high):>{w}}")
        tot = c.loc["TOTAL"]
        total = _cell(tot.cost_change_pct_pooled, tot.cost_change_pct_boot_low, tot.cost_change_pct_boot_high) if boot_mode else _cell(tot.cost_change_pct, tot.cost_change_pct_ci_low, tot.cost_change_pct_ci_high)
        boot = "-" if math.isnan(tot.cost_change_pct_boot_low) else f"[{tot.cost_change_pct_boot_low:+.1f}, {tot.cost_change_pct_boot_high:+.1f}]"
        regret = _cell(tot.regret_pct_pooled, tot.regret_pct_boot_low, tot.regret_pct_boot_high) if boot_mode else _cell(tot.regret_pct, tot.regret_pct_ci_low, tot.regret_pct_ci_high)
        lines.append(f"{shown[config]:<{width}} {int(tot.groups):>7,} " + " ".join(cells) + f" {total:>12} {boot:>18} {regret:>12}")
    failed = int(t.loc[t.dataset == "TOTAL", "failed"].iloc[0]) if len(t) else 0
    if failed:
        f = comparison.failures
        counts = f.groupby("reason").size().sort_values(ascending=False)
        why = ", ".join(f"{n} x {reason}" for reason, n in counts.items())
        lines.append(
            f"{failed:,} group(s) left out of every comparison: each stopped on an error in at least one setting "
            f"({why}, counted over (setting, group) pairs; see the failed and failed_reasons columns)"
        )
    return "\n".join(lines)


def write_statistics(comparison: Comparison, out: str | os.PathLike) -> list[Path]:
    """``comparison.csv``, ``replicates.csv`` and ``failed_groups.csv`` in ``out``; returns the files."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    files = [d / "comparison.csv", d / "replicates.csv", d / "failed_groups.csv"]
    comparison.table.to_csv(files[0], index=False)
    comparison.replicates.to_csv(files[1], index=False)
    comparison.failures.to_csv(files[2], index=False)
    return files

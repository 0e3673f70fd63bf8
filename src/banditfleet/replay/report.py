"""Summaries and plots of a fleet replay, against the Zeus paper's baseline.

The baseline runs every submission with the workload's default batch size at
its highest power limit, without early stopping: its energy and time are the
mean, over that configuration's training paths, of one run to the target
epoch (to ``max_epochs`` for a path that never reaches it), scaled by the
submission's runtime ratio. Its cost uses the same ``eta_knob`` and maximum
power as the replay.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditfleet.errors import OutputError
from banditfleet.replay.fleet import FleetResult
from banditfleet.replay.outputs import HISTORY_FORMATS

__all__ = ["baseline_per_submission", "summarize", "write_outputs", "ERROR_NAMES"]

logger = logging.getLogger("banditfleet")

ERROR_NAMES = {
    1: "default batch size did not converge",
    2: "no success in 20 tries",
    3: "concurrent launch with an unprofiled batch size",
    4: "no training path at the target metric",
    5: "power limit not in the trace",
    6: "retry limit",
    7: "no batch size survived pruning",
    8: "batch size not in the trace",
}


def baseline_per_submission(result: FleetResult) -> tuple[np.ndarray, np.ndarray]:
    """Per workload: the baseline's energy (J) and time (s) of one submission of runtime ratio 1."""
    t = result.fleet.workloads.tables
    n = t.wl_arm_start.shape[0]
    energy = np.zeros(n)
    time = np.zeros(n)
    for w in range(n):
        a = int(t.wl_default_arm[w])
        c = int(t.arm_cell_start[a])  # the highest power limit
        s, k = int(t.cell_path_start[c]), int(t.cell_path_count[c])
        te = t.path_target_epoch[s : s + k]
        epochs = np.where(np.isnan(te) | (te > t.wl_max_epochs[w]), t.wl_max_epochs[w], te)
        energy[w] = float(np.mean(epochs * t.path_epe[s : s + k]))
        time[w] = float(np.mean(epochs * t.path_tpe[s : s + k]))
    return energy, time


def _change_pct(value: float, baseline: float) -> float:
    """Change against the baseline in percent: -27.1 is 27.1 % less than the baseline."""
    return 100.0 * (value / baseline - 1.0) if baseline else 0.0


def summarize(result: FleetResult) -> pd.DataFrame:
    """One row per (setting, dataset) and a total per setting: energy, time, cost, baseline, change, regret.

    Units are in the column names: ``energy_J``, ``time_s``, ``cost_J`` and the
    baseline's; ``*_change_pct`` is the change against the baseline in percent
    (negative: less than the baseline), as the terminal table prints it;
    ``oracle_cost_J``, ``regret_J`` (cost minus the oracle's) and
    ``regret_pct`` (regret over the oracle's cost, percent).

    Every setting is summarized over the same groups: a group that stopped on
    an error in *any* setting is left out of every row and counted in
    ``failed`` (groups left out), with ``failed_reasons`` saying which error
    in which setting (:func:`banditfleet.replay.stats.common_groups`).
    """
    from banditfleet.replay.stats import _failure_table, _reasons, _sums, _with_total, common_groups, group_table

    fleet = result.fleet
    groups = group_table(result)
    compared = common_groups(groups).to_numpy()
    failures = _failure_table(groups)
    names = [j.dataset for j in fleet.workloads.jobs]
    datasets = [*names, "TOTAL"]
    sums = _sums(_with_total(groups.loc[compared]), ["setting", "dataset"]).set_index(["setting", "dataset"])
    left_out = groups.loc[~compared, ["group", "dataset"]].drop_duplicates().dataset.value_counts().to_dict()
    left_out["TOTAL"] = sum(left_out.values())
    reasons = {d: _reasons(failures.loc[failures.dataset == d]) for d in names}
    reasons["TOTAL"] = _reasons(failures)
    rows: list[dict[str, Any]] = []
    for setting in result.settings:
        for dataset in datasets:
            key = (setting.label, dataset)
            d = sums.loc[key] if key in sums.index else None
            rows.append(
                {
                    "setting": setting.label,
                    "policy": setting.policy,
                    "eta_knob": setting.eta_knob,
                    "beta_knob": setting.beta_knob,
                    "seed": setting.seed,
                    "dataset": dataset,
                    "groups": int(d.groups) if d is not None else 0,
                    "failed": int(left_out.get(dataset, 0)),
                    "failed_reasons": reasons[dataset],
                    **{c: (int(d[c]) if d is not None else 0) for c in ("submissions", "runs", "failed_runs")},
                    **{c: (float(d[c]) if d is not None else 0.0) for c in ("energy_J", "time_s", "cost_J", "baseline_energy_J", "baseline_time_s", "baseline_cost_J")},
                    **{c: (float(d[c]) if d is not None and not np.isnan(d[c]) else 0.0) for c in ("energy_change_pct", "time_change_pct", "cost_change_pct")},
                    "oracle_cost_J": float(d.oracle_cost_J) if d is not None else 0.0,
                    "regret_J": float(d.regret_J) if d is not None else 0.0,
                    "regret_pct": float(d.regret_pct) if d is not None and not np.isnan(d.regret_pct) else 0.0,
                }
            )
    return pd.DataFrame(rows)


def format_table(summary: pd.DataFrame, setting: str) -> str:
    """The per-workload table of one setting, for the terminal."""
    df = summary.loc[summary.setting == setting]
    head = f"{'workload':<18} {'groups':>7} {'runs':>9} {'energy MJ':>11} {'vs base':>8} {'time h':>10} {'vs base':>8} {'cost J':>12} {'vs base':>8}"
    lines = [head, "-" * len(head)]
    for rec in df.itertuples(index=False):
        if rec.dataset == "TOTAL":
            lines.append("-" * len(head))
        lines.append(
            f"{rec.dataset:<18} {rec.groups:>7,} {rec.runs:>9,} {rec.energy_J / 1e6:>11,.1f} {rec.energy_change_pct:>+7.1f}% "
            f"{rec.time_s / 3600:>10,.1f} {rec.time_change_pct:>+7.1f}% {rec.cost_J:>12.4g} {rec.cost_change_pct:>+7.1f}%"
        )
    return "\n".join(lines)


def write_outputs(
    result: FleetResult,
    summary: pd.DataFrame,
    out: str | os.PathLike,
    extra: dict[str, Any] | None = None,
    history_format: str = "parquet",
    plots: bool = True,
    comparison: Any = None,
    pending_plots: Any = None,
) -> tuple[list[Path], str | None]:
    """history.parquet (or .csv, or none), summary.csv, summary.json and (with matplotlib) the PNG plots.

    The plots are those of :func:`banditfleet.replay.plots.write_plots`;
    ``comparison`` (a :class:`banditfleet.replay.stats.Comparison`, computed
    from ``result`` when None) is charted in ``savings_per_workload.png``.
    ``pending_plots`` is a handle of :func:`banditfleet.replay.plots.start_result_plots`
    drawing this result's plots in another process: only the comparison plot is
    drawn here, then that process is waited for.
    Returns the files written and, when plots were skipped, why. Raises
    :class:`~banditfleet.errors.OutputError` when ``out`` exists and is not a
    folder, or for an unknown ``history_format`` (before writing anything).
    """
    from banditfleet.replay.outputs import history_table, write_history

    if history_format not in HISTORY_FORMATS:
        raise OutputError(f"history format must be one of {list(HISTORY_FORMATS)}, got {history_format!r}")
    d = Path(out)
    if d.exists() and not d.is_dir():
        raise OutputError(f"output folder {str(d)!r} exists and is not a folder")
    d.mkdir(parents=True, exist_ok=True)
    table = history_table(result)
    history_file = write_history(result, d, history_format, table=table)
    files = ([history_file] if history_file is not None else []) + [d / "summary.csv", d / "summary.json"]
    summary.to_csv(d / "summary.csv", index=False)
    errors = result.errors()
    payload = {
        **(extra or {}),
        "settings": [{**s.__dict__, "label": s.label} for s in result.settings],
        "groups": len(result.fleet),
        "submissions": result.fleet.n_submissions,
        "runs": result.n_runs,
        "failed_groups": {ERROR_NAMES.get(int(k), str(k)): int(v) for k, v in errors.error.value_counts().items()},
        "summary": summary.to_dict(orient="records"),
    }
    (d / "summary.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    if not plots:
        return files, "not requested"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return files, "matplotlib is not installed (pip install 'banditfleet[plot]')"
    from banditfleet.replay.plots import finish_result_plots, write_comparison_plot, write_plots

    if pending_plots is not None:
        from banditfleet.replay.stats import compare

        last = write_comparison_plot(comparison if comparison is not None else compare(result), d)
        return files + finish_result_plots(pending_plots) + [last], None
    return files + write_plots(result, d, comparison), None

"""Plots of a fleet replay (matplotlib, the ``plot`` extra): every setting, on common groups.

Each plot is built in two steps, so that what is drawn can be checked
without looking at pixels: a ``*_data`` function computes the series as a
DataFrame, and a ``plot_*`` function draws exactly those series into a new
:class:`matplotlib.figure.Figure` (one line or bar series per row group).
:func:`write_plots` and :func:`write_comparison_plot` save them as PNG files.

Like the statistics (:mod:`banditfleet.replay.stats`), the plots use only
the groups that succeeded in every setting, and pool a configuration's seed
replicates.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditfleet.replay.fleet import FleetResult
from banditfleet.kernels.replay import ERR_NONE
from banditfleet.replay.stats import Comparison, config_label, display_labels

__all__ = [
    "batch_size_data",
    "comparison_data",
    "cost_per_recurrence_data",
    "plot_batch_size",
    "plot_comparison",
    "plot_cost_per_recurrence",
    "plot_regret_per_recurrence",
    "regret_per_recurrence_data",
    "write_comparison_plot",
    "write_plots",
    "RESULT_PLOTS",
    "start_result_plots",
    "finish_result_plots",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _compared_units(result: FleetResult) -> np.ndarray:
    """Per unit (setting-major): whether its group succeeded in every setting
    (:func:`banditfleet.replay.stats.common_groups`, from the error codes directly)."""
    S, G = len(result.settings), len(result.fleet)
    ok = (result.result.error[: S * G].reshape(S, G) == ERR_NONE).all(axis=0) if S and G else np.zeros(G, bool)
    return np.tile(ok, S)


def _per_recurrence(result: FleetResult, value: str, bins: int | None) -> pd.DataFrame:
    """Per (config, dataset, recurrence bin): the mean of a per-submission value over compared groups.

    ``value``: ``"relative_cost"`` (a submission's cost over the baseline's)
    or ``"cumulative_regret"`` (the sum, over the group's submissions up to
    this one, of each submission's cost over the oracle's, minus 1).
    """
    from banditfleet.replay.report import baseline_per_submission

    fl = result.fleet
    r = result.result
    G = len(fl)
    S = len(result.settings)
    N = fl.n_submissions
    t = fl.workloads.tables
    base_e, base_t = baseline_per_submission(result)
    configs = list(dict.fromkeys(config_label(s) for s in result.settings))
    cfg_of_setting = np.array([configs.index(config_label(s)) for s in result.settings], np.int64)
    eta = np.array([s.eta_knob for s in result.settings], np.float64)
    sub_wl = np.repeat(fl.group_wl, fl.sub_count)
    sub_first = np.repeat(fl.sub_start, fl.sub_count)
    sub_k = np.arange(N, dtype=np.int64) - sub_first
    max_power = t.wl_max_power[fl.group_wl].astype(np.float64)
    setting = r.unit // G if G else r.unit
    group = r.unit % G if G else r.unit
    cost = eta[setting] * r.energy + (1.0 - eta[setting]) * max_power[group] * r.time
    sub_global = fl.sub_start[group] + r.sub
    compared = _compared_units(result).reshape(S, G) if G else np.zeros((S, 0), bool)
    sub_group = np.repeat(np.arange(G), fl.sub_count)
    oracles = result.oracle_tables() if value == "cumulative_regret" else None
    W = len(fl.workloads.jobs)
    K = int(fl.sub_count.max()) if G else 0
    C = len(configs)
    total = np.zeros(C * W * K)
    count = np.zeros(C * W * K, np.int64)
    cell = sub_wl * K + sub_k
    for si in range(S):  # one setting at a time: memory stays O(submissions)
        m = setting == si
        per_sub = np.bincount(sub_global[m], weights=cost[m], minlength=N)
        with np.errstate(divide="ignore", invalid="ignore"):
            if oracles is None:
                base = (eta[si] * base_e[sub_wl] + (1.0 - eta[si]) * t.wl_max_power[sub_wl] * base_t[sub_wl]) * fl.runtime_ratio
                x = per_sub / base
            else:
                x = per_sub / (oracles[si].cost[sub_wl] * fl.runtime_ratio) - 1.0
                c = np.cumsum(x)
                x = c - (c[sub_first] - x[sub_first]) if N else x  # running sum within each group
        keep = compared[si][sub_group]
        key = cfg_of_setting[si] * W * K + cell[keep]
        total += np.bincount(key, weights=x[keep], minlength=C * W * K)
        count += np.bincount(key, minlength=C * W * K)
    # Recurrence bins: [lo, hi) edges, 1-based; one recurrence each unless ``bins`` merges the tail.
    if bins is None or K <= bins:
        edges = np.arange(1, K + 2, dtype=np.int64)
    else:
        edges = np.unique(np.floor(np.geomspace(1, K + 1, bins + 1)).astype(np.int64))
        edges = np.unique(np.concatenate([edges, [K + 1]]))
    which = np.searchsorted(edges, np.arange(1, K + 1), side="right") - 1  # bin of recurrence k+1
    B = len(edges) - 1
    total = total.reshape(C * W, K)
    count = count.reshape(C * W, K)
    bt = np.zeros((C * W, B))
    bc = np.zeros((C * W, B), np.int64)
    for b in range(B):
        bt[:, b] = total[:, which == b].sum(axis=1)
        bc[:, b] = count[:, which == b].sum(axis=1)
    nz = np.flatnonzero(bc.ravel())
    cw, b = np.divmod(nz, B)
    c, w = np.divmod(cw, W)
    names = np.array([j.dataset for j in fl.workloads.jobs], dtype=object)
    lo, hi = edges[b], edges[b + 1] - 1
    return pd.DataFrame(
        {
            "config": np.array(configs, dtype=object)[c] if nz.size else np.zeros(0, object),
            "dataset": names[w] if nz.size else np.zeros(0, object),
            "recurrence": np.sqrt(lo * hi),
            "first": lo,
            "last": hi,
            value: bt.ravel()[nz] / bc.ravel()[nz],
            "groups": bc.ravel()[nz],
        }
    )


def cost_per_recurrence_data(result: FleetResult, bins: int | None = 60) -> pd.DataFrame:
    """Mean cost of the k-th submission of a group over its baseline cost, per configuration and workload.

    The whole horizon, up to the longest compared group: recurrences
    ``first`` to ``last`` (1-based) form a bin, one recurrence each while
    the horizon has at most ``bins`` recurrences (or ``bins=None``), else
    geometric bins (single recurrences first, wider ones in the sparse
    tail). One row per (config, dataset, bin) that has data:
    ``recurrence`` (the bin's geometric centre, the x of the plot),
    ``first``, ``last``, ``relative_cost`` (the mean over the (group, seed
    replicate, recurrence) triples in the bin of the submission's cost,
    retries included, over the baseline's cost of that submission) and
    ``groups`` (how many triples the mean is over).
    """
    return _per_recurrence(result, "relative_cost", bins)


def regret_per_recurrence_data(result: FleetResult, bins: int | None = 60) -> pd.DataFrame:
    """Cumulative regret against the oracle over recurrences, per configuration and workload.

    A group's cumulative regret at recurrence k is the sum over its first k
    submissions of ``cost / oracle cost - 1``: how many submissions' worth
    of the oracle's cost it has paid above the oracle
    (:meth:`FleetResult.oracle_tables`; a policy that keeps learning grows
    it ever more slowly). Rows as :func:`cost_per_recurrence_data`, with
    ``cumulative_regret`` the mean over the (group, seed replicate,
    recurrence) triples of the bin.
    """
    return _per_recurrence(result, "cumulative_regret", bins)


def _plain_log_axis(axis: Any) -> None:
    """Log-scale ticks labelled as plain numbers, no minor labels (mathtext labels are slow to lay out)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    base = float(getattr(axis.get_transform(), "base", 10.0))
    axis.set_major_locator(LogLocator(base=base, subs=(1.0, 2.0, 5.0) if base == 10 else (1.0,), numticks=8))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def _finish_panels(fig: Any, axes: Any, used: int, title: str) -> None:
    """Hide unused panels, one legend below, the title above; fixed margins (no tight_layout pass)."""
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    ncol = min(4, max(len(labels), 1))
    legend_rows = math.ceil(len(labels) / ncol) if labels else 0
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7)
    fig.suptitle(title, fontsize=10)
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.07, right=0.98, top=1 - 0.5 / height, bottom=(0.55 + 0.16 * legend_rows) / height, hspace=0.5, wspace=0.3
    )


def _panels(plt: Any, n: int) -> tuple[Any, Any]:
    """A figure with ``n`` panels, three to a row: ``(fig, axes)`` with ``axes`` 2-D."""
    cols = min(3, max(n, 1))
    rows = math.ceil(max(n, 1) / cols)
    return plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)


def _plot_per_recurrence(data: pd.DataFrame, column: str, ylabel: str, title: str, log_y: bool, reference: float) -> Any:
    plt = _pyplot()
    datasets = list(dict.fromkeys(data.dataset.tolist()))
    configs = list(dict.fromkeys(data.config.tolist()))
    fig, axes = _panels(plt, len(datasets))
    for ax, dataset in zip(axes.flat, datasets):
        for i, config in enumerate(configs):
            d = data.loc[(data.dataset == dataset) & (data.config == config)]
            if len(d):
                ax.plot(d.recurrence.to_numpy(), d[column].to_numpy(), lw=1.0, color=f"C{i % 10}", label=config)
        ax.axhline(reference, color="black", ls="--", lw=0.8)
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
        if log_y:
            ax.set_yscale("log")
            _plain_log_axis(ax.yaxis)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("recurrence (submission of its group)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    _finish_panels(fig, axes, len(datasets), title)
    return fig


def plot_cost_per_recurrence(data: pd.DataFrame) -> Any:
    """One panel per workload, one line per configuration: ``relative_cost`` over ``recurrence``."""
    return _plot_per_recurrence(
        data, "relative_cost", "cost / baseline (mean)", "Cost per recurrence against the baseline (dashed: the baseline)", True, 1.0
    )


def plot_regret_per_recurrence(data: pd.DataFrame) -> Any:
    """One panel per workload, one line per configuration: ``cumulative_regret`` over ``recurrence``."""
    return _plot_per_recurrence(
        data, "cumulative_regret", "cumulative regret (oracle submissions)",
        "Cumulative regret against the oracle (best fixed batch size and power limit in hindsight)", False, 0.0,
    )


def batch_size_data(result: FleetResult) -> pd.DataFrame:
    """The chosen batch size over the runs of the busiest compared group of each workload, in every setting.

    One row per run: ``setting``, ``dataset``, ``group``, ``run`` (1-based, in
    the order of the group's history) and ``batch_size``.
    """
    fl = result.fleet
    G = len(fl)
    ok = _compared_units(result).reshape(len(result.settings), G).all(axis=0) if G else np.zeros(0, bool)
    parts = []
    for w, job in enumerate(fl.workloads.jobs):
        members = np.flatnonzero((fl.group_wl == w) & ok)
        if not members.size:
            continue
        g = int(members[np.argmax(fl.sub_count[members])])
        for si, s in enumerate(result.settings):
            hist = result.history(si, g)
            parts.append(
                pd.DataFrame(
                    {
                        "setting": s.label,
                        "dataset": job.dataset,
                        "group": fl.group_ids[g],
                        "run": np.arange(1, len(hist) + 1, dtype=np.int64),
                        "batch_size": np.array([e.bs for e in hist], np.int64),
                    }
                )
            )
    if not parts:
        return pd.DataFrame({"setting": [], "dataset": [], "group": [], "run": [], "batch_size": []})
    return pd.concat(parts, ignore_index=True)


def plot_batch_size(data: pd.DataFrame) -> Any:
    """One panel per workload (its sample group), one line per setting: ``batch_size`` over ``run``."""
    plt = _pyplot()
    datasets = list(dict.fromkeys(data.dataset.tolist()))
    settings = list(dict.fromkeys(data.setting.tolist()))
    fig, axes = _panels(plt, len(datasets))
    for ax, dataset in zip(axes.flat, datasets):
        group = ""
        for i, setting in enumerate(settings):
            d = data.loc[(data.dataset == dataset) & (data.setting == setting)]
            if len(d):
                group = str(d.group.iloc[0])
                ax.plot(d.run.to_numpy(), d.batch_size.to_numpy(), lw=0.8, color=f"C{i % 10}", label=setting)
        ax.set_yscale("log", base=2)
        _plain_log_axis(ax.yaxis)
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
        ax.set_title(f"{dataset} (group {group[:8]})", fontsize=9)
        ax.set_xlabel("run of the group", fontsize=8)
        ax.set_ylabel("batch size", fontsize=8)
        ax.tick_params(labelsize=7)
    _finish_panels(fig, axes, len(datasets), "Chosen batch size over the runs of the busiest group of each workload")
    return fig


def comparison_data(comparison: Comparison) -> pd.DataFrame:
    """The bars of the comparison plot: per (config, dataset) the cost change (%) and its interval.

    With several replicates the bar is the mean change and the error bar the
    t-interval across replicates; with one, the pooled change and the
    bootstrap interval over groups. Columns: ``config``, ``policy``,
    ``dataset``, ``change_pct``, ``low``, ``high`` (percent; negative:
    cheaper than the baseline), ``interval``.
    """
    t = comparison.table
    several = int(t.replicates.max()) > 1 if len(t) else False
    if several:
        change, low, high, kind = t.cost_change_pct, t.cost_change_pct_ci_low, t.cost_change_pct_ci_high, "t"
    else:
        change, low, high, kind = t.cost_change_pct_pooled, t.cost_change_pct_boot_low, t.cost_change_pct_boot_high, "bootstrap"
    return pd.DataFrame(
        {
            "config": t.config.to_numpy(),
            "policy": t.policy.to_numpy(),
            "dataset": t.dataset.to_numpy(),
            "change_pct": change.to_numpy(),
            "low": low.to_numpy(),
            "high": high.to_numpy(),
            "interval": kind,
        }
    )


def plot_comparison(comparison: Comparison) -> Any:
    """Grouped bars: cost change per workload (and in total), one bar per configuration, with error bars."""
    plt = _pyplot()
    data = comparison_data(comparison)
    datasets = list(dict.fromkeys(data.dataset.tolist()))
    configs = list(dict.fromkeys(data.config.tolist()))
    policy_of = dict(zip(data.config, data.policy))
    shown = dict(zip(configs, display_labels(configs, [policy_of[c] for c in configs])))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.35 * len(configs) * len(datasets) + 2), 4.8))
    x = np.arange(len(datasets), dtype=np.float64)
    width = 0.8 / max(len(configs), 1)
    for i, config in enumerate(configs):
        d = data.loc[data.config == config].set_index("dataset").reindex(datasets)
        err = np.vstack([d.change_pct - d.low, d.high - d.change_pct])
        err = np.where(np.isnan(err), 0.0, err)
        ax.bar(x + (i - (len(configs) - 1) / 2) * width, d.change_pct.to_numpy(), width=width, yerr=err, capsize=2,
               color=f"C{i % 10}", label=shown[config], error_kw={"lw": 0.8})
    ax.set_xticks(x, datasets, rotation=20, fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("cost change vs baseline (%, negative: cheaper)")
    kind = data.interval.iloc[0] if len(data) else "t"
    how = "t-interval across replicates" if kind == "t" else "bootstrap over groups"
    ax.set_title(f"Cost change per workload and configuration ({100 * comparison.confidence:g}% {how})", fontsize=10)
    ax.legend(fontsize=7, ncol=max(1, math.ceil(len(configs) / 8)), loc="best")
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.2)
    return fig


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_comparison_plot(comparison: Comparison, out: str | os.PathLike) -> Path:
    """``savings_per_workload.png`` in ``out``: :func:`plot_comparison`."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    return _save(plot_comparison(comparison), d / "savings_per_workload.png")


#: The plots of one result (beside the comparison plot), in the order :func:`write_plots` returns them.
RESULT_PLOTS = ("cost_per_recurrence.png", "regret_per_recurrence.png", "batch_size_over_runs.png")


def _write_result_plots(result: FleetResult, d: Path) -> list[Path]:
    return [
        _save(plot_cost_per_recurrence(cost_per_recurrence_data(result)), d / RESULT_PLOTS[0]),
        _save(plot_regret_per_recurrence(regret_per_recurrence_data(result)), d / RESULT_PLOTS[1]),
        _save(plot_batch_size(batch_size_data(result)), d / RESULT_PLOTS[2]),
    ]


def start_result_plots(result: FleetResult, out: str | os.PathLike) -> tuple[int, Path] | None:
    """Draw the :data:`RESULT_PLOTS` of ``result`` into ``out`` in a forked child process.

    matplotlib's import, layout and rendering are single-threaded Python (about
    3 s of CPU for a large replay); a child draws them on another core while the
    caller computes the statistics and writes the history. Returns the child's
    handle for :func:`finish_result_plots`, or None where ``os.fork`` does not
    exist (the caller then draws them itself). The child only reads ``result``
    and ends with ``os._exit``.
    """
    if not hasattr(os, "fork"):
        return None
    import sys

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its exit code is checked by the parent)
        code = 1
        try:
            _write_result_plots(result, d)
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return pid, d


def finish_result_plots(handle: tuple[int, Path]) -> list[Path]:
    """Wait for the child of :func:`start_result_plots`; its files, or OutputError if it failed."""
    from banditfleet.errors import OutputError

    pid, d = handle
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise OutputError(f"drawing the plots in {str(d)!r} failed (the plotting process exited with {code})")
    return [d / name for name in RESULT_PLOTS]


def write_plots(result: FleetResult, out: str | os.PathLike, comparison: Comparison | None = None) -> list[Path]:
    """Every plot of one fleet replay, as PNG files in ``out``; returns the files.

    ``cost_per_recurrence.png``, ``regret_per_recurrence.png``, ``batch_size_over_runs.png`` and
    ``savings_per_workload.png`` (of ``comparison``, else of this result).
    """
    from banditfleet.replay.stats import compare

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    files = _write_result_plots(result, d)
    files.append(write_comparison_plot(comparison if comparison is not None else compare(result), d))
    return files

"""Zeus-format traces: reading, validation, and the arrays the replay kernels use.

A *trace* is the inner merge of a train trace (``summary_train.csv``) and a
power trace (``summary_power_<gpu>.csv``), exactly as the reference
simulator builds it. A *workload* is one job spec (dataset, network,
optimizer, target metric, max epochs, default batch size) on one trace. For
every workload the trace is cut once into flat arrays
(:class:`~banditfleet.kernels.replay.ReplayTables`):

* its *arms*: the batch sizes of (dataset, network, optimizer), sorted;
* per arm, its *cells*: one per power limit at the target metric, highest
  first (the order in which JIT profiling observes them), with the groupby
  means profiling uses;
* per cell, its training *paths* in trace order (``DataFrame.sample`` draws
  an index into them).

The per-arm means (the profiling epoch's energy and time) and the groupby
means are computed by pandas itself with the reference's expressions, so
they are the same floats. A *groups* table (columns group, start_time,
end_time, dataset, runtime_ratio; one row per submission) lists the job
groups to replay.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditfleet.errors import TraceError
from banditfleet.job import Job
from banditfleet.kernels.replay import ReplayTables

__all__ = [
    "TRAIN_COLUMNS",
    "POWER_COLUMNS",
    "GROUP_COLUMNS",
    "JOB_COLUMNS",
    "ZEUS_JOB_DEFAULTS",
    "Trace",
    "Workloads",
    "zeus_job",
    "read_jobs",
    "read_groups",
    "build_workloads",
]

logger = logging.getLogger("banditfleet")

TRAIN_COLUMNS = ("dataset", "network", "batch_size", "optimizer", "target_metric", "target_epoch")
POWER_COLUMNS = ("dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power")
GROUP_COLUMNS = ("group", "start_time", "end_time", "dataset", "runtime_ratio")
JOB_COLUMNS = ("dataset", "network", "optimizer", "target_metric", "max_epochs", "default_bs")

#: The Zeus artifacts' job spec per dataset (``run_alibaba.py``): network, optimizer,
#: target metric, max epochs, default batch size before capping by the GPU's largest
#: batch size, default learning rate.
ZEUS_JOB_DEFAULTS: dict[str, tuple[str, str, float, int, int, float | None]] = {
    "cifar100": ("shufflenetv2", "adadelta", 0.6, 100, 1024, 0.1),
    "imagenet": ("resnet50", "adadelta", 0.65, 100, 256, None),
    "squad": ("bert_base_uncased", "adamw", 84.0, 6, 32, None),
    "librispeech": ("deepspeech2", "adamw", 40.0, 16, 256, None),
    "movielens-1m": ("ncf", "adam", 0.41, 100, 1024, None),
    "sentiment140": ("bert_base_uncased", "adamw", 0.84, 10, 128, 4.00e-7),
}


def _frame(data: str | os.PathLike | pd.DataFrame, what: str, **read_args: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    path = Path(data)
    if not path.is_file():
        raise TraceError(f"{what}: no such file {str(path)!r}")
    try:
        return pd.read_csv(path, **read_args)
    except (ValueError, OSError) as exc:
        raise TraceError(f"{what}: cannot read {str(path)!r}: {exc}") from None


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TraceError(f"{what}: missing column(s) {missing}; it has {list(df.columns)}")


def _positive(df: pd.DataFrame, column: str, what: str, integer: bool = False) -> None:
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values > 0))
    if integer:
        bad |= np.isfinite(values) & (values != np.round(values))
    if bad.any():
        i = int(np.argmax(bad))
        kind = "a positive integer" if integer else "a positive finite number"
        raise TraceError(f"{what}: row {i}: {column} = {df[column].iloc[i]!r} is not {kind}")


class Trace:
    """The inner merge of a train trace and a power trace, as the reference simulator builds it.

    Args:
        summary_train: Path to or DataFrame of the train trace.
        summary_power: Path to or DataFrame of the power trace.
        name: A label (the GPU) for messages and reports.
    """

    def __init__(
        self,
        summary_train: str | os.PathLike | pd.DataFrame,
        summary_power: str | os.PathLike | pd.DataFrame,
        name: str = "",
    ) -> None:
        train = _frame(summary_train, "train trace")
        power = _frame(summary_power, "power trace")
        _require(train, TRAIN_COLUMNS, "train trace")
        _require(power, POWER_COLUMNS, "power trace")
        _positive(train, "batch_size", "train trace", integer=True)
        _positive(power, "batch_size", "power trace", integer=True)
        _positive(power, "power_limit", "power trace", integer=True)
        _positive(power, "time_per_epoch", "power trace")
        _positive(power, "average_power", "power trace")
        te = pd.to_numeric(train["target_epoch"], errors="coerce")
        bad = (te.isna() & train["target_epoch"].notna()) | (te < 0)
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise TraceError(
                f"train trace: row {i}: target_epoch = {train['target_epoch'].iloc[i]!r} is not a "
                f"non-negative number (or empty for a run that never reached the target)"
            )
        self.name = name
        self.train = train
        self.power = power
        df = train.merge(power, how="inner")
        if df.empty:
            raise TraceError(f"trace {name!r}: the train and power traces have no (dataset, network, optimizer, batch size) in common")
        df["energy_per_epoch"] = df.time_per_epoch * df.average_power
        self.df = df
        self.max_power = df.power_limit.max().item()

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, gpu: str) -> Trace:
        """``summary_train.csv`` and ``summary_power_<gpu>.csv`` from ``directory``."""
        d = Path(directory)
        power = d / f"summary_power_{gpu}.csv"
        if not power.is_file():
            have = sorted(p.name[len("summary_power_") : -4] for p in d.glob("summary_power_*.csv"))
            raise TraceError(f"{d}: no power trace for GPU {gpu!r} (summary_power_{gpu}.csv); GPUs there: {have}")
        return cls(d / "summary_train.csv", power, name=gpu)

    def datasets(self) -> list[str]:
        """Datasets with at least one (batch size, power limit) in the merged trace."""
        return sorted(self.df.dataset.unique().tolist())

    def largest_batch_size(self, dataset: str) -> int:
        """The largest batch size of ``dataset`` in the power trace (what fits in the GPU's memory)."""
        rows = self.power.loc[self.power.dataset == dataset]
        if rows.empty:
            raise TraceError(f"trace {self.name!r}: the power trace has no dataset {dataset!r}")
        return int(rows.batch_size.max())


def zeus_job(dataset: str, trace: Trace) -> Job:
    """The Zeus artifacts' job spec for ``dataset``, its default batch size capped by the GPU's largest."""
    if dataset not in ZEUS_JOB_DEFAULTS:
        raise TraceError(f"unknown dataset {dataset!r}: built-in job specs exist for {sorted(ZEUS_JOB_DEFAULTS)}; give a jobs file")
    network, optimizer, target, max_epochs, b0, lr = ZEUS_JOB_DEFAULTS[dataset]
    return Job(dataset, network, optimizer, target, max_epochs, min(b0, trace.largest_batch_size(dataset)), lr)


def read_jobs(data: str | os.PathLike | pd.DataFrame) -> dict[str, Job]:
    """Job specs per dataset from a jobs table (columns :data:`JOB_COLUMNS`)."""
    df = _frame(data, "jobs file")
    _require(df, JOB_COLUMNS, "jobs file")
    for column in ("max_epochs", "default_bs"):
        _positive(df, column, "jobs file", integer=True)
    jobs: dict[str, Job] = {}
    for rec in df.itertuples(index=False):
        dataset = str(rec.dataset)
        if dataset in jobs:
            raise TraceError(f"jobs file: dataset {dataset!r} appears twice")
        target = float(rec.target_metric)
        if not math.isfinite(target):
            raise TraceError(f"jobs file: dataset {dataset!r}: target_metric {rec.target_metric!r} is not a number")
        jobs[dataset] = Job(dataset, str(rec.network), str(rec.optimizer), target, int(rec.max_epochs), int(rec.default_bs))
    return jobs


def read_groups(data: str | os.PathLike | pd.DataFrame, datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """A validated groups table, each group's submissions in start-time order.

    Rows of a group that are not sorted by start time are sorted (stably)
    and a warning says how many groups were affected; groups keep the order
    of their first appearance. Refused with :class:`TraceError`: missing
    columns, non-finite or negative times, an end before its start, a
    non-positive runtime ratio, a group with two datasets, and (when
    ``datasets`` is given) a dataset not among them.
    """
    df = _frame(data, "groups file", dtype={"group": str, "dataset": str})
    _require(df, GROUP_COLUMNS, "groups file")
    df = df.loc[:, list(GROUP_COLUMNS)].copy()
    df["group"] = df["group"].astype(str)
    df["dataset"] = df["dataset"].astype(str)
    for column in ("start_time", "end_time", "runtime_ratio"):
        values = pd.to_numeric(df[column], errors="coerce")
        if values.isna().any():
            i = int(np.argmax(values.isna().to_numpy()))
            raise TraceError(f"groups file: row {i}: {column} = {df[column].iloc[i]!r} is not a number")
        df[column] = values.astype(np.float64)
    t0 = df.start_time.to_numpy()
    t1 = df.end_time.to_numpy()
    ratio = df.runtime_ratio.to_numpy()
    checks = [
        (~np.isfinite(t0) | (t0 < 0), "start_time must be a finite time >= 0"),
        (~np.isfinite(t1) | (t1 < 0), "end_time must be a finite time >= 0"),
        (t1 < t0, "end_time is before start_time"),
        (~np.isfinite(ratio) | (ratio <= 0), "runtime_ratio must be a positive finite number"),
    ]
    for bad, message in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise TraceError(f"groups file: row {i} (group {df.group.iloc[i]!r}): {message} (start {t0[i]!r}, end {t1[i]!r}, ratio {ratio[i]!r})")
    per_group = df.groupby("group", sort=False).dataset.nunique()
    if (per_group > 1).any():
        g = per_group.index[int(np.argmax((per_group > 1).to_numpy()))]
        raise TraceError(f"groups file: group {g!r} has rows of several datasets {sorted(df.loc[df.group == g].dataset.unique())}")
    if datasets is not None:
        unknown = sorted(set(df.dataset.unique()) - set(datasets))
        if unknown:
            raise TraceError(f"groups file: unknown dataset(s) {unknown}; the trace and job specs cover {sorted(datasets)}")
    order = pd.Categorical(df.group, categories=pd.unique(df.group), ordered=True)
    df["_order"] = order.codes
    df["_row"] = np.arange(len(df))
    unsorted = df.groupby("_order", sort=False).start_time.apply(lambda s: not s.is_monotonic_increasing)
    n_unsorted = int(unsorted.sum())
    interleaved = not np.all(np.diff(df._order.to_numpy()) >= 0) if len(df) > 1 else False
    if n_unsorted:
        logger.warning("groups file: %d group(s) were not sorted by start_time; their submissions are replayed in start-time order", n_unsorted)
    if n_unsorted or interleaved:
        df = df.sort_values(["_order", "start_time", "_row"], kind="stable")
    return df.drop(columns=["_order", "_row"]).reset_index(drop=True)


@dataclass
class Workloads:
    """Workloads (job specs on traces) cut into the replay kernels' arrays."""

    jobs: list[Job]
    traces: list[Trace]
    trace_of: list[int]  # per workload: index into traces
    arms: list[list[int]]  # per workload: batch sizes, ascending
    tables: ReplayTables
    index: dict[tuple[int, Job], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.jobs)

    def name(self, w: int) -> str:
        t = self.traces[self.trace_of[w]].name
        return f"{self.jobs[w].dataset}@{t}" if t else self.jobs[w].dataset


def _batch_sizes(df: pd.DataFrame, job: Job) -> list[int]:
    rows = df.loc[(df.dataset == job.dataset) & (df.network == job.network) & (df.optimizer == job.optimizer)]
    return sorted(int(b) for b in rows.batch_size.unique())


def build_workloads(pairs: Sequence[tuple[Trace, Job]]) -> Workloads:
    """Cut each (trace, job) into arms, cells and paths; validated.

    Refused with :class:`TraceError`: a job with no batch size in the trace,
    a default batch size the trace lacks, max epochs below 1, a job without
    any path at its target metric.
    """
    traces: list[Trace] = []
    trace_ids: dict[int, int] = {}
    jobs: list[Job] = []
    trace_of: list[int] = []
    arms_of: list[list[int]] = []
    index: dict[tuple[int, Job], int] = {}
    a_bs: list[int] = []
    a_cell_start: list[int] = []
    a_cell_count: list[int] = []
    a_max_pl: list[float] = []
    a_mean_epe: list[float] = []
    a_mean_tpe: list[float] = []
    c_pl: list[int] = []
    c_path_start: list[int] = []
    c_path_count: list[int] = []
    c_avg_power: list[float] = []
    c_tpe: list[float] = []
    p_te: list[np.ndarray] = []
    p_epe: list[np.ndarray] = []
    p_tpe: list[np.ndarray] = []
    n_paths = 0
    w_arm_start: list[int] = []
    w_arm_count: list[int] = []
    w_default: list[int] = []
    w_max_epochs: list[float] = []
    w_max_power: list[float] = []
    for trace, job in pairs:
        if id(trace) not in trace_ids:
            trace_ids[id(trace)] = len(traces)
            traces.append(trace)
        ti = trace_ids[id(trace)]
        if (ti, job) in index:
            continue
        where = f"trace {trace.name!r}, {job}"
        if isinstance(job.max_epochs, bool) or not isinstance(job.max_epochs, (int, np.integer)) or job.max_epochs < 1:
            raise TraceError(f"{where}: max_epochs must be a positive integer, got {job.max_epochs!r}")
        df = trace.df
        arms = _batch_sizes(df, job)
        if not arms:
            raise TraceError(f"{where}: the trace has no batch size of ({job.dataset}, {job.network}, {job.optimizer})")
        if job.default_bs is None or job.default_bs not in arms:
            raise TraceError(f"{where}: the default batch size {job.default_bs!r} is not in the trace's batch sizes {arms}")
        jdf = job.filter_df(df)
        if jdf.empty:
            raise TraceError(f"{where}: the trace has no training path at target metric {job.target_metric!r}")
        w = len(jobs)
        index[(ti, job)] = w
        jobs.append(job)
        trace_of.append(ti)
        arms_of.append(arms)
        w_arm_start.append(len(a_bs))
        w_arm_count.append(len(arms))
        w_default.append(len(a_bs) + arms.index(job.default_bs))
        w_max_epochs.append(float(job.max_epochs))
        w_max_power.append(float(trace.max_power))
        # The reference's groupby means, one groupby per workload: pandas reduces each
        # (batch size, power limit) group over the same rows in the same order as a
        # groupby of the batch size's rows alone, so the floats are the same.
        cell_means = jdf.groupby(["batch_size", "power_limit"], as_index=False, sort=True).mean(numeric_only=True)
        m_bs = cell_means.batch_size.to_numpy()
        m_pl = cell_means.power_limit.to_numpy()
        m_avg = cell_means.average_power.to_numpy(dtype=np.float64)
        m_tpe = cell_means.time_per_epoch.to_numpy(dtype=np.float64)
        j_bs = jdf.batch_size.to_numpy()
        j_pl_all = jdf.power_limit.to_numpy()
        j_te = jdf.target_epoch.to_numpy(dtype=np.float64)
        j_epe = jdf.energy_per_epoch.to_numpy(dtype=np.float64)
        j_tpe = jdf.time_per_epoch.to_numpy(dtype=np.float64)
        for bs in arms:
            a_bs.append(bs)
            a_cell_start.append(len(c_pl))
            in_arm = j_bs == bs
            if not in_arm.any():
                a_cell_count.append(0)
                a_max_pl.append(math.nan)
                a_mean_epe.append(math.nan)
                a_mean_tpe.append(math.nan)
                continue
            power_df = jdf.loc[in_arm]
            # The reference's expressions, evaluated by pandas: the same floats.
            a_mean_epe.append(float(power_df.energy_per_epoch.mean().item()))
            a_mean_tpe.append(float(power_df.time_per_epoch.mean().item()))
            a_max_pl.append(float(power_df.power_limit.max().item()))
            mine = np.flatnonzero(m_bs == bs)[::-1]  # its power limits, descending
            pls = j_pl_all[in_arm]
            te, epe, tpe = j_te[in_arm], j_epe[in_arm], j_tpe[in_arm]
            a_cell_count.append(len(mine))
            for k in mine.tolist():
                pl = m_pl[k]
                cell = pls == pl
                count = int(np.count_nonzero(cell))
                c_pl.append(int(pl))
                c_avg_power.append(float(m_avg[k]))
                c_tpe.append(float(m_tpe[k]))
                c_path_start.append(n_paths)
                c_path_count.append(count)
                n_paths += count
                p_te.append(te[cell])
                p_epe.append(epe[cell])
                p_tpe.append(tpe[cell])

    def i64(values: list) -> np.ndarray:
        return np.asarray(values, dtype=np.int64).reshape(-1)

    def f64(values: list) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).reshape(-1)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(parts)) if parts else np.zeros(0, np.float64)

    tables = ReplayTables(
        arm_bs=i64(a_bs),
        arm_cell_start=i64(a_cell_start),
        arm_cell_count=i64(a_cell_count),
        arm_max_pl=f64(a_max_pl),
        arm_mean_epe=f64(a_mean_epe),
        arm_mean_tpe=f64(a_mean_tpe),
        cell_pl=i64(c_pl),
        cell_path_start=i64(c_path_start),
        cell_path_count=i64(c_path_count),
        cell_avg_power=f64(c_avg_power),
        cell_tpe=f64(c_tpe),
        path_target_epoch=cat(p_te),
        path_epe=cat(p_epe),
        path_tpe=cat(p_tpe),
        wl_arm_start=i64(w_arm_start),
        wl_arm_count=i64(w_arm_count),
        wl_default_arm=i64(w_default),
        wl_max_epochs=f64(w_max_epochs),
        wl_max_power=f64(w_max_power),
    )
    return Workloads(jobs=jobs, traces=traces, trace_of=trace_of, arms=arms_of, tables=tables, index=index)


def jobs_for(trace: Trace, datasets: Sequence[str], specs: Mapping[str, Job] | None = None) -> dict[str, Job]:
    """Job specs for ``datasets``: from ``specs`` where given, else the Zeus artifacts' defaults."""
    out: dict[str, Job] = {}
    for d in datasets:
        if specs is not None and d in specs:
            out[d] = specs[d]
        elif specs is not None and d not in ZEUS_JOB_DEFAULTS:
            raise TraceError(f"unknown dataset {d!r}: the jobs file covers {sorted(specs)}")
        else:
            out[d] = zeus_job(d, trace)
    return out

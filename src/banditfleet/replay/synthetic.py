"""The built-in fleet: a deterministic synthetic trace and job groups, generated from a seed.

Nothing here is measured: the workload profiles are shaped after the public
Zeus NSDI '23 traces (see docs/replay.md, "The built-in fleet") so that the
policies face the same trade-offs: small batches are slow per epoch, large
batches need more epochs and above a point stop converging, lowering the
power limit saves energy until it slows the GPU more than it saves power, and
the epochs to the target vary from run to run.

:func:`synthetic_trace` builds the train and power traces and the job specs;
:func:`synthetic_fleet` adds recurring groups with Poisson arrivals,
heavy-tailed recurrence counts and overlapping runs;
:func:`export_trace` writes everything in the Zeus trace format.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from banditfleet.job import Job
from banditfleet.replay.fleet import Fleet
from banditfleet.replay.traces import JOB_COLUMNS, Trace, Workloads, build_workloads

__all__ = ["GPU", "POWER_LIMITS", "Profile", "PROFILES", "synthetic_trace", "synthetic_fleet", "generate_groups", "export_trace"]

#: Name of the synthetic GPU (``summary_power_<GPU>.csv``).
GPU = "synthetic"
#: Its power limits in watts, V100-like.
POWER_LIMITS = (100, 125, 150, 175, 200, 225, 250)
_IDLE_POWER = 60.0
_RUNS = 6


@dataclass(frozen=True)
class Profile:
    """A workload's shape; see docs/replay.md for the formulas.

    Attributes:
        dataset, network, optimizer: Names, as in the trace columns.
        batch_sizes: The batch sizes that fit in the GPU's memory.
        default_bs: The user's batch size (b0).
        target_metric, max_epochs: The job spec.
        samples: Training samples per epoch.
        peak_throughput: Samples per second at full power and a saturating batch.
        half_batch: Batch size reaching half of the peak throughput.
        peak_power: Board power (W) of a saturating batch without a limit.
        best_epochs: Epochs to the target at the most sample-efficient batch size.
        efficient_bs: That batch size.
        growth: How fast epochs grow with batch size above it (exponent).
        small_penalty: Extra epochs (fraction) of very small batches (noisy gradients).
        fail_bs: Batch sizes above this start failing to converge.
        spread: Run-to-run spread (log-normal sigma) of the epochs to the target.
        weight: Share of the fleet's groups.
        mean_recurrence: Scale of the heavy-tailed recurrence counts.
    """

    dataset: str
    network: str
    optimizer: str
    batch_sizes: tuple[int, ...]
    default_bs: int
    target_metric: float
    max_epochs: int
    samples: int
    peak_throughput: float
    half_batch: float
    peak_power: float
    best_epochs: float
    efficient_bs: float
    growth: float
    small_penalty: float
    fail_bs: int
    spread: float
    weight: float
    mean_recurrence: float


PROFILES: tuple[Profile, ...] = (
    Profile("imagenet-syn", "resnet50", "adadelta", (32, 64, 128, 192, 256, 384, 512), 256, 0.65, 100,
            1_281_167, 1250.0, 48.0, 245.0, 38.0, 128.0, 0.55, 0.25, 512, 0.06, 1.0, 6.0),
    Profile("cifar100-syn", "shufflenetv2", "adadelta", (16, 32, 64, 128, 256, 512, 1024, 2048, 4096), 1024, 0.6, 100,
            50_000, 9000.0, 96.0, 200.0, 24.0, 128.0, 0.4, 0.35, 2048, 0.10, 2.0, 10.0),
    Profile("librispeech-syn", "deepspeech2", "adamw", (8, 16, 24, 32, 48, 64, 96, 128, 192), 192, 40.0, 16,
            281_241, 260.0, 20.0, 235.0, 4.0, 32.0, 0.5, 0.3, 128, 0.12, 0.8, 5.0),
    Profile("squad-syn", "bert_base_uncased", "adamw", (8, 12, 16, 24, 32, 48), 32, 84.0, 8,
            88_641, 120.0, 10.0, 240.0, 2.0, 12.0, 0.6, 0.2, 48, 0.15, 1.2, 8.0),
    Profile("movielens-syn", "ncf", "adam", (256, 512, 1024, 2048, 4096, 8192, 16384), 1024, 0.41, 100,
            994_169, 900_000.0, 3000.0, 150.0, 12.0, 1024.0, 0.35, 0.15, 8192, 0.12, 1.5, 14.0),
    Profile("sentiment-syn", "bert_base_uncased", "adamw", (8, 16, 32, 64, 128), 128, 0.84, 12,
            1_600_000, 330.0, 12.0, 230.0, 2.0, 16.0, 0.5, 0.2, 128, 0.25, 0.9, 7.0),
)


def _profile_rows(p: Profile, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    b = np.array(p.batch_sizes, np.float64)
    util = b / (b + p.half_batch)
    throughput = p.peak_throughput * util  # samples/s at full power
    need = _IDLE_POWER + (p.peak_power - _IDLE_POWER) * util  # power drawn without a limit
    power_rows = []
    for i, bs in enumerate(p.batch_sizes):
        for pl in POWER_LIMITS:
            if pl >= need[i]:
                speed, avg = 1.0, need[i]
            else:
                # Capped: clocks drop, throughput falls less than power (DVFS).
                speed = ((pl - _IDLE_POWER) / (need[i] - _IDLE_POWER)) ** 0.6
                avg = 0.97 * pl
            tpe = p.samples / (throughput[i] * speed)
            power_rows.append((p.dataset, p.network, bs, p.optimizer, pl, round(tpe, 4), round(avg * (1.0 + 0.003 * rng.standard_normal()), 4)))
    power = pd.DataFrame(power_rows, columns=["dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power"])
    epochs = p.best_epochs * (1.0 + np.maximum(b / p.efficient_bs - 1.0, 0.0) ** p.growth * 0.8 + p.small_penalty * np.maximum(p.efficient_bs / b - 1.0, 0.0) ** 0.5)
    train_rows = []
    for i, bs in enumerate(p.batch_sizes):
        over = math.log2(bs / p.fail_bs) if bs > p.fail_bs else 0.0
        fail_p = min(1.0, 0.45 * over) if bs != p.default_bs else 0.0
        lr = 1e-3 * math.sqrt(bs / p.default_bs)
        for run in range(1, _RUNS + 1):
            e = math.ceil(epochs[i] * math.exp(p.spread * rng.standard_normal()))
            if bs == p.default_bs:
                e = min(e, p.max_epochs)  # the user's default always converges
            failed = rng.random() < fail_p or e > p.max_epochs
            train_rows.append((p.dataset, p.network, bs, p.optimizer, float(f"{lr:.3g}"), run, p.target_metric, np.nan if failed else float(max(e, 1))))
    train = pd.DataFrame(train_rows, columns=["dataset", "network", "batch_size", "optimizer", "learning_rate", "run", "target_metric", "target_epoch"])
    return train, power


def synthetic_trace(seed: int = 0, profiles: tuple[Profile, ...] = PROFILES) -> tuple[Trace, dict[str, Job]]:
    """The synthetic train and power traces (one GPU, :data:`GPU`) and each dataset's job spec."""
    rng = np.random.default_rng([seed, 0x7A17])
    trains, powers = [], []
    for p in profiles:
        t, w = _profile_rows(p, rng)
        trains.append(t)
        powers.append(w)
    train = pd.concat(trains, ignore_index=True)
    power = pd.concat(powers, ignore_index=True)
    jobs = {p.dataset: Job(p.dataset, p.network, p.optimizer, p.target_metric, p.max_epochs, p.default_bs) for p in profiles}
    return Trace(train, power, name=GPU), jobs


def _group_ids(seed: int, n: int) -> list[str]:
    prefix = f"banditfleet-synthetic-{seed}-".encode()
    return [hashlib.md5(prefix + str(i).encode()).hexdigest() for i in range(n)]


def synthetic_fleet(groups: int = 5000, seed: int = 0, profiles: tuple[Profile, ...] = PROFILES, horizon_days: float = 60.0) -> Fleet:
    """``groups`` recurring job groups over the synthetic trace, deterministic in ``seed``."""
    trace, jobs = synthetic_trace(seed, profiles)
    workloads = build_workloads([(trace, jobs[p.dataset]) for p in profiles])
    fleet = generate_groups(
        workloads, groups, seed, [p.weight for p in profiles], [p.mean_recurrence for p in profiles], horizon_days
    )
    fleet.source = f"built-in synthetic fleet (seed {seed})"
    return fleet


def generate_groups(
    workloads: Workloads,
    groups: int,
    seed: int = 0,
    weights: Sequence[float] | None = None,
    mean_recurrence: Sequence[float] | None = None,
    horizon_days: float = 60.0,
) -> Fleet:
    """``groups`` recurring job groups over ``workloads``, deterministic in ``seed``.

    Each group runs one workload (drawn by ``weights``, uniform by default)
    and recurs ``1 + floor(m * Lomax(1.4))`` times, capped at 2000 (``m`` is
    the workload's ``mean_recurrence``, 8 by default), as a Poisson process
    whose mean gap is the workload's typical runtime times a log-normal
    factor (median 1.5), so that many submissions start while an earlier one
    still runs. The first submission starts uniformly in ``horizon_days``.
    Runtimes are the workload's typical time to accuracy (its default batch
    size at the highest power limit) times a log-normal factor (sigma 0.4),
    rounded to whole seconds; ``runtime_ratio`` is a runtime over its
    dataset's mean runtime, as in the Zeus artifacts' group trace.
    """
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    t = workloads.tables
    n_wl = len(workloads)
    weights = np.ones(n_wl) if weights is None else np.asarray(weights, np.float64)
    scales = np.full(n_wl, 8.0) if mean_recurrence is None else np.asarray(mean_recurrence, np.float64)
    # Typical runtime of a workload: the mean time to accuracy of its default at full power.
    typical = np.empty(n_wl)
    for w in range(n_wl):
        a = t.wl_default_arm[w]
        c = t.arm_cell_start[a]  # highest power limit first
        s, n = t.cell_path_start[c], t.cell_path_count[c]
        te = t.path_target_epoch[s : s + n]
        te = np.where(np.isnan(te), t.wl_max_epochs[w], te) if n else np.array([t.wl_max_epochs[w]])
        typical[w] = max(float(np.mean(te) * (t.path_tpe[s] if n else 1.0)), 1.0)
    rng = np.random.default_rng([seed, 0xF1EE7])
    wl = rng.choice(n_wl, size=groups, p=weights / weights.sum()).astype(np.int64)
    counts = (1 + np.minimum(np.floor(scales[wl] * rng.pareto(1.4, groups)), 1999)).astype(np.int64)
    starts = np.zeros(groups, np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    total = int(counts.sum())
    group_of = np.repeat(np.arange(groups), counts)
    gap = typical[wl] * 1.5 * np.exp(0.8 * rng.standard_normal(groups))
    first = rng.uniform(0.0, horizon_days * 86400.0, groups)
    steps = rng.exponential(1.0, total) * gap[group_of]
    steps[starts] = 0.0
    csum = np.cumsum(steps)
    start_time = np.round(first[group_of] + csum - csum[starts][group_of])
    duration = np.maximum(np.round(typical[wl][group_of] * np.exp(0.4 * rng.standard_normal(total))), 1.0)
    end_time = start_time + duration
    per_wl = np.bincount(wl[group_of], minlength=n_wl)
    mean_by_wl = np.bincount(wl[group_of], weights=duration, minlength=n_wl) / np.maximum(per_wl, 1)
    ratio = duration / mean_by_wl[wl[group_of]]
    return Fleet(
        workloads=workloads,
        group_ids=_group_ids(seed, groups),
        group_wl=wl,
        sub_start=starts,
        sub_count=counts,
        start_time=start_time,
        end_time=end_time,
        runtime_ratio=ratio,
        source=f"{groups} generated groups (seed {seed})",
        meta={"seed": seed},
    )


def export_trace(fleet: Fleet, directory: str | os.PathLike) -> list[Path]:
    """Write ``fleet`` in the Zeus trace format; returns the files written.

    ``summary_train.csv`` and ``summary_power_<gpu>.csv`` (the fleet's trace),
    ``groups.csv`` (group, start_time, end_time, dataset, runtime_ratio) and
    ``jobs.csv`` (dataset, network, optimizer, target_metric, max_epochs,
    default_bs). Floats are written so that they read back exactly.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    traces = fleet.workloads.traces
    if len(traces) != 1:
        raise ValueError("a fleet over several traces cannot be exported as one trace directory")
    trace = traces[0]
    gpu = trace.name or GPU
    files = [d / "summary_train.csv", d / f"summary_power_{gpu}.csv", d / "groups.csv", d / "jobs.csv"]
    trace.train.to_csv(files[0], index=False, float_format="%.17g")
    trace.power.to_csv(files[1], index=False, float_format="%.17g")
    fleet.groups_frame().to_csv(files[2], index=False, float_format="%.17g")
    jobs = pd.DataFrame(
        [(j.dataset, j.network, j.optimizer, j.target_metric, j.max_epochs, j.default_bs) for j in fleet.workloads.jobs],
        columns=list(JOB_COLUMNS),
    )
    jobs.to_csv(files[3], index=False, float_format="%.17g")
    return files

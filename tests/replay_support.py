"""Helpers of the replay tests: trace location, reference runs, comparisons, random traces."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
TRACE_DIR = REPO.parent / "shared" / "traces" / "zeus-nsdi23"
GPUS = ("v100", "a40", "p100", "rtx6000")


def need_traces() -> Path:
    if not (TRACE_DIR / "summary_train.csv").is_file():
        pytest.skip(f"the public Zeus traces are not at {TRACE_DIR} (<repo root>/../shared/traces/zeus-nsdi23)")
    return TRACE_DIR


_frames: dict[str, pd.DataFrame] = {}


def frame(name: str) -> pd.DataFrame:
    if name not in _frames:
        _frames[name] = pd.read_csv(need_traces() / name)
    return _frames[name]


def train_df() -> pd.DataFrame:
    return frame("summary_train.csv")


def power_df(gpu: str) -> pd.DataFrame:
    return frame(f"summary_power_{gpu}.csv")


def adler(text: str) -> int:
    return zlib.adler32(text.encode("utf-8"))


def ref_sim(train, power, seed, concurrency=False, window_size=0):
    from zeus._legacy.policy import JITPowerLimitOptimizer as RPLO
    from zeus._legacy.policy import PruningGTSBatchSizeOptimizer as RBSO
    from zeus._legacy.simulate import Simulator as RSim

    return RSim(train, power, RBSO(seed=seed, concurrency=concurrency, window_size=window_size, verbose=False), RPLO(verbose=False), seed=seed, verbose=False)


def our_sim(train, power, seed, concurrency=False, window_size=0):
    from banditfleet import JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer, Simulator

    bso = PruningGTSBatchSizeOptimizer(seed=seed, concurrency=concurrency, window_size=window_size, verbose=False)
    return Simulator(train, power, bso, JITPowerLimitOptimizer(verbose=False), seed=seed, verbose=False)


def ref_job(job):
    from zeus._legacy.job import Job as RJob

    return RJob(job.dataset, job.network, job.optimizer, job.target_metric, job.max_epochs, job.default_bs, job.default_lr)


def outcome(fn):
    """("ok", history) or ("RuntimeError"/"ValueError", message) of a simulator call."""
    try:
        return "ok", fn()
    except RuntimeError as exc:
        return "RuntimeError", str(exc)
    except ValueError as exc:
        return "ValueError", str(exc)


def assert_same_history(ref, ours, context=""):
    assert len(ref) == len(ours), f"{context}: {len(ref)} reference entries, {len(ours)} ours"
    for i, (a, b) in enumerate(zip(ref, ours)):
        where = f"{context}: entry {i}: reference {a}, ours {b}"
        assert (int(a.bs), int(a.pl), bool(a.reached)) == (b.bs, b.pl, b.reached), where
        assert b.energy == pytest.approx(float(a.energy), rel=1e-9, abs=0), where
        assert b.time == pytest.approx(float(a.time), rel=1e-9, abs=0), where


def random_groups(rng: np.random.Generator, n: int, mean_gap: float, mean_duration: float, name: str = "g", dataset: str = "d") -> pd.DataFrame:
    """Sorted submissions with exponential gaps and durations (overlaps happen)."""
    start = np.round(np.cumsum(rng.exponential(mean_gap, n)))
    duration = np.maximum(np.round(rng.exponential(mean_duration, n)), 1.0)
    return pd.DataFrame(
        {
            "group": name,
            "start_time": start,
            "end_time": start + duration,
            "dataset": dataset,
            "runtime_ratio": rng.lognormal(0.0, 0.3, n),
        }
    )

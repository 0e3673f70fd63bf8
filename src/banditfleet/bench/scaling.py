"""How time and memory grow with the fleet, and what numba's compilation costs.

:func:`scaling` times Thompson-sampling ``predict_many`` and ``observe_many``
(learned and known reward precision) for fleets from 100 to 1,000,000 jobs
(at a fixed number of arms) and from 2 to 64 arms (at a fixed number of
jobs). Every point reports the median time per call, the cost per job and
per job-arm, and the memory per job: the state arrays in use, the arrays as
allocated (capacity grows geometrically), and everything tracemalloc saw
while the fleet was built (numpy arrays and Python objects such as the key
dictionary).

:func:`compile_times` runs a fresh Python process that imports banditfleet
and makes the first call of every kernel family (GTS, PruningGTS, power
limits, replay), with an empty numba cache directory (``cold``: numba
compiles everything) and again with the filled one (``warm``: it loads the
cache), or with the default on-disk cache next to the sources.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from banditfleet.bench.cases import Config
from banditfleet.bench.fleets import KNOWN_REWARD_PRECISION, arm_values
from banditfleet.bench.runner import Timing, cache_sizes, measure

__all__ = ["JOBS_FULL", "JOBS_QUICK", "ARMS_FULL", "ARMS_QUICK", "Point", "fleet_for_scaling", "scaling", "compile_times"]

JOBS_FULL = (100, 1_000, 10_000, 100_000, 1_000_000)
JOBS_QUICK = (100, 1_000, 10_000)
ARMS_FULL = (2, 4, 8, 16, 32, 64)
ARMS_QUICK = (2, 8, 32)
SERIES = ("predict", "observe-learned", "observe-known")
#: observe_many calls timed per point: the same at every size, so reward
#: histories (which learned-precision refits read whole) end equally long.
OBSERVE_REPEATS = 8


@dataclass
class Point:
    """One fleet size of one series."""

    series: str
    jobs: int
    arms: int
    timing: Timing
    state_bytes_per_job: float
    allocated_bytes_per_job: float
    traced_bytes_per_job: float

    @property
    def ns_per_job(self) -> float:
        return self.timing.median / self.jobs * 1e9

    @property
    def ns_per_job_arm(self) -> float:
        return self.ns_per_job / self.arms

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ns_per_job"] = self.ns_per_job
        d["ns_per_job_arm"] = self.ns_per_job_arm
        return d


def _store_bytes(opt: Any) -> tuple[int, int]:
    """(bytes of the state arrays in use, bytes of every array the store holds)."""
    store = opt._store
    used = sum(a.nbytes for a in store.export_arrays().values())
    allocated = 0
    for value in vars(store).values():
        if isinstance(value, np.ndarray):
            allocated += value.nbytes
        elif isinstance(value, tuple) and value and all(isinstance(a, np.ndarray) for a in value):
            allocated += sum(a.nbytes for a in value)
    return used, allocated


def fleet_for_scaling(n: int, arms: int, learn: bool) -> tuple[Any, np.ndarray, int]:
    """A GTS fleet of ``n`` jobs x ``arms`` arms in Thompson sampling (two observations per
    arm, in one ``observe_many``); returns (optimizer, rows, bytes tracemalloc saw)."""
    from banditfleet.gts import GTSBatchSizeOptimizer

    values = arm_values(arms)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        opt = GTSBatchSizeOptimizer(
            learn_reward_precision=learn, reward_precision=0.0 if learn else KNOWN_REWARD_PRECISION, verbose=False
        )
        rows = opt.register_jobs(range(n), np.tile(values, (n, 1)))
        rng = np.random.default_rng(0)
        obs_rows = rows[np.repeat(np.arange(n), 2 * arms)]
        obs_bs = np.tile(np.concatenate([values, values]), n)
        opt.observe_many(obs_rows, obs_bs, rng.gamma(4.0, 250.0, len(obs_rows)))
        del obs_rows, obs_bs
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return opt, rows, traced


def _points(n: int, arms: int, cfg: Config) -> list[Point]:
    out = []
    values = arm_values(arms)
    for learn in (True, False):
        opt, rows, traced = fleet_for_scaling(n, arms, learn)
        used, allocated = _store_bytes(opt)
        mem = dict(state_bytes_per_job=used / n, allocated_bytes_per_job=allocated / n, traced_bytes_per_job=traced / n)
        if learn:
            t = measure(lambda: opt.predict_many(rows), cfg)
            out.append(Point("predict", n, arms, t, **mem))
        costs = np.random.default_rng(1).gamma(4.0, 250.0, n)
        batches = [values[(a + np.arange(n)) % arms] for a in range(arms)]
        k = {"i": 0}

        def observe() -> None:
            opt.observe_many(rows, batches[k["i"] % arms], costs)
            k["i"] += 1

        t = measure(observe, cfg, repeats=OBSERVE_REPEATS)
        out.append(Point("observe-learned" if learn else "observe-known", n, arms, t, **mem))
        del opt, rows
        gc.collect()
    return out


def scaling(
    cfg: Config,
    jobs: Sequence[int] | None = None,
    arms: Sequence[int] | None = None,
    arms_at_jobs: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Time and memory against the number of jobs (at ``cfg.arms`` arms) and against the
    number of arms (at ``arms_at_jobs`` jobs, default ``min(cfg.jobs, 10,000)``)."""
    jobs = tuple(jobs) if jobs is not None else (JOBS_QUICK if cfg.quick else JOBS_FULL)
    arms = tuple(arms) if arms is not None else (ARMS_QUICK if cfg.quick else ARMS_FULL)
    at = arms_at_jobs if arms_at_jobs is not None else min(cfg.jobs, 10_000)
    steps = [("jobs", n, cfg.arms) for n in jobs] + [("arms", at, a) for a in arms]
    by: dict[str, list[dict[str, Any]]] = {"jobs": [], "arms": []}
    for i, (axis, n, a) in enumerate(steps):
        if progress is not None:
            progress(i, len(steps), f"scaling {n:,} jobs x {a} arms")
        by[axis].extend(p.to_dict() for p in _points(n, a, cfg))
    if progress is not None:
        progress(len(steps), len(steps), "scaling done")
    return {
        "series": list(SERIES),
        "jobs_axis": {"arms": cfg.arms, "points": by["jobs"]},
        "arms_axis": {"jobs": at, "points": by["arms"]},
        "caches": cache_sizes(),
        "observe_repeats": OBSERVE_REPEATS,
    }


# ------------------------------------------------------------ compilation
FIRST_CALLS = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
from banditfleet import GTSBatchSizeOptimizer, JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer
t_import = time.perf_counter() - t0
parts = {}

def part(name, fn):
    t = time.perf_counter()
    fn()
    parts[name] = time.perf_counter() - t

def gts():
    for learn in (True, False):
        o = GTSBatchSizeOptimizer(learn_reward_precision=learn, reward_precision=0.0 if learn else 1.0, verbose=False)
        rows = o.register_jobs(range(4), np.tile(np.array([8, 16, 32]), (4, 1)))
        for _ in range(4):
            o.observe_many(rows, o.predict_many(rows), np.ones(4) + rows.array)
        o.predict_many(rows, parallel=True)
        o.observe(0, o.predict(0), 2.0)

def pruning():
    o = PruningGTSBatchSizeOptimizer(window_size=4, verbose=False)
    rows = o.register_jobs(range(4), np.tile(np.array([8, 16, 32]), (4, 1)), default_bs=16)
    for k in range(12):
        bs = o.predict_many(rows)
        o.observe_many(rows, bs, np.ones(4) + rows.array + k, bs <= 16)
    o.observe(0, o.predict(0), 3.0, True)

def power():
    o = JITPowerLimitOptimizer(verbose=False)
    rows = o.rows(range(4))
    o.observe_many(rows, np.full(4, 8), np.full(4, 200), np.ones(4))
    o.predict_many(rows, np.full(4, 8))
    o.observe(0, 8, 250, 2.0)
    o.predict(0, 8)

def replay():
    from banditfleet.replay.fleet import replay_fleet
    from banditfleet.replay.synthetic import synthetic_fleet
    replay_fleet(synthetic_fleet(3))

for name, fn in (("gts", gts), ("pruning", pruning), ("power", power), ("replay", replay)):
    part(name, fn)
print(json.dumps({"import": t_import, "parts": parts, "first_calls": sum(parts.values()), "total": time.perf_counter() - t0}))
"""


def _first_calls(env: dict[str, str], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", FIRST_CALLS], env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the first-call process failed: {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = wall
    return out


#: The first command of a new user (README's first command, ``banditfleet replay``: the
#: built-in fleet of 5,000 groups, tables on the terminal, no files).
CLI_FIRST_RUN = ("replay", "--no-progress")

#: Target of the first run after install (issue 12): a whole cold process, seconds.
FIRST_RUN_TARGET_S = 15.0


def _cli_run(env: dict[str, str], timeout: float) -> dict[str, Any]:
    """A fresh ``banditfleet replay`` process (:data:`CLI_FIRST_RUN`) under
    :mod:`banditfleet.bench.compile_profile`: its wall seconds (``wall``, the whole
    process) and its compile profile (``profile``: CPU seconds of import,
    compiling and the rest, and the per-kernel table)."""
    with tempfile.TemporaryDirectory(prefix="banditfleet-cli-") as tmp:
        out = Path(tmp) / "profile.json"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "banditfleet.bench.compile_profile", "--json", str(out), "--top", "0", "--",
                               *CLI_FIRST_RUN], env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"the CLI process failed: {proc.stderr.strip()[-2000:]}")
        profile = json.loads(out.read_text())
    return {"wall": wall, "profile": profile}


def compile_times(cold: bool = True, timeout: float = 900.0) -> dict[str, Any]:
    """Import plus first calls of every kernel family in a fresh process.

    ``cold``: with an empty ``NUMBA_CACHE_DIR`` (numba compiles every kernel),
    then ``warm``: the same folder again (numba loads what it just cached).
    Without ``cold``: ``warm`` only, with numba's default on-disk cache (or the
    caller's ``NUMBA_CACHE_DIR``), which the benchmark run has just filled.
    Each entry holds ``import``, per-family ``parts``, ``first_calls`` and the
    process's wall time, in seconds. ``cli`` measures README's first command as
    a whole process (:data:`CLI_FIRST_RUN`): ``cold`` in another empty cache
    (the first run after install, against ``target`` seconds), ``warm`` right
    after, as wall seconds, with each run's compile profile in
    ``cold_profile``/``warm_profile`` (:func:`_cli_run`).
    """
    out: dict[str, Any] = {}
    if cold:
        with tempfile.TemporaryDirectory(prefix="banditfleet-numba-cache-") as cache_dir:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
            out["cold"] = _first_calls(env, timeout)
            out["warm"] = _first_calls(env, timeout)
            out["warm"]["cache"] = "the folder the cold run filled"
        with tempfile.TemporaryDirectory(prefix="banditfleet-numba-cache-") as cache_dir:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
            cold_run, warm_run = _cli_run(env, timeout), _cli_run(env, timeout)
            out["cli"] = {"command": " ".join(CLI_FIRST_RUN), "target": FIRST_RUN_TARGET_S, "cold": cold_run["wall"], "warm": warm_run["wall"],
                          "cold_profile": cold_run["profile"], "warm_profile": warm_run["profile"]}
    else:
        out["warm"] = _first_calls(dict(os.environ), timeout)
        out["warm"]["cache"] = os.environ.get("NUMBA_CACHE_DIR") or "numba's default, next to the sources"
        warm_run = _cli_run(dict(os.environ), timeout)
        out["cli"] = {"command": " ".join(CLI_FIRST_RUN), "target": FIRST_RUN_TARGET_S, "warm": warm_run["wall"], "warm_profile": warm_run["profile"]}
    return out

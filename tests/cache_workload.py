"""Run every kernel family once; then report which numba dispatchers compiled.

Used by tests/test_kernel_cache.py in fresh processes (``python cache_workload.py OUT [all|cli|simulator]``;
``cli``: only the command line (replay with every policy, the first thing a new user runs, and demo); ``simulator``: only
the reference-shaped Simulator):
the first run fills numba's on-disk cache, the second must load everything from it.
Writes JSON: for each kernel module, the dispatchers that have signatures, with their
cache hits and misses.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

FAMILIES = ("streams", "distributions", "stats", "thompson", "pruning", "power", "replay", "lifecycle", "handle", "fleet", "frames")


def cli_workload(tmp: Path) -> None:
    """What a new user runs first: the command line's replay, with its default outputs;
    then the replay's other policies and ``banditfleet demo`` (both of its policies)."""
    from banditfleet.cli import main

    assert main(["replay", "--synthetic-groups", "12", "--no-progress", "--no-plots", "--out", str(tmp / "cli")]) == 0
    assert main(["replay", "--synthetic-groups", "12", "--no-progress", "--policy", "gts", "gts-known", "grid-search", "default", "oracle",
                 "--reward-precision", "1e-12"]) == 0
    for policy in ("gts", "gts-known"):
        assert main(["demo", "--jobs", "40", "--rounds", "6", "--policy", policy, "--no-progress"]) == 0


def simulator_workload(tmp: Path) -> None:
    """The reference-shaped Simulator: groups and sequential jobs, PruningGTS and GTS."""
    from banditfleet import GTSBatchSizeOptimizer, JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer, Simulator
    from banditfleet.replay.synthetic import export_trace, synthetic_fleet

    fleet = synthetic_fleet(8, seed=2)
    export_trace(fleet, tmp / "trace")
    import pandas as pd

    train = pd.read_csv(tmp / "trace" / "summary_train.csv")
    power = pd.read_csv(tmp / "trace" / "summary_power_synthetic.csv")
    g = int(np.argmax(fleet.sub_count))
    job = fleet.workloads.jobs[int(fleet.group_wl[g])]
    for bso in (PruningGTSBatchSizeOptimizer(seed=1, concurrency=True, verbose=False), GTSBatchSizeOptimizer(learn_reward_precision=True, seed=1, verbose=False)):
        sim = Simulator(train, power, bso, JITPowerLimitOptimizer(verbose=False), seed=1, verbose=False)
        try:
            sim.simulate_one_alibaba_group(job, fleet.group_frame(g), 2.0, 0.5)
            sim.simulate_one_job(job, 3, 2.0, 0.5)
        except (RuntimeError, ValueError):
            pass  # a replay error (GTS may launch an unprofiled batch size): the kernels still ran


def workload(tmp: Path) -> None:
    from banditfleet import GTSBatchSizeOptimizer, JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer
    from banditfleet.kernels.distributions import integers, normal, sample_without_replacement, standard_normal
    from banditfleet.kernels.stats import array_mean, fit_reset, population_variance
    from banditfleet.kernels.streams import allocate_streams, next_double, seed_streams
    from banditfleet.pruning import PruningExploreManager
    from banditfleet.replay.fleet import Setting, replay_fleet
    from banditfleet.replay.synthetic import synthetic_fleet

    arms = [8, 16, 32, 64]
    for learn in (True, False):
        gts = GTSBatchSizeOptimizer(learn_reward_precision=learn, reward_precision=0.0 if learn else 1.0, verbose=False)
        gts.register_jobs(["a", "b"], [arms, arms])
        for _ in range(6):
            bs = gts.predict("a")
            gts.observe("a", bs, 2.0 + bs / 64)
        out = gts.predict_many(["a", "b"])
        gts.observe_many(["a", "b"], out, [1.0, 2.0])
        gts.predict_many(["a", "b"], parallel=True)
        gts.register_job("c", arms)
        gts.observe("c", 8, 1.0)
        gts.remove_job("c")
        gts._store.compact()  # the lifecycle kernel: drops the removed job's history chunks
        gts.predict("a")  # through a handle rebuilt over the compacted arrays
        gts.save(tmp / f"gts{learn}.ckpt")
        GTSBatchSizeOptimizer.load(tmp / f"gts{learn}.ckpt").predict("b")
    for window in (0, 3):
        pr = PruningGTSBatchSizeOptimizer(window_size=window, verbose=False)
        pr.register_jobs(["a", "b"], [arms, arms], default_bs=16)
        for _ in range(12):
            bs = pr.predict("a")
            pr.observe("a", bs, 1.0 + bs / 32, True)
        for _ in range(12):
            got = pr.predict_many(["b"])
            pr.observe_many(["b"], got, [1.0], [True])
        pr.exhausted_many(["a", "b"])
        pr.save(tmp / f"pr{window}.ckpt")
        PruningGTSBatchSizeOptimizer.load(tmp / f"pr{window}.ckpt").predict("a")
    mgr = PruningExploreManager(arms, 16)
    bs = mgr.next_batch_size()
    mgr.report_batch_size_result(bs, 1.0, True)
    plo = JITPowerLimitOptimizer(verbose=False)
    for pl in (300, 250, 200, 150, 100):
        plo.observe("a", 32, pl, 1.0 + pl / 100)
    plo.predict("a", 32)
    plo.predict_many(["a"], [32])
    plo.observe_many(["a"], [32], [plo.predict("a", 32)], [2.0])
    plo.save(tmp / "plo.ckpt")
    JITPowerLimitOptimizer.load(tmp / "plo.ckpt")
    streams = allocate_streams(1)
    seed_streams(streams, np.zeros(1, np.int64), np.array([7], np.uint64))
    next_double(streams, 0)
    integers(streams, 0, 0, 10)
    standard_normal(streams, 0)
    normal(streams, 0, 1.0, 2.0)
    sample_without_replacement(streams, 0, 5, 3, np.empty(5, np.int64), np.zeros(5, np.uint8))
    values = np.arange(5.0)
    array_mean(values, 5)
    population_variance(values, 5, np.empty(5))
    fit_reset(values, 5, 1.0, 0.0, 0.0)
    replay_fleet(synthetic_fleet(6, seed=1), [Setting(), Setting(window_size=3)])
    # Recovery walks the journal's frames in kernels.frames.
    with GTSBatchSizeOptimizer.open(tmp / "folder", fsync="never", learn_reward_precision=True, verbose=False) as folder_opt:
        folder_opt.register_jobs(["a"], [arms])
        folder_opt.observe("a", folder_opt.predict("a"), 1.0)
    GTSBatchSizeOptimizer.open(tmp / "folder").close()
    cli_workload(tmp)
    simulator_workload(tmp)


def report() -> dict[str, dict[str, dict[str, list[str]]]]:
    from numba.core.registry import CPUDispatcher

    out: dict[str, dict[str, dict[str, list[str]]]] = {}
    for family in FAMILIES:
        module = importlib.import_module(f"banditfleet.kernels.{family}")
        seen = {}
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__ and obj.signatures:
                stats = obj.stats
                seen[name] = {
                    "hits": [str(k) for k in stats.cache_hits],
                    "misses": [str(k) for k in stats.cache_misses],
                }
        out[family] = seen
    return out


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else "all"
    with tempfile.TemporaryDirectory() as tmp:
        {"all": workload, "cli": cli_workload, "simulator": simulator_workload}[mode](Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(report()))

"""The trace-driven replay: the reference simulator against banditfleet, side by side.

* ``per-run``: the public Zeus traces (v100), 6 workloads, groups generated over
  them (Poisson arrivals, overlapping runs). The reference
  (``zeus._legacy.simulate.Simulator.simulate_one_alibaba_group``, as the Zeus
  artifacts' ``run_alibaba.py`` sets it up) replays a sample of the groups,
  banditfleet's fleet replay replays all of them; both are timed per simulated
  run (runs that never start included) in the same run of this module, and
  the sample's histories are checked equal. ``banditfleet-simulator`` is the
  reference-shaped :class:`banditfleet.Simulator`, one group per call (its
  cost per run is dominated by the per-call setup, not the replay).
  Target: the fleet replay is at least 1000x faster per run.
* ``cli-process``: the whole ``banditfleet replay --synthetic-groups 100000 --out DIR``
  process (default outputs, warm cache) per simulated run, against the reference on
  groups of the same fleet exported with ``--export-trace``, run as ``run_alibaba.py``
  runs them; the ``banditfleet bench`` case ``replay.cli-process:zeus``, timed in
  alternating blocks. Target: at least 1000x per run (and 8 s for the process here).
* ``builtin-fleet``: ``banditfleet replay``'s built-in fleet with 100,000 groups
  (millions of runs), generation and replay timed apart. Target: the replay
  (registration included) in under a minute on 2 cores.

``extra_info`` (``--benchmark-json``) holds microseconds per run, runs,
speedups; a table is printed when the module finishes. With
``--benchmark-disable`` (CI) everything is small and only proves it runs.
"""

from __future__ import annotations

import contextlib
import io
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zeus._legacy.simulate", reason="the zeus==0.16.0 reference is not installed")

from banditfleet import JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer, Simulator  # noqa: E402
from banditfleet.replay.fleet import Setting, replay_fleet  # noqa: E402
from banditfleet.replay.synthetic import generate_groups, synthetic_fleet  # noqa: E402
from banditfleet.replay.traces import Trace, build_workloads, jobs_for  # noqa: E402

TRACE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "zeus-nsdi23"
FLEET_GROUPS = 3000
SAMPLE_GROUPS = 12
BUILTIN_GROUPS = 100_000
QUICK = {"fleet": 24, "sample": 2, "builtin": 300}

_ROWS: list[tuple[str, str, float, float]] = []


class _Report:
    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not _ROWS:
            return
        terminalreporter.section("replay: microseconds per simulated run")
        terminalreporter.write_line(f"{'case':<28} {'runs':>10} {'us/run':>12} {'note'}")
        for case, runs, us, note in _ROWS:
            terminalreporter.write_line(f"{case:<28} {runs:>10,.0f} {us:>12,.2f} {note}")


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("banditfleet-replay-report"):
        plugins.register(_Report(), "banditfleet-replay-report")
    yield


def _quick(config) -> bool:
    return bool(config.getoption("benchmark_disable"))


@pytest.fixture(scope="module")
def zeus_fleet(request):
    """Generated groups over the v100 trace, and the reference's timing on a sample of them."""
    if not (TRACE_DIR / "summary_train.csv").is_file():
        pytest.skip(f"the public Zeus traces are not at {TRACE_DIR}")
    import pandas as pd
    from zeus._legacy.job import Job as RJob
    from zeus._legacy.policy import JITPowerLimitOptimizer as RPLO
    from zeus._legacy.policy import PruningGTSBatchSizeOptimizer as RBSO
    from zeus._legacy.simulate import Simulator as RSim

    quick = _quick(request.config)
    train = pd.read_csv(TRACE_DIR / "summary_train.csv")
    power = pd.read_csv(TRACE_DIR / "summary_power_v100.csv")
    trace = Trace(train, power, "v100")
    datasets = trace.datasets()
    jobs = jobs_for(trace, datasets)
    workloads = build_workloads([(trace, jobs[d]) for d in datasets])
    fleet = generate_groups(workloads, QUICK["fleet"] if quick else FLEET_GROUPS, seed=7)
    replay_fleet(fleet.subset(range(2)), [Setting()])  # compile or load the kernels
    # A sample of the groups, up to ~300 submissions (reference CPU time ~2-5 s).
    budget = 40 if quick else 300
    sample, total = [], 0
    for g in np.argsort(-fleet.sub_count, kind="stable")[len(fleet) // 20 :].tolist():
        if total + int(fleet.sub_count[g]) <= budget:
            sample.append(g)
            total += int(fleet.sub_count[g])
        if len(sample) >= (QUICK["sample"] if quick else SAMPLE_GROUPS) * 4:
            break
    calls = [0]
    histories = {}
    # One simulator (the trace merge is done once); each group gets its own seeded optimizers.
    sim = RSim(train, power, RBSO(verbose=False), RPLO(verbose=False), verbose=False)
    run_job = sim._run_job

    def counted(*args, **kwargs):
        calls[0] += 1
        return run_job(*args, **kwargs)

    sim._run_job = counted
    ref_seconds = 0.0
    for g in sample:
        seed = zlib.adler32(fleet.group_ids[g].encode("utf-8"))
        sim.bso = RBSO(seed=seed, concurrency=True, verbose=False)
        sim.plo = RPLO(verbose=False)
        sim.seed = seed
        j = fleet.workloads.jobs[fleet.group_wl[g]]
        job = RJob(j.dataset, j.network, j.optimizer, j.target_metric, j.max_epochs, j.default_bs)
        frame = fleet.group_frame(g)
        t0 = time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            histories[g] = sim.simulate_one_alibaba_group(job, frame, 2.0, 0.5)
        ref_seconds += time.process_time() - t0
    return {"fleet": fleet, "train": train, "power": power, "sample": sample, "histories": histories, "ref_runs": calls[0], "ref_seconds": ref_seconds}


def test_reference_per_run(benchmark, zeus_fleet):
    z = zeus_fleet
    us = z["ref_seconds"] / z["ref_runs"] * 1e6
    benchmark.extra_info.update(runs=z["ref_runs"], us_per_run=us, groups=len(z["sample"]))
    _ROWS.append(("reference simulator", z["ref_runs"], us, f"{len(z['sample'])} groups, CPU time"))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_fleet_per_run(benchmark, zeus_fleet):
    z = zeus_fleet
    fleet = z["fleet"]
    t0 = time.process_time()
    result = replay_fleet(fleet, [Setting(0.5, 2.0)])
    seconds = time.process_time() - t0
    for g in z["sample"]:
        assert [(e.bs, e.pl, e.reached, e.energy, e.time) for e in z["histories"][g]] == [
            (e.bs, e.pl, e.reached, e.energy, e.time) for e in result.history(0, g)
        ]
    runs = int(result.result.runs.sum())
    us = seconds / runs * 1e6
    ref_us = z["ref_seconds"] / z["ref_runs"] * 1e6
    benchmark.extra_info.update(runs=runs, groups=len(fleet), us_per_run=us, reference_us_per_run=ref_us, speedup=ref_us / us)
    _ROWS.append(("banditfleet fleet replay", runs, us, f"{len(fleet):,} groups, CPU time, {ref_us / us:,.0f}x the reference"))
    benchmark.pedantic(lambda: replay_fleet(fleet, [Setting(0.5, 2.0)]), rounds=1, iterations=1)


def test_simulator_wrapper_per_run(benchmark, zeus_fleet):
    z = zeus_fleet
    fleet = z["fleet"]
    runs = 0
    seconds = 0.0
    sim = Simulator(z["train"], z["power"], PruningGTSBatchSizeOptimizer(verbose=False), JITPowerLimitOptimizer(verbose=False), verbose=False)
    for g in z["sample"]:
        seed = zlib.adler32(fleet.group_ids[g].encode("utf-8"))
        sim.bso = PruningGTSBatchSizeOptimizer(seed=seed, concurrency=True, verbose=False)
        sim.plo = JITPowerLimitOptimizer(verbose=False)
        sim.seed = seed
        job = fleet.workloads.jobs[fleet.group_wl[g]]
        frame = fleet.group_frame(g)
        t0 = time.process_time()
        runs += len(sim.simulate_one_alibaba_group(job, frame, 2.0, 0.5))
        seconds += time.process_time() - t0
    us = seconds / max(runs, 1) * 1e6
    benchmark.extra_info.update(runs=runs, us_per_run=us)
    _ROWS.append(("banditfleet Simulator", runs, us, "one group per call, CPU time (per-call setup dominates)"))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_builtin_fleet(benchmark, request):
    groups = QUICK["builtin"] if _quick(request.config) else BUILTIN_GROUPS
    replay_fleet(synthetic_fleet(5), [Setting()])  # compile or load the kernels
    t0 = time.perf_counter()
    fleet = synthetic_fleet(groups, seed=0)
    generate = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = replay_fleet(fleet, [Setting()])
    seconds = time.perf_counter() - t0
    runs = int(result.result.runs.sum())
    benchmark.extra_info.update(
        groups=groups, submissions=fleet.n_submissions, runs=runs, generate_seconds=generate, replay_seconds=seconds,
        engine_seconds=result.result.seconds, runs_per_second=runs / seconds, rounds=result.result.rounds,
    )
    _ROWS.append((f"built-in fleet {groups:,} groups", runs, seconds / runs * 1e6, f"replay {seconds:.1f} s wall (generation {generate:.1f} s)"))
    if groups == BUILTIN_GROUPS:
        assert seconds < 60, f"{groups} groups took {seconds:.1f} s"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


@pytest.mark.timeout(3600)
def test_cli_process_per_run(benchmark, request):
    from banditfleet.bench.cases import Config, _replay_cli
    from banditfleet.bench.runner import measure_pair

    quick = _quick(request.config)
    cfg = Config.standard(quick=True, cli_groups=200, reference_groups=2) if quick else Config.standard(reference_groups=20)
    prepared = _replay_cli(cfg, {})
    try:
        ours, ref = measure_pair(prepared, cfg)
    finally:
        if prepared.cleanup is not None:
            prepared.cleanup()
    us = ours.median / prepared.units * 1e6
    info = dict(groups=cfg.cli_groups, runs=prepared.units, process_seconds=ours.median, us_per_run=us)
    note = f"whole process {ours.median:.1f} s wall, {cfg.cli_groups:,} groups"
    if ref is not None:
        ref_us = ref.median / prepared.comparison_units * 1e6
        info.update(reference_us_per_run=ref_us, reference_runs=prepared.comparison_units, speedup=ref_us / us)
        note += f", {ref_us / us:,.0f}x the reference per run"
    benchmark.extra_info.update(info)
    _ROWS.append((f"CLI process {cfg.cli_groups:,} groups", prepared.units, us, note))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)

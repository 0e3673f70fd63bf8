"""banditfleet side by side with the reference (zeus==0.16.0 ``zeus._legacy.policy``).

Groups (each has a ``banditfleet`` and a ``zeus`` row, so the table shows both):

* ``scalar-predict`` / ``scalar-observe``: one job through the reference-shaped
  API, one ``predict(job)`` or ``observe(job, bs, cost)`` per call.
  GTS with a learned reward precision ("refit") and, when banditfleet has it,
  PruningGTS (``window_size=10``) in its Thompson-sampling stage. Target: >= 5x.
* ``fleet-predict-10k-x-8`` / ``fleet-observe-10k``: 10,000 jobs x 8 batch
  sizes in the Thompson-sampling stage. banditfleet's ``predict_many`` /
  ``observe_many`` on rows resolved once, against the reference's Python loop
  of ``predict`` / ``observe`` over the same jobs. Target: >= 300x.
* ``power-predict-10k`` / ``power-observe-10k``: JITPowerLimitOptimizer, 10,000
  jobs x 8 batch sizes profiled at 5 power limits, one decision or observation
  per job; banditfleet on rows and on job keys (the keys variant hashes every
  ``Job``, as the reference does on every call).

Every ``banditfleet`` row also times the matching reference loop in the same run
and records in ``extra_info`` (see ``--benchmark-json``) ``speedup_median``
(reference median / ours, wall clock), ``speedup_min`` and ``speedup_cpu``
(process CPU time, steadier on a busy machine), plus ns per call on each side;
a "speedups vs the reference" table is printed when the module finishes. The
reference loops are slow: their rows use ``benchmark.pedantic`` with a few
rounds, and the inline reference timings a few repeats; the reference loop
always covers all 10,000 jobs (no scaling). Reference output (it prints in
places) is suppressed. Both sides run single-threaded with ``verbose=False``.
Fleets are built once per module, and while they are built every decision of
banditfleet is checked equal to the reference's.

With ``--benchmark-disable`` (CI) fleets have 40 jobs and the inline reference
timings are skipped, so the module runs in seconds and only proves it works.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest

zeus_policy = pytest.importorskip("zeus._legacy.policy.optimizer", reason="the zeus==0.16.0 reference is not installed")

from banditfleet.bench.fleets import CostModel, PairedFleet, PowerFleet, arm_values, gts_fleet, pruning_fleet  # noqa: E402
from banditfleet.bench.fleets import quiet as _quiet  # noqa: E402

ARMS = arm_values(8).tolist()  # 8 ... 1024
FLEET_JOBS = 10_000
QUICK_JOBS = 40
REFERENCE_REPEATS = 3


def _quick(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable"))


_SPEEDUPS: list[tuple[str, str, float, float, float, float]] = []


class _SpeedupReport:
    """Prints the speedups measured in this module in pytest's closing summary."""

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not _SPEEDUPS:
            return
        write = terminalreporter.write_line
        write("")
        write("speedups vs the reference (zeus==0.16.0), same run (x = reference time / banditfleet time):")
        write(f"{'group':24s} {'test':46s} {'ours ns/call':>13s} {'zeus ns/call':>13s} {'wall x':>8s} {'cpu x':>8s}")
        for group, name, ours, ref, wall, cpu in _SPEEDUPS:
            write(f"{group:24s} {name:46s} {ours:13.0f} {ref:13.0f} {wall:8.1f} {cpu:8.1f}")


@pytest.fixture(scope="module", autouse=True)
def _speedup_table(request):
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("banditfleet-speedups"):
        plugins.register(_SpeedupReport(), "banditfleet-speedups")
    yield


def _timings(fn: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU seconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return wall, cpu


def _record_speedup(benchmark, ours: Callable[[], object], reference: Callable[[], object], n: int, ours_repeats: int = 30) -> None:
    """Time both sides in this run; put medians, minima and their ratios in ``extra_info``.

    ``speedup_cpu`` compares process CPU time (both sides are single-threaded),
    which other processes on a busy machine disturb less than wall-clock time.
    """
    if benchmark.disabled:
        return
    with _quiet():
        ref, ref_cpu = _timings(reference, REFERENCE_REPEATS)
    mine, mine_cpu = _timings(ours, ours_repeats)
    med = statistics.median
    _SPEEDUPS.append((benchmark.group, benchmark.name, med(mine) / n * 1e9, med(ref) / n * 1e9, med(ref) / med(mine), med(ref_cpu) / med(mine_cpu)))
    benchmark.extra_info.update(
        calls=n,
        ours_median_ms=med(mine) * 1e3,
        reference_median_ms=med(ref) * 1e3,
        ours_ns_per_call=med(mine) / n * 1e9,
        reference_ns_per_call=med(ref) / n * 1e9,
        speedup_median=med(ref) / med(mine),
        speedup_min=min(ref) / min(mine),
        speedup_cpu=med(ref_cpu) / med(mine_cpu),
    )


# The fleets (banditfleet and the reference in lockstep, every decision checked
# equal while they warm up) come from banditfleet.bench.fleets, shared with
# `banditfleet bench`: GTS with a learned reward precision after one
# exploration round per arm, one more observation of every arm and as many
# sampled rounds as arms; PruningGTS
# (window_size=10) through both pruning rounds into Thompson sampling.
Fleet = PairedFleet


def _gts_fleet(n: int) -> Fleet:
    return gts_fleet(n, len(ARMS), n, learn=True, policy=zeus_policy)


def _pruning_fleet(n: int) -> Fleet:
    fleet = pruning_fleet(n, len(ARMS), n, window=10, policy=zeus_policy)
    assert len(fleet.ref.mabs) == n and all(len(m.arms) == len(ARMS) for m in fleet.ref.mabs.values())
    return fleet


FLEETS = {"gts-refit": _gts_fleet, "pruning-w10": _pruning_fleet}


@pytest.fixture(scope="module")
def fleets(request):
    """Fleets built lazily, once per module: {name: Fleet}."""
    n = QUICK_JOBS if _quick(request.config) else FLEET_JOBS
    built: dict[str, Fleet] = {}

    def get(name: str) -> Fleet:
        if name not in built:
            built[name] = FLEETS[name](n)
        return built[name]

    return get


@pytest.fixture(scope="module")
def single(request):
    """One-job fleets for the scalar API, built lazily: {name: Fleet}."""
    built: dict[str, Fleet] = {}

    def get(name: str) -> Fleet:
        if name not in built:
            built[name] = FLEETS[name](1)
        return built[name]

    return get


IMPLS = ["banditfleet", "zeus"]


# ------------------------------------------------------------------ scalar

SCALAR_CALLS = 2000  # rounds of the scalar pedantic runs: keeps reward histories short


@pytest.mark.benchmark(group="scalar-predict")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("policy", list(FLEETS))
def test_scalar_predict(benchmark, single, policy, impl):
    fleet = single(policy)
    job = fleet.jobs[0]
    ours = lambda: fleet.ours.predict(job)  # noqa: E731
    ref = lambda: fleet.ref.predict(job)  # noqa: E731
    if impl == "zeus":
        with _quiet():
            benchmark(ref)
        return
    benchmark(ours)
    _record_speedup(benchmark, lambda: [ours() for _ in range(SCALAR_CALLS)], lambda: [ref() for _ in range(SCALAR_CALLS)], SCALAR_CALLS, 5)


@pytest.mark.benchmark(group="scalar-observe")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("policy", list(FLEETS))
def test_scalar_observe(benchmark, single, policy, impl):
    """``observe(job, bs, cost)`` cycling over the 8 arms; each call refits the arm.

    A fixed number of calls per side (pedantic), so both reward histories grow
    alike; GTS keeps them unbounded, PruningGTS refits on a window of 10.
    """
    fleet = single(policy)
    job = fleet.jobs[0]
    costs = CostModel(1, 8, seed=11)
    calls = [(bs, float(costs(np.array([bs]), k)[0])) for k, bs in enumerate(ARMS)]
    target = fleet.ref if impl == "zeus" else fleet.ours
    state = {"i": 0}

    def one_call():
        bs, cost = calls[state["i"] % len(calls)]
        state["i"] += 1
        target.observe(job, bs, cost)

    rounds = 1 if benchmark.disabled else SCALAR_CALLS
    with _quiet():
        benchmark.pedantic(one_call, rounds=rounds, iterations=1)
    if impl == "banditfleet" and not benchmark.disabled:
        # Same number of calls on fresh one-job fleets, both sides.
        fresh = FLEETS[policy](1)
        fresh_job = fresh.jobs[0]

        def loop(opt):
            return lambda: [opt.observe(fresh_job, bs, cost) for bs, cost in calls * (SCALAR_CALLS // len(calls) // 4)]

        _record_speedup(benchmark, loop(fresh.ours), loop(fresh.ref), SCALAR_CALLS // 4, 3)


# ------------------------------------------------------------------- fleet


@pytest.mark.benchmark(group="fleet-predict-10k-x-8")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("policy", list(FLEETS))
def test_fleet_predict(benchmark, fleets, policy, impl):
    fleet = fleets(policy)
    if impl == "zeus":
        with _quiet():
            benchmark.pedantic(fleet.ref_predict, rounds=REFERENCE_REPEATS, iterations=1)
        return
    benchmark(fleet.ours_predict)
    _record_speedup(benchmark, fleet.ours_predict, fleet.ref_predict, len(fleet.jobs))


@pytest.mark.benchmark(group="fleet-observe-10k")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("policy", list(FLEETS))
def test_fleet_observe(benchmark, fleets, policy, impl):
    """One observation per job, each refitting that arm from its reward history.

    Fixed rounds on both sides (pedantic), cycling the observed arm, so reward
    histories stay comparable between the two implementations.
    """
    fleet = fleets(policy)
    ours, ref = fleet.observe_loops()
    if impl == "zeus":
        with _quiet():
            benchmark.pedantic(ref, rounds=REFERENCE_REPEATS, iterations=1)
        return
    benchmark.pedantic(ours, rounds=1 if benchmark.disabled else 16, iterations=1)
    _record_speedup(benchmark, ours, ref, len(fleet.jobs), 8)


# ---------------------------------------------------------- power limits
# PowerFleet (banditfleet.bench.fleets): 10,000 jobs x 8 batch sizes, each
# profiled at every power limit, on both sides.


@pytest.fixture(scope="module")
def power_fleet(request):
    n = QUICK_JOBS if _quick(request.config) else FLEET_JOBS
    return PowerFleet(n, len(ARMS), n, policy=zeus_policy)


POWER_IMPLS = ["banditfleet-rows", "banditfleet-keys", "zeus"]


@pytest.mark.benchmark(group="power-predict-10k")
@pytest.mark.parametrize("impl", POWER_IMPLS)
def test_power_predict(benchmark, power_fleet, impl):
    f = power_fleet
    if impl == "zeus":
        benchmark.pedantic(f.ref_predict, rounds=5, iterations=1)
        return
    ours = f.ours_predict_rows if impl == "banditfleet-rows" else f.ours_predict_keys
    benchmark(ours)
    _record_speedup(benchmark, ours, f.ref_predict, len(f.jobs))


@pytest.mark.benchmark(group="power-observe-10k")
@pytest.mark.parametrize("impl", POWER_IMPLS)
def test_power_observe(benchmark, power_fleet, impl):
    f = power_fleet
    if impl == "zeus":
        benchmark.pedantic(f.ref_observe, rounds=5, iterations=1)
        return
    ours = f.ours_observe_rows if impl == "banditfleet-rows" else f.ours_observe_keys
    benchmark(ours)
    _record_speedup(benchmark, ours, f.ref_observe, len(f.jobs))

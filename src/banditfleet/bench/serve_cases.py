"""Benchmark cases of ``banditfleet serve`` (group ``serve``).

Every row runs servers and the load generator as separate processes on
127.0.0.1: ``banditfleet serve`` on a fresh folder (default fsync mode,
group commit), Zeus 0.16.0's server on a fresh SQLite file (one uvicorn
worker; see :func:`~banditfleet.bench.serving.zeus_server_python` for the
interpreter it needs), and one load generator per server
(:mod:`~banditfleet.bench.serve_load`, asyncio, one keep-alive connection
per simulated job). A timed call is one command to a load generator, and
its wall time is the time the load took.

* ``serve.cycles-C:zeus`` (C = 1, 16, 128, 1024): C simulated jobs run
  training-run cycles concurrently, as Zeus's client does (``GET
  /jobs/batch_size``, ``POST /report`` with one epoch that reaches the
  target metric, ``PATCH /trials``), against both servers; the ratio is
  cycles/s of ours over Zeus's (target 100 at C = 128). The row's info holds
  p50/p99 latency per request kind for both, and the CPU seconds per cycle
  of each server and of its load generator.
* ``serve.batch-predict:in-process``: decisions through the batch endpoint
  (one request for many jobs) against the same decisions made in process
  by the server's own state (the floor: what HTTP and JSON add); the note
  gives decisions/s (target 200,000). One request at a time, so each
  waits for its own fsync; ``serve.batch-predict-4:in-process`` keeps four
  requests in flight (schedulers, or one pipelining), whose fsyncs group
  commit shares.
* ``serve.microbatch-128:off``: 128 concurrent jobs' cycles on the default
  server (micro-batching on) against one started with ``--no-microbatch``
  (below 1: micro-batching helps). The other rows run the default server.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from banditfleet.bench.cases import Case, Config, Prepared

__all__ = ["CASES", "LEVELS", "percentile", "latency_summary"]

#: Concurrent simulated jobs of the cycle rows.
LEVELS = (1, 16, 128, 1024)

#: Jobs per request of the batch-endpoint row (standard, quick).
BATCH_JOBS = (10_000, 2_000)


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of sorted values, nearest rank."""
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_summary(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """p50, p99 and max (milliseconds) and the count, per request kind and over all kinds."""
    out: dict[str, dict[str, float]] = {}
    everything: list[float] = []
    for kind, values in samples.items():
        v = sorted(values)
        everything.extend(v)
        out[kind] = {"p50_ms": percentile(v, 0.5) * 1e3, "p99_ms": percentile(v, 0.99) * 1e3,
                     "max_ms": (v[-1] * 1e3) if v else math.nan, "count": len(v)}
    everything.sort()
    out["all"] = {"p50_ms": percentile(everything, 0.5) * 1e3, "p99_ms": percentile(everything, 0.99) * 1e3,
                  "max_ms": (everything[-1] * 1e3) if everything else math.nan, "count": len(everything)}
    return out


#: Most concurrent jobs in the one-call check (``budget <= 0``: CI's ``--benchmark-disable`` run).
TINY_JOBS = 8


def _jobs(cfg: Config, level: int) -> int:
    """Concurrent jobs of a row: ``level``, or at most :data:`TINY_JOBS` in the one-call check."""
    return level if cfg.budget > 0 else min(level, TINY_JOBS)


def _cycles_per_call(cfg: Config, jobs: int) -> int:
    """Training-run cycles of each job per timed call (ours)."""
    if cfg.budget <= 0:
        return 1
    target = 600 if cfg.quick else 4_000
    return max(1, math.ceil(target / jobs))


class _Side:
    """One server and its load generator, with what the timed calls measured."""

    def __init__(self, server: Any, load: Any) -> None:
        self.server = server
        self.load = load
        self.registered: set[str] = set()

    def register(self, prefix: str, jobs: int) -> None:
        if prefix not in self.registered:
            answer = self.load.command(op="register", prefix=prefix, jobs=jobs)
            if answer["errors"]:
                raise RuntimeError(f"registration failed: {answer['error_samples']}")
            self.registered.add(prefix)

    def stop(self) -> None:
        try:
            self.load.stop()
        finally:
            self.server.stop()


def _workdir(cfg: Config, shared: dict[str, Any]) -> str:
    if "serve_workdir" not in shared:
        shared["serve_workdir"] = tempfile.mkdtemp(prefix="banditfleet-bench-serve-", dir=cfg.workdir)
        _chain_cleanup(shared, lambda: shutil.rmtree(shared.get("serve_workdir", ""), ignore_errors=True))
    return shared["serve_workdir"]


def _chain_cleanup(shared: dict[str, Any], fn: Callable[[], Any]) -> None:
    before = shared.get("_cleanup")

    def both() -> None:
        try:
            fn()
        finally:
            if before is not None:
                before()

    shared["_cleanup"] = both


def _ours(cfg: Config, shared: dict[str, Any], microbatch: bool = True) -> _Side:
    key = "serve_ours_mb" if microbatch else "serve_ours"
    if key not in shared:
        from banditfleet.bench.serving import LoadGenerator, start_banditfleet_server

        work = _workdir(cfg, shared)
        folder = f"{work}/{key}"
        server = start_banditfleet_server(folder, extra=["--microbatch"] if microbatch else ["--no-microbatch"])
        side = _Side(server, LoadGenerator(server.port))
        shared[key] = side
        _chain_cleanup(shared, side.stop)
    return shared[key]


def _zeus(cfg: Config, shared: dict[str, Any]) -> tuple[_Side | None, str | None]:
    """Zeus's server and its load generator, or (None, why not).

    The interpreter is ``$BANDITFLEET_ZEUS_PYTHON``, else this one; it is not
    probed first (importing Zeus's server takes seconds): a server that does
    not start makes the comparison missing, with its log's last line. In the
    one-call check (``budget <= 0``) Zeus runs only when
    ``$BANDITFLEET_ZEUS_PYTHON`` names its interpreter.
    """
    if "serve_zeus" not in shared:
        import os

        from banditfleet.bench.serving import ZEUS_PYTHON_ENV, LoadGenerator, start_zeus_server

        python = os.environ.get(ZEUS_PYTHON_ENV)
        if cfg.budget <= 0 and not python:
            shared["serve_zeus"] = (None, f"Zeus's server runs in the one-call check only with {ZEUS_PYTHON_ENV} set")
            return shared["serve_zeus"]
        try:
            server = start_zeus_server(_workdir(cfg, shared), python=python or sys.executable)
        except (RuntimeError, TimeoutError, OSError) as exc:
            last = (str(exc).strip().splitlines() or ["?"])[-1]
            shared["serve_zeus"] = (None, f"Zeus 0.16.0's server did not start ({last[:200]}); set {ZEUS_PYTHON_ENV} "
                                          "to a Python that has it (docs/performance.md)")
        else:
            side = _Side(server, LoadGenerator(server.port))
            shared["serve_zeus"] = (side, None)
            _chain_cleanup(shared, side.stop)
    return shared["serve_zeus"]


def _cycle_runner(side: _Side, prefix: str, jobs: int, per_job: int, record: dict[str, Any]) -> Callable[[], None]:
    """A timed call: ``jobs`` concurrent jobs, ``per_job`` cycles each; records latencies and CPU."""

    def run() -> None:
        s0 = side.server.cpu_seconds()
        answer = side.load.command(op="cycles", prefix=prefix, jobs=jobs, per_job=per_job)
        s1 = side.server.cpu_seconds()
        record["calls"] += 1
        if answer["errors"]:
            record["errors"] += answer["errors"]
            record["error_samples"] = (record["error_samples"] + answer["error_samples"])[:5]
        if record["calls"] == 1:
            return  # the untimed first call: connections opened, kernels loaded
        for kind, values in answer["latency"].items():
            record["latency"].setdefault(kind, []).extend(values)
        record["wall"] += answer["wall"]
        record["cycles"] += answer["cycles"]
        record["load_cpu"] += answer["cpu"]
        if s0 is not None and s1 is not None:
            record["server_cpu"] += s1 - s0

    return run


def _new_record() -> dict[str, Any]:
    return {"calls": 0, "errors": 0, "error_samples": [], "latency": {}, "wall": 0.0, "cycles": 0, "load_cpu": 0.0,
            "server_cpu": 0.0}


def _summarize(record: dict[str, Any]) -> dict[str, Any]:
    cycles = record["cycles"] or 1
    wall = record["wall"] or math.nan
    return {
        "cycles_per_second": record["cycles"] / wall,
        "latency": latency_summary(record["latency"]),
        "server_cpu_ms_per_cycle": record["server_cpu"] / cycles * 1e3,
        "load_generator_cpu_ms_per_cycle": record["load_cpu"] / cycles * 1e3,
        "server_cpu_utilization": record["server_cpu"] / wall,
        "load_generator_cpu_utilization": record["load_cpu"] / wall,
        "errors": record["errors"],
        "error_samples": record["error_samples"],
    }


def _fmt_side(name: str, s: dict[str, Any]) -> str:
    lat = s["latency"]["all"]
    return (f"{name}: {s['cycles_per_second']:,.0f} cycles/s, p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
            f"CPU server {s['server_cpu_utilization']:.0%} / load generator {s['load_generator_cpu_utilization']:.0%}"
            + (f", {s['errors']} errors" if s["errors"] else ""))


def _cycles(nominal: int) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        ours = _ours(cfg, shared)
        level = _jobs(cfg, nominal)
        prefix = f"c{level}"
        ours.register(prefix, level)
        k = _cycles_per_call(cfg, level)
        rec_ours, rec_zeus = _new_record(), _new_record()
        info: dict[str, Any] = {"concurrent_jobs": level, "cycles_per_job_per_call": k}
        zeus, why = _zeus(cfg, shared)
        comparison = None
        kz = 1
        if zeus is not None and cfg.budget <= 0 and nominal > 1:
            why = "Zeus's server runs only at 1 job in the one-call check (seconds per cycle)"
            zeus = None
        elif zeus is not None and level >= 1024 and cfg.quick:
            why = "Zeus's server at 1,024 concurrent jobs is skipped with --quick (minutes per round)"
            zeus = None
        if zeus is not None:
            zeus.register(prefix, level)
            # Zeus sustains tens of cycles per second: one cycle per job per
            # call above 8 jobs, a few for fewer.
            kz = 1 if cfg.budget <= 0 else max(1, 8 // level)
            comparison = _cycle_runner(zeus, prefix, level, kz, rec_zeus)
        p = Prepared(_cycle_runner(ours, prefix, level, k, rec_ours), level * k, comparison, level * kz,
                     missing=why, info=info)

        def finish() -> None:
            info["ours"] = _summarize(rec_ours)
            parts = [_fmt_side("ours", info["ours"])]
            if rec_zeus["calls"]:
                info["zeus"] = _summarize(rec_zeus)
                parts.append(_fmt_side("zeus", info["zeus"]))
            p.note = f"{level:,} concurrent jobs; " + "; ".join(parts)

        p.finalize = finish
        return p

    return setup


def _batch_predict(cfg: Config, shared: dict[str, Any], concurrency: int = 1) -> Prepared:
    from banditfleet.serve.batch_api import BATCH_PREDICT_PATH, in_process_predict

    ours = _ours(cfg, shared)
    n = 20 if cfg.budget <= 0 else BATCH_JOBS[1] if cfg.quick else BATCH_JOBS[0]
    prefix = f"b{n}"
    ours.register(prefix, n)
    ids = [f"{prefix}-{i}" for i in range(n)]
    rec = _new_record()

    def run() -> None:
        s0 = ours.server.cpu_seconds()
        answer = ours.load.command(op="post", path=BATCH_PREDICT_PATH, body={"job_ids": ids}, repeat=concurrency,
                                   concurrency=concurrency)
        s1 = ours.server.cpu_seconds()
        if answer["errors"]:
            raise RuntimeError(f"batch predict failed: {answer['error_samples']}")
        rec["calls"] += 1
        if rec["calls"] > 1:
            rec["latency"].setdefault("batch", []).extend(answer["latency"])
            rec["wall"] += answer["wall"]
            rec["cycles"] += n * concurrency
            rec["load_cpu"] += answer["cpu"]
            if s0 is not None and s1 is not None:
                rec["server_cpu"] += s1 - s0

    floor, floor_note = in_process_predict(n)
    info: dict[str, Any] = {"jobs_per_request": n, "concurrent_requests": concurrency}
    p = Prepared(run, n * concurrency, floor, n, info=info)

    def finish() -> None:
        s = _summarize(rec)
        info["ours"] = s
        lat = s["latency"]["all"]
        per = rec["server_cpu"] / rec["cycles"] * 1e6 if rec["cycles"] else math.nan
        p.note = (f"{n:,} jobs per request, {concurrency} request(s) in flight: {s['cycles_per_second']:,.0f} "
                  f"decisions/s (target 200,000), server CPU {per:.2f} us/decision, "
                  f"p50 {lat['p50_ms']:.1f} ms per request, CPU server {s['server_cpu_utilization']:.0%} / load "
                  f"generator {s['load_generator_cpu_utilization']:.0%}; floor: {floor_note}")

    p.finalize = finish
    return p


def _microbatch(cfg: Config, shared: dict[str, Any]) -> Prepared:
    level = _jobs(cfg, 128)
    on, off = _ours(cfg, shared, True), _ours(cfg, shared, False)
    prefix = f"m{level}"
    on.register(prefix, level)
    off.register(prefix, level)
    k = _cycles_per_call(cfg, level)
    rec_on, rec_off = _new_record(), _new_record()
    info: dict[str, Any] = {"concurrent_jobs": level}
    p = Prepared(_cycle_runner(on, prefix, level, k, rec_on), level * k, _cycle_runner(off, prefix, level, k, rec_off),
                 level * k, same_repeats=True, info=info)

    def finish() -> None:
        info["on"], info["off"] = _summarize(rec_on), _summarize(rec_off)
        p.note = "; ".join([_fmt_side("micro-batching on", info["on"]), _fmt_side("off", info["off"])])

    p.finalize = finish
    return p


_CYCLE = "training-run cycles (GET batch size + report + end trial) from concurrent simulated jobs, Zeus's client protocol"

CASES: list[Case] = [
    *[
        Case(f"serve.cycles-{level}:zeus", "serve", f"banditfleet serve, {level:,} concurrent jobs",
             "Zeus 0.16.0 server, SQLite", "reference", "cycle",
             f"Zeus 0.16.0's server on SQLite (one uvicorn worker), the same {_CYCLE}", _cycles(level),
             target=100 if level == 128 else None, needs_reference=True)
        for level in LEVELS
    ],
    Case("serve.batch-predict:in-process", "serve", "POST batch predict over HTTP", "the same decisions in process",
         "floor", "decision", "the server's own batch predict called in process on the same jobs (no HTTP, no JSON)",
         _batch_predict),
    Case("serve.batch-predict-4:in-process", "serve", "POST batch predict over HTTP, 4 requests in flight",
         "the same decisions in process", "floor", "decision",
         "the server's own batch predict called in process on the same jobs (no HTTP, no JSON)",
         lambda cfg, shared: _batch_predict(cfg, shared, 4)),
    Case("serve.microbatch-128:off", "serve", "128 concurrent jobs, micro-batching on", "the same, micro-batching off",
         "floor", "cycle", "the same load with --no-microbatch", _microbatch),
]

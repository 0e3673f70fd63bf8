"""The standard suite of ``banditfleet bench``: rows, scaling, compile time, plots."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from banditfleet.bench.cases import Config
from banditfleet.bench.runner import (
    Report,
    environment,
    format_environment,
    format_notes,
    format_rows,
    format_seconds,
    run_cases,
)

__all__ = ["run_bench", "format_report"]


def run_bench(
    cfg: Config,
    cases: list[str] | None = None,
    scaling: bool = True,
    compile_time: bool = True,
    plot_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Report:
    """Run the selected cases (all by default), then the scaling sweep and the
    compile-time measurement; write the scaling plots to ``plot_dir`` if given.

    With ``cfg.quick`` the scaling sweep is reduced and compile time is only
    measured warm (a cold compile takes minutes on a small machine).
    """
    t0 = time.perf_counter()
    env = environment()
    rows = run_cases(cfg, cases, progress)
    report = Report(cfg, env, rows)
    if scaling or plot_dir is not None:
        from banditfleet.bench.scaling import scaling as sweep

        report.scaling = sweep(cfg, progress=progress)
    if plot_dir is not None and report.scaling is not None:
        from banditfleet.bench.plots import plot_scaling

        try:
            report.plots = [str(p) for p in plot_scaling(report.scaling, plot_dir)]
        except ImportError as exc:
            report.plots = []
            report.environment["plots_missing"] = f"matplotlib is not installed ({exc}); pip install 'banditfleet[plot]'"
    if compile_time:
        from banditfleet.bench.scaling import compile_times

        if progress is not None:
            progress(0, 1, "compile time: fresh processes" + ("" if cfg.quick else " (cold compile takes minutes)"))
        try:
            report.compile = compile_times(cold=not cfg.quick)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            report.compile = {"error": f"{type(exc).__name__}: {exc}"}
    report.seconds = time.perf_counter() - t0
    report.loadavg_after = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return report


def _scaling_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for axis, key, fixed in (("jobs", "jobs_axis", "arms"), ("arms", "arms_axis", "jobs")):
        block = result[key]
        points = block["points"]
        if not points:
            continue
        xs = sorted({p[axis] for p in points})
        series = list(dict.fromkeys(p["series"] for p in points))
        unit = "ns/job" if axis == "jobs" else "ns/job-arm"
        lines.append(f"scaling against {axis} ({fixed} = {block[fixed]:,}): median {unit} per call; state bytes per job")
        lines.append(f"  {axis:>9s} " + " ".join(f"{s:>16s}" for s in series) + f" {'state B/job':>12s} {'traced B/job':>13s}")
        for x in xs:
            at = {p["series"]: p for p in points if p[axis] == x}
            cells = []
            for s in series:
                p = at.get(s)
                cells.append(f"{(p['ns_per_job'] if axis == 'jobs' else p['ns_per_job_arm']):16.1f}" if p else f"{'-':>16s}")
            mem = at.get("predict") or next(iter(at.values()))
            lines.append(f"  {x:>9,d} " + " ".join(cells) + f" {mem['state_bytes_per_job']:12.0f} {mem['traced_bytes_per_job']:13.0f}")
    return lines


def _compile_lines(result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return [f"compile time: {result['error']}"]
    lines = ["numba compile time (fresh process: import, then the first call of each kernel family):"]
    for name in ("cold", "warm"):
        r = result.get(name)
        if r is None:
            continue
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in r["parts"].items())
        where = f" [{r['cache']}]" if r.get("cache") else ""
        lines.append(f"  {name:5s} import {r['import']:.2f} s + first calls {r['first_calls']:.2f} s ({parts}){where}")
    cli = result.get("cli")
    if cli:
        target = cli.get("target")
        for k in ("cold", "warm"):
            if k not in cli:
                continue
            p = cli.get(f"{k}_profile")
            what = "first run after install (empty numba cache)" if k == "cold" else "second run (numba's cache)"
            line = f"  {what}: whole process `banditfleet {cli['command']}` {cli[k]:.1f} s wall"
            if p is not None:
                rest = p["process_cpu"] - p["import_cpu"] - p["compile_cpu"]
                line += (f", {p['process_cpu']:.1f} s CPU: import {p['import_cpu']:.1f} s, compiling {p['compile_cpu']:.1f} s "
                         f"({p['compiles']} compiles of {p['kernels']} kernels), the rest {rest:.1f} s")
            if k == "cold" and target is not None:
                line += f"; target <= {target:g} s: " + ("ok" if cli[k] <= target else "MISS")
            lines.append(line)
            if k == "cold" and p is not None and p["table"]:
                slow = ", ".join(f"{r['kernel']} {r['self_cpu']:.1f}" for r in p["table"][:8])
                lines.append(f"    slowest kernels (own compile, CPU s): {slow}")
    return lines


def format_report(report: Report) -> list[str]:
    """The report as text lines (the CLI prints them)."""
    cfg = report.config
    lines = [f"banditfleet bench{' --quick' if cfg.quick else ''}: {cfg.jobs:,} jobs x {cfg.arms} arms "
             f"(reference loops on {cfg.reference_jobs:,} jobs), checkpoint {cfg.checkpoint_jobs:,} jobs, "
             f"replay {cfg.replay_groups:,} groups"]
    lines += format_environment(report.environment)
    lines.append("")
    lines += format_rows(report.rows)
    lines.append("")
    lines.append("ratio: per unit, medians of the same run, sides timed alternately; 'faster' = zeus / ours, "
                 "'floor' = ours / floor; cpu: the same ratio from process CPU time; IQR = interquartile range / median")
    notes = format_notes(report.rows)
    if notes:
        lines.append("notes:")
        lines += notes
    missed = [r for r in report.rows if r.meets_target is False]
    if missed:
        lines.append("targets missed (see docs/performance.md for the measured limits): " + ", ".join(r.name for r in missed))
    errors = [r for r in report.rows if r.status == "error"]
    if errors:
        lines.append("errors: " + ", ".join(f"{r.name} ({r.reason})" for r in errors))
    if report.scaling is not None:
        lines.append("")
        lines += _scaling_lines(report.scaling)
    if report.compile is not None:
        lines.append("")
        lines += _compile_lines(report.compile)
    if report.plots:
        lines.append("")
        lines.append("plots: " + ", ".join(report.plots))
    elif report.environment.get("plots_missing"):
        lines.append("plots skipped: " + report.environment["plots_missing"])
    after = report.loadavg_after
    lines.append("")
    lines.append(f"finished in {format_seconds(report.seconds)}; load average at the end: "
                 + (", ".join(f"{x:.2f}" for x in after) if after else "-"))
    return lines

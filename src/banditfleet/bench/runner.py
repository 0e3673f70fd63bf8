"""Measuring the cases: repeats with ``time.perf_counter``, medians, spreads, same-run ratios.

For every row, both sides are first called once untimed (numba compiles or
loads its cache, memory is touched), then timed in alternating blocks, ours
then the comparison, three blocks each, so that load from other processes
falls on both alike while each side mostly runs on its own warm caches (a
slow reference loop evicts our arrays; alternating call by call made our
side up to 1.7x slower). The number of repeats comes from the first call's
time and the :class:`Config` budget.
A row reports each side's median, its spread (the interquartile range, and
the minimum and maximum) and process CPU time, and the ratio of the two
medians per unit of work: ``comparison / ours`` for the reference (a
speedup), ``ours / comparison`` for a floor.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from banditfleet.bench.cases import Case, Config, Prepared, select

__all__ = [
    "Timing",
    "Row",
    "Report",
    "measure",
    "measure_pair",
    "make_row",
    "run_case",
    "run_cases",
    "environment",
    "cache_sizes",
    "format_rows",
    "format_notes",
    "format_environment",
    "format_seconds",
]


@dataclass
class Timing:
    """Seconds per call of one side of a row."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    repeats: int
    cpu_median: float

    @classmethod
    def from_samples(cls, wall: Sequence[float], cpu: Sequence[float]) -> Timing:
        if not wall:
            raise ValueError("no samples")
        if len(wall) >= 2:
            q1, _, q3 = statistics.quantiles(wall, n=4, method="inclusive")
        else:
            q1 = q3 = wall[0]
        return cls(statistics.median(wall), q1, q3, min(wall), max(wall), len(wall), statistics.median(cpu))

    @property
    def spread(self) -> float:
        """Interquartile range over the median."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0


def _timed(fn: Callable[[], Any], before: Callable[[], Any] | None) -> tuple[float, float]:
    if before is not None:
        before()
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    t1 = time.perf_counter()
    return t1 - t0, time.process_time() - c0


def _repeats(first: float, budget: float, low: int, high: int) -> int:
    if first <= 0:
        return high
    return max(low, min(high, int(math.ceil(budget / first))))


def measure(fn: Callable[[], Any], cfg: Config, before: Callable[[], Any] | None = None, repeats: int | None = None) -> Timing:
    """Median and spread of ``fn`` alone (one untimed call first)."""
    first, _ = _timed(fn, before)
    n = repeats if repeats is not None else _repeats(first, cfg.budget, cfg.min_repeats, cfg.max_repeats)
    wall, cpu = [], []
    for _ in range(n):
        w, c = _timed(fn, before)
        wall.append(w)
        cpu.append(c)
    return Timing.from_samples(wall, cpu)


#: Blocks of repeats each side is timed in, alternately (see :func:`measure_pair`).
BLOCKS = 3


def measure_pair(p: Prepared, cfg: Config) -> tuple[Timing, Timing | None]:
    """Time ``p.ours`` and ``p.comparison`` in alternating blocks (see the module docstring)."""
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        first_ours, _ = _timed(p.ours, p.ours_before)
        n_ours = _repeats(first_ours, cfg.budget, cfg.min_repeats, cfg.max_repeats)
        n_cmp = 0
        if p.comparison is not None:
            first_cmp, _ = _timed(p.comparison, p.comparison_before)
            n_cmp = _repeats(first_cmp, cfg.budget, cfg.reference_min_repeats, cfg.max_repeats)
            if p.same_repeats:
                n_ours = n_cmp = min(n_ours, n_cmp)
        if p.max_repeats is not None:
            n_ours, n_cmp = min(n_ours, p.max_repeats), min(n_cmp, p.max_repeats)
        ours_w, ours_c, cmp_w, cmp_c = [], [], [], []
        for block in range(BLOCKS):
            for fn, before, n, wall, cpu in ((p.ours, p.ours_before, n_ours, ours_w, ours_c),
                                             (p.comparison, p.comparison_before, n_cmp, cmp_w, cmp_c)):
                # Block `block` of BLOCKS: its share of this side's repeats.
                for _ in range(n * (block + 1) // BLOCKS - n * block // BLOCKS):
                    w, c = _timed(fn, before)
                    wall.append(w)
                    cpu.append(c)
    finally:
        if gc_was:
            gc.enable()
    ours = Timing.from_samples(ours_w, ours_c)
    return ours, (Timing.from_samples(cmp_w, cmp_c) if cmp_w else None)


@dataclass
class Row:
    """One line of the report (see :class:`~banditfleet.bench.cases.Case`)."""

    name: str
    group: str
    ours_label: str
    comparison_label: str
    kind: str
    unit: str
    floor: str
    status: str = "ok"  # ok | missing (comparison not measured) | error
    reason: str = ""
    note: str = ""
    units: int = 0
    comparison_units: int = 0
    ours: Timing | None = None
    comparison: Timing | None = None
    ratio: float | None = None
    ratio_cpu: float | None = None
    ratio_definition: str = ""
    target: float | None = None
    meets_target: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)
    setup_seconds: float = 0.0

    @property
    def ours_per_unit(self) -> float | None:
        return self.ours.median / self.units if self.ours is not None and self.units else None

    @property
    def comparison_per_unit(self) -> float | None:
        return self.comparison.median / self.comparison_units if self.comparison is not None and self.comparison_units else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ours_per_unit_seconds"] = self.ours_per_unit
        d["comparison_per_unit_seconds"] = self.comparison_per_unit
        return d


def make_row(case: Case, prepared: Prepared | None, ours: Timing | None, comparison: Timing | None) -> Row:
    """A row with its ratio computed from the two medians per unit (and from the CPU medians)."""
    row = Row(case.name, case.group, case.ours, case.comparison, case.kind, case.unit, case.floor, target=case.target)
    row.ratio_definition = (
        f"comparison / ours, per {case.unit} (a speedup; higher is better)"
        if case.kind == "reference"
        else f"ours / comparison, per {case.unit} (times the floor; lower is better)"
    )
    if prepared is not None:
        row.units, row.comparison_units = prepared.units, prepared.comparison_units
        row.note, row.info = prepared.note, dict(prepared.info)
    row.ours, row.comparison = ours, comparison
    if ours is None:
        return row
    if comparison is None or not row.comparison_units:
        row.status = "missing"
        row.reason = (prepared.missing if prepared is not None and prepared.missing else "no comparison measured")
        return row
    o, c = ours.median / row.units, comparison.median / row.comparison_units
    oc, cc = ours.cpu_median / row.units, comparison.cpu_median / row.comparison_units
    if case.kind == "reference":
        row.ratio = c / o if o > 0 else math.inf
        row.ratio_cpu = cc / oc if oc > 0 else None
        row.meets_target = None if case.target is None else row.ratio >= case.target
    else:
        row.ratio = o / c if c > 0 else math.inf
        row.ratio_cpu = oc / cc if cc > 0 else None
        row.meets_target = None if case.target is None else row.ratio <= case.target
    return row


def run_case(case: Case, cfg: Config, shared: dict[str, Any]) -> Row:
    """Set up, measure and clean up one case; an exception becomes an ``error`` row."""
    t0 = time.perf_counter()
    prepared = None
    try:
        prepared = case.setup(cfg, shared)
        setup_seconds = time.perf_counter() - t0
        ours, cmp = measure_pair(prepared, cfg)
        row = make_row(case, prepared, ours, cmp)
        row.setup_seconds = setup_seconds
        return row
    except Exception as exc:  # noqa: BLE001 - a broken case must not hide the others
        row = make_row(case, prepared, None, None)
        row.status, row.reason = "error", f"{type(exc).__name__}: {exc}"
        return row
    finally:
        if prepared is not None and prepared.cleanup is not None:
            prepared.cleanup()


def run_cases(
    cfg: Config,
    names: list[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Row]:
    """Every selected case in table order. Fleets are shared within a group and
    dropped before the next group starts."""
    cases = select(names)
    rows: list[Row] = []
    shared: dict[str, Any] = {}
    group = None
    for i, case in enumerate(cases):
        if case.group != group:
            _drop(shared)
            group = case.group
        if progress is not None:
            progress(i, len(cases), case.name)
        rows.append(run_case(case, cfg, shared))
    _drop(shared)
    if progress is not None:
        progress(len(cases), len(cases), "done")
    return rows


def _drop(shared: dict[str, Any]) -> None:
    cleanup = shared.pop("_cleanup", None)
    shared.clear()
    if cleanup is not None:
        cleanup()
    gc.collect()


# ------------------------------------------------------------- environment
THREAD_VARS = (
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_CACHE_DIR",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_sizes() -> dict[str, int]:
    """Data/unified cache sizes of CPU 0 in bytes, by level (``L1d``, ``L2``, ``L3``), from sysfs."""
    out: dict[str, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in sorted(base.glob("index*")) if base.is_dir() else []:
        try:
            kind = (d / "type").read_text().strip()
            level = (d / "level").read_text().strip()
            size = (d / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size[-1:], 1)
        value = int(size[:-1]) * mult if size[-1:] in "KMG" else int(size)
        out[f"L{level}{'d' if kind == 'Data' else ''}"] = value
    return out


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """What the figures depend on: machine, versions, thread settings, load."""
    import numba
    import numpy as np

    import banditfleet

    from banditfleet.bench.fleets import reference

    policy, why = reference()
    zeus_version = None
    if policy is not None:
        import zeus

        zeus_version = zeus.__version__
    blas: list[dict[str, Any]] = []
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: i.get(k) for k in ("user_api", "internal_api", "num_threads", "version")} for i in threadpool_info()]
    except Exception:  # noqa: BLE001 - optional
        pass
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = f"not yet chosen (config: {numba.config.THREADING_LAYER})"
    return {
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "caches": cache_sizes(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "banditfleet": banditfleet.__version__,
        "commit": _git_commit(),
        "zeus": zeus_version,
        "zeus_missing": why,
        "numba_threads": numba.get_num_threads(),
        "numba_config_threads": numba.config.NUMBA_NUM_THREADS,
        "numba_threading_layer": layer,
        "thread_env": {k: os.environ.get(k) for k in THREAD_VARS},
        "threadpools": blas,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# ----------------------------------------------------------------- report
@dataclass
class Report:
    """Everything one ``banditfleet bench`` run measured."""

    config: Config
    environment: dict[str, Any]
    rows: list[Row]
    scaling: dict[str, Any] | None = None
    compile: dict[str, Any] | None = None
    plots: list[str] = field(default_factory=list)
    seconds: float = 0.0
    loadavg_after: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "banditfleet-bench",
            "format_version": 1,
            "config": asdict(self.config),
            "environment": self.environment,
            "loadavg_after": self.loadavg_after,
            "seconds": self.seconds,
            "rows": [r.to_dict() for r in self.rows],
            "scaling": self.scaling,
            "compile": self.compile,
            "plots": self.plots,
        }

    def write_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


# ------------------------------------------------------------- formatting
def format_seconds(s: float | None) -> str:
    """``s`` with a unit that keeps three significant figures (ns ... s)."""
    if s is None or not math.isfinite(s):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _ratio_text(row: Row) -> str:
    if row.ratio is None:
        return "-"
    r = row.ratio
    text = f"{r:,.0f}x" if r >= 100 else f"{r:.3g}x"
    return text + (" faster" if row.kind == "reference" else " floor")


def _target_text(row: Row) -> str:
    if row.target is None:
        return ""
    sign = ">=" if row.kind == "reference" else "<="
    verdict = "" if row.meets_target is None else (" ok" if row.meets_target else " MISS")
    return f"{sign}{row.target:g}x{verdict}"


def format_rows(rows: list[Row]) -> list[str]:
    """The table: per row the median per call and per unit, spread (IQR / median), the
    comparison's, the same-run ratio per unit with its target, and the same ratio
    from process CPU time (steadier on a loaded machine; not meaningful for
    threads or I/O)."""
    head = (f"{'case':28s} {'ours/call':>10s} {'per unit':>11s} {'IQR':>5s}  {'vs':26s} {'per unit':>11s} {'IQR':>5s}"
            f"  {'ratio (per unit)':>17s} {'cpu':>7s} {'target':>10s}")
    lines = [head, "-" * len(head)]
    group = None
    for r in rows:
        if r.group != group and group is not None:
            lines.append("")
        group = r.group
        if r.status == "error":
            lines.append(f"{r.name:28s} ERROR {r.reason}")
            continue
        o = r.ours
        unit = f"/{r.unit}" if r.unit else ""
        ours_call = format_seconds(o.median) if o else "-"
        ours_unit = (format_seconds(r.ours_per_unit) + unit) if o else "-"
        ours_spread = f"{100 * o.spread:.0f}%" if o else "-"
        if r.status == "missing":
            lines.append(f"{r.name:28s} {ours_call:>10s} {ours_unit:>11s} {ours_spread:>5s}  {r.comparison_label[:26]:26s} missing: {r.reason}")
            continue
        c = r.comparison
        cmp_unit = format_seconds(r.comparison_per_unit) + unit
        cpu = "-" if r.ratio_cpu is None else (f"{r.ratio_cpu:,.0f}x" if r.ratio_cpu >= 100 else f"{r.ratio_cpu:.3g}x")
        lines.append(
            f"{r.name:28s} {ours_call:>10s} {ours_unit:>11s} {ours_spread:>5s}  {r.comparison_label[:26]:26s} "
            f"{cmp_unit:>11s} {100 * c.spread:4.0f}%  {_ratio_text(r):>17s} {cpu:>7s} {_target_text(r):>10s}"
        )
    return lines


def format_notes(rows: list[Row]) -> list[str]:
    """One line per row that has a note (sizes, scaling of the reference)."""
    return [f"  {r.name}: {r.note}" for r in rows if r.note]


def format_environment(env: dict[str, Any]) -> list[str]:
    threads = ", ".join(f"{k}={v}" for k, v in env["thread_env"].items() if v is not None) or "none set"
    pools = "; ".join(f"{p.get('internal_api')} {p.get('num_threads')} threads" for p in env.get("threadpools") or []) or "-"
    load = env.get("loadavg")
    caches = ", ".join(f"{k} {v // 1024} KiB" for k, v in env.get("caches", {}).items())
    return [
        f"machine: {env['cpu']}, {env['cores']} cores ({caches}); {env['platform']}",
        f"versions: python {env['python']}, numpy {env['numpy']}, numba {env['numba']}, banditfleet {env['banditfleet']}"
        f" (commit {env['commit'] or '?'}), zeus {env['zeus'] or 'not available'}",
        f"threads: numba {env['numba_threads']} (NUMBA_NUM_THREADS default {env['numba_config_threads']}, layer "
        f"{env['numba_threading_layer']}); thread variables: {threads}; BLAS/OpenMP pools: {pools}",
        "load average (1, 5, 15 min) at start: " + (", ".join(f"{x:.2f}" for x in load) if load else "-"),
    ]

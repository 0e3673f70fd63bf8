"""The scaling plots (PNG, log-log), drawn with matplotlib when it is installed.

``scaling-jobs.png``: against the number of jobs, (a) the time per call with
a dashed line of slope 1 (cost exactly linear in the jobs) through the
median point, (b) the cost per job, flat when the cost is linear, with the
fleet sizes whose state outgrows the L2 and L3 caches marked, and (c) the
bytes per job. ``scaling-arms.png``: the same against the number of arms
(the dashed line for predict only: a decision draws per arm, an observation
refits one arm).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_scaling", "PLOT_NAMES"]

PLOT_NAMES = ("scaling-jobs.png", "scaling-arms.png")
_STYLE = {"predict": ("C0", "o"), "observe-learned": ("C1", "s"), "observe-known": ("C2", "^")}


def _series(points: list[dict[str, Any]], name: str, x: str) -> tuple[list[float], list[dict[str, Any]]]:
    chosen = sorted((p for p in points if p["series"] == name), key=lambda p: p[x])
    return [p[x] for p in chosen], chosen


def _axis(points: list[dict[str, Any]], x: str, fixed: str, caches: dict[str, int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_u, ax_m) = plt.subplots(1, 3, figsize=(13, 3.9))
    names = list(dict.fromkeys(p["series"] for p in points))
    for name in names:
        color, marker = _STYLE.get(name, ("C3", "x"))
        xs, pts = _series(points, name, x)
        t = [p["timing"]["median"] for p in pts]
        ax_t.loglog(xs, t, marker=marker, color=color, label=name)
        mid = len(xs) // 2
        if x == "jobs" or name == "predict":  # a decision draws per arm; an observation does not
            ax_t.loglog(xs, [t[mid] * v / xs[mid] for v in xs], ls="--", lw=0.8, color=color, alpha=0.6)
        ax_u.loglog(xs, [p["ns_per_job"] for p in pts], marker=marker, color=color, label=name)
    ax_t.set_title("time per call (dashed: linear)" if x == "jobs" else "time per call (dashed: linear, predict)")
    ax_t.set_ylabel("seconds")
    ax_u.set_title("ns per job (flat = linear cost)" if x == "jobs" else "ns per job")
    ax_u.set_ylabel("nanoseconds")
    # Memory: state in use, allocated (capacity), and all tracemalloc saw.
    mem = [p for p in points if p["series"] in ("predict", "observe-known")]
    for name, label in (("predict", "learned precision"), ("observe-known", "known precision")):
        xs, pts = _series(mem, name, x)
        if not pts:
            continue
        color = _STYLE[name][0]
        ax_m.loglog(xs, [p["state_bytes_per_job"] for p in pts], marker="o", color=color, label=f"{label}: state")
        ax_m.loglog(xs, [p["traced_bytes_per_job"] for p in pts], marker="x", ls=":", color=color, label=f"{label}: all traced")
    ax_m.set_title("memory per job")
    ax_m.set_ylabel("bytes")
    if x == "jobs":
        # The fleet size whose state arrays fill each cache level.
        state = {p["jobs"]: p["state_bytes_per_job"] for p in points if p["series"] == "predict"}
        if state:
            per_job = sorted(state.items())[-1][1]
            for level in ("L2", "L3"):
                if level in caches and per_job > 0:
                    n = caches[level] / per_job
                    lo, hi = min(state), max(state)
                    if lo <= n <= hi:
                        for ax in (ax_t, ax_u):
                            ax.axvline(n, color="grey", lw=0.8, ls=":")
                        ax_u.annotate(f"state > {level}", (n, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                                      textcoords="offset points", fontsize=8, color="grey")
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ticks = sorted({p[x] for p in points})
    for ax in (ax_t, ax_u, ax_m):
        ax.set_xlabel("jobs" if x == "jobs" else "arms per job")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(ticks, [f"{v:,}" if v < 10_000 else f"{v:.0e}".replace("e+0", "e") for v in ticks])
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax_u.legend(fontsize=8)
    ax_m.legend(fontsize=7)
    fig.suptitle(f"Thompson sampling, {fixed}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_scaling(result: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write :data:`PLOT_NAMES` for a :func:`banditfleet.bench.scaling.scaling` result;
    returns the files written. Raises ImportError without matplotlib."""
    import matplotlib  # noqa: F401 - fail early and clearly

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    jobs_axis, arms_axis = result["jobs_axis"], result["arms_axis"]
    caches = result.get("caches", {})
    if jobs_axis["points"]:
        path = out / PLOT_NAMES[0]
        _axis(jobs_axis["points"], "jobs", f"{jobs_axis['arms']} arms per job", caches, path)
        files.append(path)
    if arms_axis["points"]:
        path = out / PLOT_NAMES[1]
        _axis(arms_axis["points"], "arms", f"{arms_axis['jobs']:,} jobs", caches, path)
        files.append(path)
    return files

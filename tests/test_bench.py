"""``banditfleet bench``: the report's structure, its ratios, missing comparisons, the CLI.

Nothing here asserts how fast anything is: the sizes are tiny and the
assertions are about what the report contains and how it is computed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest

from banditfleet.bench import CASES, GROUPS, Config, Prepared, Row, Timing, make_row, run_cases, select
from banditfleet.bench.fleets import reference
from banditfleet.bench.runner import Report, environment, format_rows, measure_pair
from banditfleet.bench.suite import format_report, run_bench
from banditfleet.cli import main

HAVE_ZEUS = reference()[0] is not None


def tiny(tmp_path, **changes) -> Config:
    cfg = Config(
        jobs=30, arms=4, reference_jobs=10, checkpoint_jobs=200, replay_groups=8, reference_groups=2, cli_groups=8, scalar_calls=5,
        budget=0.0, min_repeats=2, max_repeats=2, reference_min_repeats=2, quick=True, workdir=str(tmp_path),
    )
    return replace(cfg, **changes)


def _per_unit(t: Timing, units: int) -> float:
    return t.median / units


def check_row(row: Row) -> None:
    """A measured row's ratio is the two medians per unit, in the direction of its kind."""
    assert row.ours is not None and row.units > 0
    o = row.ours
    assert o.repeats >= 1 and o.min <= o.q1 <= o.median <= o.q3 <= o.max
    assert row.ours_per_unit == pytest.approx(o.median / row.units)
    if row.status == "missing":
        assert row.comparison is None and row.ratio is None and row.meets_target is None and row.reason
        return
    assert row.status == "ok"
    c = row.comparison
    assert c is not None and row.comparison_units > 0
    ours, cmp = _per_unit(o, row.units), _per_unit(c, row.comparison_units)
    expected = cmp / ours if row.kind == "reference" else ours / cmp
    assert row.ratio == pytest.approx(expected, rel=1e-12)
    if row.target is None:
        assert row.meets_target is None
    else:
        assert row.meets_target == (row.ratio >= row.target if row.kind == "reference" else row.ratio <= row.target)


# -------------------------------------------------------------- the cases
def test_case_table_is_well_formed():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert GROUPS == ["rng", "thompson", "scalar", "pruning", "power", "checkpoint", "lifecycle", "replay", "threads", "journal",
                      "serve"]
    for c in CASES:
        assert c.kind in ("floor", "reference") and c.unit and c.floor and c.ours and c.comparison
        assert c.needs_reference == (c.kind == "reference")
    targets = {c.name: c.target for c in CASES}
    assert targets["ts.predict:numpy"] == 1.5
    assert targets["ts.predict:zeus"] == 400 and targets["ts.predict:draws"] == 1.25 and targets["replay.runs:zeus"] == 1000
    assert select(["rng"]) == [c for c in CASES if c.group == "rng"]
    assert [c.name for c in select(["ts.predict:zeus", "replay"])] == [
        "ts.predict:zeus", "replay.runs:zeus", "replay.cli-process:zeus", "replay.simulator-job:zeus", "replay.simulator-group:zeus"
    ]
    assert targets["replay.cli-process:zeus"] == 1000
    with pytest.raises(ValueError, match="unknown case"):
        select(["nope"])


def test_standard_config_sizes():
    full, quick = Config.standard(), Config.standard(quick=True)
    assert (full.jobs, full.arms, full.reference_jobs, full.checkpoint_jobs) == (10_000, 8, 10_000, 1_000_000)
    assert quick.quick and quick.jobs < full.jobs and quick.reference_jobs <= quick.jobs
    mine = Config.standard(jobs=50, arms=3)
    assert (mine.jobs, mine.arms, mine.checkpoint_jobs, mine.replay_groups, mine.reference_jobs) == (50, 3, 50, 50, 50)
    assert Config.standard(jobs=5000, reference_jobs=100).reference_jobs == 100


# ----------------------------------------------------------- the ratios
def _timing(median: float, cpu: float | None = None) -> Timing:
    return Timing(median, median * 0.9, median * 1.1, median * 0.8, median * 1.3, 5, median if cpu is None else cpu)


def test_reference_ratio_is_a_per_unit_speedup():
    case = next(c for c in CASES if c.name == "ts.predict:zeus")
    prepared = Prepared(lambda: None, 10_000, lambda: None, 1_000)
    # ours: 5 ms for 10,000 jobs = 0.5 us/job; reference: 40 ms for 1,000 jobs = 40 us/job
    row = make_row(case, prepared, _timing(5e-3, 6e-3), _timing(40e-3, 30e-3))
    assert row.ratio == pytest.approx(80.0)
    assert row.ratio_cpu == pytest.approx((30e-3 / 1000) / (6e-3 / 10_000))
    assert row.meets_target is False and "comparison / ours" in row.ratio_definition
    fast = make_row(case, prepared, _timing(1e-3), _timing(40e-3))
    assert fast.ratio == pytest.approx(400.0) and fast.meets_target is True


def test_floor_ratio_is_ours_over_the_floor():
    case = next(c for c in CASES if c.name == "ts.predict:numpy")
    row = make_row(case, Prepared(lambda: None, 100, lambda: None, 100), _timing(3e-3), _timing(2e-3))
    assert row.ratio == pytest.approx(1.5) and row.meets_target is True
    worse = make_row(case, Prepared(lambda: None, 100, lambda: None, 100), _timing(4e-3), _timing(2e-3))
    assert worse.ratio == pytest.approx(2.0) and worse.meets_target is False
    assert "ours / comparison" in worse.ratio_definition


def test_missing_comparison_keeps_our_timing():
    case = next(c for c in CASES if c.name == "power.observe:zeus")
    row = make_row(case, Prepared(lambda: None, 10, missing="zeus is not installed"), _timing(1e-3), None)
    assert row.status == "missing" and row.reason == "zeus is not installed"
    assert row.ratio is None and row.ours.median == 1e-3
    assert "missing: zeus is not installed" in "\n".join(format_rows([row]))


def test_measure_pair_alternates_and_counts_repeats():
    calls: list[str] = []
    p = Prepared(lambda: calls.append("o"), 1, lambda: calls.append("c"), 1,
                 ours_before=lambda: calls.append("bo"), comparison_before=lambda: calls.append("bc"))
    cfg = Config(budget=0.0, min_repeats=3, max_repeats=3, reference_min_repeats=2)
    ours, cmp = measure_pair(p, cfg)
    assert ours.repeats == 3 and cmp.repeats == 2
    # one untimed call of each first, then three alternating blocks (ours, then the
    # comparison), every call after its `before`
    warm, blocks = ["bo", "o", "bc", "c"], [["bo", "o"], ["bo", "o", "bc", "c"], ["bo", "o", "bc", "c"]]
    assert calls == warm + [c for b in blocks for c in b]
    same = replace(p, same_repeats=True)
    calls.clear()
    ours, cmp = measure_pair(same, cfg)
    assert ours.repeats == cmp.repeats == 2


# ------------------------------------------------ running the real cases
# The ``serve`` group starts servers and load generators (benchmarks/bench_serve.py
# runs it), and ``replay.cli-process:zeus`` times whole ``banditfleet replay``
# processes (half a minute even on tiny fleets): benchmarks/bench_cases.py runs
# that one, as it runs every case, in .ci/run.
SUBPROCESS_CASES = {"replay.cli-process:zeus"}
IN_PROCESS = [c for c in CASES if c.group != "serve" and c.name not in SUBPROCESS_CASES]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return run_cases(tiny(tmp_path_factory.mktemp("bench")), [c.name for c in IN_PROCESS])


def test_every_case_runs_and_its_ratio_comes_from_the_medians(rows):
    assert [r.name for r in rows] == [c.name for c in IN_PROCESS]
    for row in rows:
        assert row.status != "error", f"{row.name}: {row.reason}"
        check_row(row)
        if HAVE_ZEUS or not CASES[[c.name for c in CASES].index(row.name)].needs_reference:
            assert row.status == "ok", f"{row.name}: {row.reason}"
    by = {r.name: r for r in rows}
    assert by["ts.predict:zeus"].units == 30
    if HAVE_ZEUS:
        assert by["ts.predict:zeus"].comparison_units == 10
        assert "first 10 of 30 jobs" in by["ts.predict:zeus"].note
    assert by["checkpoint.save:write"].info["bytes"] > 0
    assert by["replay.runs:zeus"].info["runs"] == by["replay.runs:zeus"].units


def test_report_json_round_trip(rows, tmp_path):
    cfg = tiny(tmp_path)
    report = Report(cfg, environment(), rows)
    path = tmp_path / "bench.json"
    report.write_json(path)
    data = json.loads(path.read_text())
    assert data["format"] == "banditfleet-bench" and data["config"]["jobs"] == 30
    env = data["environment"]
    assert {"numba_threads", "thread_env", "cpu", "numpy", "numba", "loadavg"} <= env.keys()
    assert {"OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"} <= env["thread_env"].keys()
    assert len(data["rows"]) == len(rows)
    for r in data["rows"]:
        assert r["status"] in ("ok", "missing")
        if r["status"] == "ok":
            o = r["ours"]["median"] / r["units"]
            c = r["comparison"]["median"] / r["comparison_units"]
            assert r["ratio"] == pytest.approx(c / o if r["kind"] == "reference" else o / c, rel=1e-12)
            assert r["ours_per_unit_seconds"] == pytest.approx(o)
    text = "\n".join(format_report(report))
    assert "threads: numba" in text and "ts.predict:numpy" in text


def _hide_zeus(monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "zeus" or m.startswith("zeus.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "zeus", None)  # `import zeus` now raises ImportError


def test_rows_say_why_the_reference_is_missing(monkeypatch, tmp_path):
    _hide_zeus(monkeypatch)
    policy, why = reference()
    assert policy is None and "zeus==0.16.0 is not installed" in why
    names = ["ts.predict:zeus", "scalar.gts-observe:zeus", "pruning.transitions:zeus", "power.observe:zeus", "replay.runs:zeus", "ts.predict:numpy"]
    got = {r.name: r for r in run_cases(tiny(tmp_path), names)}
    for name in names[:-1]:
        row = got[name]
        assert row.status == "missing", f"{name}: {row.status} {row.reason}"
        assert "zeus==0.16.0 is not installed" in row.reason
        check_row(row)
    assert got["ts.predict:numpy"].status == "ok"
    assert environment()["zeus"] is None


def test_a_failing_case_becomes_an_error_row(tmp_path):
    from banditfleet.bench.cases import Case
    from banditfleet.bench.runner import run_case

    def broken(cfg, shared):
        raise RuntimeError("boom")

    row = run_case(Case("x.broken", "x", "a", "b", "floor", "job", "nothing", broken), tiny(tmp_path), {})
    assert row.status == "error" and "boom" in row.reason and row.ratio is None


# --------------------------------------------- scaling, plots, compile
def test_scaling_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from banditfleet.bench.plots import PLOT_NAMES, plot_scaling
    from banditfleet.bench.scaling import SERIES, scaling

    result = scaling(tiny(tmp_path), jobs=(20, 60), arms=(2, 5), arms_at_jobs=20)
    pts = result["jobs_axis"]["points"]
    assert {(p["series"], p["jobs"]) for p in pts} == {(s, n) for s in SERIES for n in (20, 60)}
    for p in pts + result["arms_axis"]["points"]:
        assert p["ns_per_job"] == pytest.approx(p["timing"]["median"] / p["jobs"] * 1e9)
        assert p["ns_per_job_arm"] == pytest.approx(p["ns_per_job"] / p["arms"])
        assert 0 < p["state_bytes_per_job"] <= p["allocated_bytes_per_job"]
    known = [p for p in pts if p["series"] == "observe-known"]
    learned = [p for p in pts if p["series"] == "predict"]
    assert all(k["state_bytes_per_job"] < l["state_bytes_per_job"] for k, l in zip(known, learned))  # no history
    files = plot_scaling(result, tmp_path / "plots")
    assert [f.name for f in files] == list(PLOT_NAMES)
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)


def test_compile_time_warm(tmp_path):
    from banditfleet.bench.scaling import CLI_FIRST_RUN, compile_times

    result = compile_times(cold=False)
    warm = result["warm"]
    assert set(warm["parts"]) == {"gts", "pruning", "power", "replay"}
    assert warm["first_calls"] == pytest.approx(sum(warm["parts"].values()))
    assert warm["import"] > 0 and "cold" not in result
    assert result["cli"]["warm"] > 0 and "cold" not in result["cli"]
    profile = result["cli"]["warm_profile"]
    assert profile["rc"] == 0 and profile["argv"] == list(CLI_FIRST_RUN)
    assert profile["compiles"] == sum(r["compiles"] for r in profile["table"])
    assert 0 < profile["import_cpu"] <= profile["process_cpu"] and profile["compile_cpu"] <= profile["process_cpu"]


def test_first_run_line_compares_the_cold_process_with_its_target():
    from banditfleet.bench.suite import _compile_lines

    def profile(compiles: int) -> dict:
        table = [{"kernel": "replay.advance", "compiles": compiles, "self_cpu": 4.0 * compiles, "cpu": 5.0 * compiles}]
        return {"process_cpu": 1.0 + 5.0 * compiles + 3.0, "import_cpu": 1.0, "compile_cpu": 5.0 * compiles, "compiles": compiles,
                "kernels": len(table) if compiles else 0, "table": table if compiles else []}

    for cold, verdict in ((16.5, "MISS"), (14.0, "ok")):
        cli = {"command": "replay --no-progress", "target": 15.0, "cold": cold, "warm": 4.0,
               "cold_profile": profile(2), "warm_profile": profile(0)}
        lines = _compile_lines({"cli": cli})
        first = next(line for line in lines if "first run after install" in line)
        assert f"{cold:.1f} s wall" in first and first.endswith(f"target <= 15 s: {verdict}")
        assert "compiling 10.0 s (2 compiles of 1 kernels), the rest 3.0 s" in first
        assert any("replay.advance 8.0" in line for line in lines)
        second = next(line for line in lines if "second run" in line)
        assert "(0 compiles of 0 kernels)" in second and "target" not in second


def test_run_bench_without_scaling_or_compile(tmp_path):
    report = run_bench(tiny(tmp_path), ["rng"], scaling=False, compile_time=False)
    assert [r.name for r in report.rows] == [c.name for c in select(["rng"])]
    assert report.scaling is None and report.compile is None and report.plots == []


# -------------------------------------------------------------------- CLI
def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--arms", "1"])
    assert main(["bench", "--case", "nope", "--no-progress"]) == 2
    assert "unknown case" in capsys.readouterr().err


def test_cli_bench_subprocess(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "banditfleet", "bench", "--quick", "--jobs", "40", "--reference-jobs", "10", "--arms", "4",
         "--case", "ts.predict:numpy", "--case", "ts.predict:zeus", "--case", "power", "--no-scaling", "--no-compile",
         "--no-progress", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "banditfleet bench --quick: 40 jobs x 4 arms" in proc.stdout
    assert "threads: numba" in proc.stdout and "ts.predict:numpy" in proc.stdout
    data = json.loads(out.read_text())
    assert data["config"]["quick"] is True and data["config"]["jobs"] == 40 and data["config"]["reference_jobs"] == 10
    names = [r["name"] for r in data["rows"]]
    assert names == ["ts.predict:numpy", "ts.predict:zeus"] + [c.name for c in CASES if c.group == "power"]
    for r in data["rows"]:
        assert r["status"] == ("ok" if HAVE_ZEUS or r["kind"] == "floor" else "missing")
        if r["ratio"] is not None:
            assert math.isfinite(r["ratio"]) and r["ratio"] > 0
    assert data["scaling"] is None and data["compile"] is None


def test_cli_help_lists_bench():
    proc = subprocess.run([sys.executable, "-m", "banditfleet", "bench", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for flag in ("--quick", "--jobs", "--arms", "--json", "--plot"):
        assert flag in proc.stdout

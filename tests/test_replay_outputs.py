"""Replay outputs and threads: the Parquet/CSV history against the result arrays, the same
result for any thread count, units and labels consistent between terminal and files, clear
errors for missing folders and files."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from banditfleet.errors import OutputError
from banditfleet.replay import fleet as fleet_module
from banditfleet.replay.fleet import Setting, replay_fleet, sweep
from banditfleet.replay.outputs import HISTORY_COLUMNS, history_table, write_history
from banditfleet.replay.synthetic import synthetic_fleet

_FIELDS = ("status", "error", "runs", "min_cost", "unit", "sub", "bs", "pl", "energy", "time", "reached", "offsets")


@pytest.fixture(scope="module")
def small():
    fleet = synthetic_fleet(60, seed=5)
    settings = sweep([0.5, 1.0], [2.0], [0, 1])
    return replay_fleet(fleet, settings, threads=1)


def _expected_frame(result) -> pd.DataFrame:
    """The history rebuilt run by run in plain Python from the result arrays (a naive model)."""
    r, fleet = result.result, result.fleet
    g = len(fleet)
    rows = []
    for i in range(r.unit.shape[0]):
        u = int(r.unit[i])
        s, grp = divmod(u, g)
        setting = result.settings[s]
        w = int(fleet.group_wl[grp])
        max_power = float(fleet.workloads.tables.wl_max_power[w])
        e, t = float(r.energy[i]), float(r.time[i])
        rows.append(
            (setting.label, setting.policy, fleet.group_ids[grp], fleet.workloads.jobs[w].dataset, int(r.sub[i]), int(r.bs[i]), int(r.pl[i]), e, t,
             bool(r.reached[i]), setting.eta_knob * e + (1 - setting.eta_knob) * max_power * t)
        )
    return pd.DataFrame(rows, columns=[c[0] for c in HISTORY_COLUMNS])


def test_parquet_history_is_typed_and_equals_the_results(small, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = write_history(small, tmp_path, "parquet")
    assert path == tmp_path / "history.parquet"
    schema = pq.read_schema(path)
    assert schema.names == [c[0] for c in HISTORY_COLUMNS]
    types = {f.name: f.type for f in schema}
    for name in ("setting", "policy", "group", "dataset"):
        assert pa.types.is_dictionary(types[name]) and types[name].value_type == pa.string()
    for name in ("submission", "batch_size", "power_limit_W"):
        assert types[name] == pa.int32()
    for name in ("energy_J", "time_s", "cost_J"):
        assert types[name] == pa.float64()
    assert types["reached"] == pa.bool_()
    got = pd.read_parquet(path)
    assert isinstance(got.setting.dtype, pd.CategoricalDtype)
    want = _expected_frame(small)
    assert len(got) == small.n_runs > 0
    for col in want.columns:
        g = got[col].astype(object) if isinstance(got[col].dtype, pd.CategoricalDtype) else got[col]
        assert g.tolist() == want[col].tolist(), col  # floats bit for bit
    # history_frame() is the same table in memory
    pd.testing.assert_frame_equal(small.history_frame(), got)


def test_csv_history_reads_back_to_the_same_values(small, tmp_path):
    write_history(small, tmp_path, "csv")
    got = pd.read_csv(tmp_path / "history.csv")
    want = _expected_frame(small)
    assert list(got.columns) == list(want.columns)
    for col in want.columns:
        assert got[col].tolist() == want[col].tolist(), col


def test_other_readers_agree(small, tmp_path):
    path = write_history(small, tmp_path, "parquet")
    want = _expected_frame(small)
    try:
        import polars as pl
    except ImportError:
        pl = None
    if pl is not None:
        assert pl.read_parquet(path)["energy_J"].to_list() == want.energy_J.tolist()
    try:
        import duckdb
    except ImportError:
        duckdb = None
    if duckdb is not None:
        n = duckdb.sql(f"select count(*) from '{path}' where reached").fetchone()[0]
        assert n == int(want.reached.sum())
    if pl is None and duckdb is None:
        pytest.skip("neither polars nor duckdb is installed")


def test_history_format_none_and_bad_format(small, tmp_path):
    assert write_history(small, tmp_path, "none") is None
    with pytest.raises(OutputError, match="feather"):
        write_history(small, tmp_path, "feather")
    assert list(tmp_path.iterdir()) == []


def test_write_outputs_refuses_a_file_as_folder(small, tmp_path):
    from banditfleet.replay.report import summarize, write_outputs

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        write_outputs(small, summarize(small), f, plots=False)
    with pytest.raises(OutputError, match="history format"):
        write_outputs(small, summarize(small), tmp_path / "new", history_format="xml", plots=False)
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------ threads
def _assert_same(a, b) -> None:
    for name in _FIELDS:
        np.testing.assert_array_equal(getattr(a.result, name), getattr(b.result, name), err_msg=name)


def test_any_thread_count_gives_the_same_result(small, monkeypatch):
    numba = pytest.importorskip("numba")
    monkeypatch.setattr(fleet_module, "MIN_GROUPS_PER_THREAD", 1)
    fleet, settings = small.fleet, small.settings
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = replay_fleet(fleet, settings)
        if numba.config.NUMBA_NUM_THREADS >= 2:
            numba.set_num_threads(2)
            two = replay_fleet(fleet, settings)
            _assert_same(one, two)
    finally:
        numba.set_num_threads(before)
    _assert_same(one, small)
    for threads in (3, 7):
        _assert_same(replay_fleet(fleet, settings, threads=threads), small)


def test_threaded_progress_counts_every_unit(small, monkeypatch):
    monkeypatch.setattr(fleet_module, "MIN_GROUPS_PER_THREAD", 1)
    calls: list[tuple[int, int]] = []
    replay_fleet(small.fleet, small.settings, progress=lambda d, n: calls.append((d, n)), threads=3)
    total = len(small.fleet) * len(small.settings)
    assert calls and all(n == total for _, n in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total


def test_threads_must_be_positive(small):
    from banditfleet.errors import TraceError

    for bad in (0, -1, 1.5, True):
        with pytest.raises(TraceError, match="threads"):
            replay_fleet(small.fleet, small.settings, threads=bad)


# -------------------------------------------------------- labels and units
def test_labels_include_seed_zero():
    assert Setting().label == "eta=0.5,beta=2,seed=0"
    assert Setting(1.0, float("inf"), seed=3).label == "eta=1,beta=inf,seed=3"


def test_terminal_csv_and_json_use_one_convention(tmp_path, capsys):
    import json

    from banditfleet.cli import main

    out = tmp_path / "out"
    assert main(["replay", "--synthetic-groups", "40", "--no-progress", "--no-plots", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    summary = pd.read_csv(out / "summary.csv")
    for col in ("energy", "time", "cost"):
        # the change in percent, from the columns with units, computed here
        want = 100 * (summary[f"{col}_{'J' if col != 'time' else 's'}"] / summary[f"baseline_{col}_{'J' if col != 'time' else 's'}"] - 1)
        np.testing.assert_allclose(summary[f"{col}_change_pct"], want, rtol=1e-12)
    total = summary.loc[summary.dataset == "TOTAL"].iloc[0]
    line = next(ln for ln in text.splitlines() if ln.startswith("TOTAL"))
    shown = [float(x) for x in re.findall(r"([+-]\d+\.\d)%", line)]
    assert shown == [round(total.energy_change_pct, 1), round(total.time_change_pct, 1), round(total.cost_change_pct, 1)]
    payload = json.loads((out / "summary.json").read_text())
    rec = next(r for r in payload["summary"] if r["dataset"] == "TOTAL")
    assert rec["cost_change_pct"] == pytest.approx(total.cost_change_pct)
    assert payload["settings"][0]["label"] == "eta=0.5,beta=2,seed=0"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["history.parquet", "summary.csv", "summary.json", "comparison.csv", "replicates.csv", "failed_groups.csv"]
    )


# ------------------------------------------------------------------ the CLI
def test_cli_history_formats(tmp_path, capsys):
    from banditfleet.cli import main

    for fmt, name in (("csv", "history.csv"), ("none", None)):
        out = tmp_path / fmt
        assert main(["replay", "--synthetic-groups", "15", "--no-progress", "--no-plots", "--history-format", fmt, "--out", str(out)]) == 0
        files = sorted(p.name for p in out.iterdir())
        stats = ("comparison.csv", "replicates.csv", "failed_groups.csv")
        assert files == sorted([n for n in (name, "summary.csv", "summary.json", *stats) if n])
    capsys.readouterr()


def test_cli_missing_folders_and_files(tmp_path, capsys):
    from banditfleet.cli import main

    assert main(["replay", "--trace-dir", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "no such folder" in capsys.readouterr().err
    f = tmp_path / "f.csv"
    f.write_text("x\n")
    assert main(["replay", "--trace-dir", str(f), "--no-progress"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["replay", "--trace-dir", str(tmp_path), "--groups", str(tmp_path / "g.csv"), "--no-progress"]) == 2
    assert "--groups: no such file" in capsys.readouterr().err
    assert main(["replay", "--synthetic-groups", "5", "--no-progress", "--out", str(f)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert f.read_text() == "x\n"

"""Replay sharded over a Dask LocalCluster (loopback only) equals the single-process replay."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed (pip install '.[test]')")

from banditfleet.errors import MissingDependencyError, ReplayError  # noqa: E402
from banditfleet.replay.distributed import replay_fleet_distributed, shard_bounds  # noqa: E402
from banditfleet.replay.fleet import Setting, replay_fleet  # noqa: E402
from banditfleet.replay.synthetic import synthetic_fleet  # noqa: E402

FIELDS = ("status", "error", "runs", "min_cost", "unit", "sub", "bs", "pl", "energy", "time", "reached", "offsets")


@pytest.fixture(scope="module")
def fleet():
    return synthetic_fleet(groups=240, seed=3)


@pytest.fixture(scope="module")
def settings():
    return [Setting(eta_knob=0.5, beta_knob=2.0), Setting(eta_knob=0.8, beta_knob=float("inf"), window_size=5)]


@pytest.fixture(scope="module")
def local(fleet, settings):
    return replay_fleet(fleet, settings).result


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _assert_same(a, b):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name


@pytest.mark.parametrize("shards", [1, 2, 4, 7])
def test_any_number_of_shards_equals_the_local_replay(client, fleet, settings, local, shards):
    result = replay_fleet_distributed(fleet, settings, client=client, shards=shards, timeout=300)
    _assert_same(result.result, local)
    # Spot-check through the reference-shaped view too.
    assert result.history(1, 17) == replay_fleet(fleet.subset([17]), settings).history(1, 0)


def test_a_worker_killed_mid_replay_changes_nothing(client, fleet, settings, local):
    pids = client.run(os.getpid)
    seen = []

    def kill_one_after_first_shard(done, total):
        seen.append(done)
        if done == 1:
            os.kill(next(iter(pids.values())), signal.SIGKILL)

    result = replay_fleet_distributed(fleet, settings, client=client, shards=12, progress=kill_one_after_first_shard, timeout=300)
    _assert_same(result.result, local)
    assert seen[-1] == 12
    # The nanny brings a replacement worker up; wait so later tests see two workers.
    deadline = time.monotonic() + 60
    while len(client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)


def _install_failing_replay(bad_group: str) -> None:
    """Worker side: make replay_fleet raise a data error for one group, as a broken trace would."""
    import banditfleet.replay.distributed as mod
    from banditfleet.errors import TraceError

    real = mod.replay_fleet

    def failing(fleet, settings):
        if bad_group in fleet.group_ids:
            raise TraceError(f"group {bad_group}: its workload has no runs at the default batch size")
        return real(fleet, settings)

    mod._real_replay_fleet = real
    mod.replay_fleet = failing


def _restore_replay() -> None:
    import banditfleet.replay.distributed as mod

    mod.replay_fleet = getattr(mod, "_real_replay_fleet", mod.replay_fleet)


def test_a_data_error_fails_the_whole_replay_naming_the_groups(client, fleet, settings):
    bad = fleet.group_ids[130]
    client.run(_install_failing_replay, bad)
    try:
        with pytest.raises(ReplayError, match=f"group {bad}: its workload") as info:
            replay_fleet_distributed(fleet, settings, client=client, shards=4, timeout=300)
        assert "shard 2" in str(info.value)
    finally:
        client.run(_restore_replay)


def test_shard_bounds_cover_every_group_once():
    for n in (0, 1, 5, 240):
        for k in (1, 2, 3, 7, 300):
            bounds = shard_bounds(n, k)
            covered = [g for a, b in bounds for g in range(a, b)]
            assert covered == list(range(n))


def test_without_dask_the_message_says_how_to_install(monkeypatch, fleet):
    import builtins

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError("No module named 'distributed'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(MissingDependencyError, match=r"pip install 'banditfleet\[distributed\]'"):
        replay_fleet_distributed(fleet, client="tcp://127.0.0.1:1")
    assert threading.active_count() >= 1


def test_cli_workers_option_writes_the_local_histories(tmp_path):
    import subprocess
    import sys

    common = [sys.executable, "-m", "banditfleet", "replay", "--synthetic-groups", "120", "--no-progress"]
    subprocess.run(common + ["--out", str(tmp_path / "local")], check=True, capture_output=True, timeout=300)
    out = subprocess.run(
        common + ["--workers", "2", "--shards", "3", "--out", str(tmp_path / "dask")], check=True, capture_output=True, text=True, timeout=300
    )
    assert "replayed" in out.stdout
    assert "INFO" not in out.stderr and "distributed." not in out.stderr  # Dask's logs only with -v
    assert (tmp_path / "local" / "history.parquet").is_file()
    import pandas as pd

    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / "history.parquet"), pd.read_parquet(tmp_path / "dask" / "history.parquet"))
    assert (tmp_path / "local" / "summary.csv").read_bytes() == (tmp_path / "dask" / "summary.csv").read_bytes()


def test_cli_unreachable_scheduler_fails_cleanly():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "banditfleet", "replay", "--synthetic-groups", "5", "--no-progress", "--scheduler", "tcp://127.0.0.1:9"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert "banditfleet replay: error:" in out.stderr

"""The compiled fleet driver (``kernels.replay.drive_pruning``) against the Python driver.

The Python driver (``engine.run_units(compiled=False)``) is itself checked against
zeus's simulator (tests/test_replay_reference.py, test_replay_fleet.py); here every
result array of the compiled driver must equal it, including with tiny queues and
history buffers (the loop pauses and resumes), a small number of units in flight,
failing units, several partitions and threads.
"""

from __future__ import annotations

import numpy as np
import pytest

from banditfleet.replay import engine
from banditfleet.replay import fleet as fleet_module
from banditfleet.replay.fleet import replay_fleet, sweep
from banditfleet.replay.synthetic import synthetic_fleet

_FIELDS = ("status", "error", "runs", "min_cost", "unit", "sub", "bs", "pl", "energy", "time", "reached", "offsets")


def _python(fleet, settings, monkeypatch, **kw):
    with monkeypatch.context() as m:
        m.setattr(fleet_module, "_COMPILED_DRIVER", False)
        return replay_fleet(fleet, settings, threads=1, **kw).result


def _assert_same(a, b):
    for name in _FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


@pytest.fixture(scope="module")
def fleet():
    return synthetic_fleet(150, seed=3)


def test_compiled_equals_python_driver_over_policies_and_knobs(fleet, monkeypatch):
    # pruning-gts with and without a window, tight early stopping (runs that never
    # start, exhausted pruning), beside partitions the Python driver keeps (gts, default)
    settings = sweep([0.5, 1.0], [1.05, 2.0], [0, 2], ["pruning-gts", "gts", "default"])
    settings += sweep([0.3], [1.5], [1], ["pruning-gts"], window_size=3)
    ours = replay_fleet(fleet, settings, threads=1).result
    ref = _python(fleet, settings, monkeypatch)
    _assert_same(ours, ref)
    assert (ours.error != 0).any()  # failing units are covered


def test_compiled_driver_pauses_and_resumes(fleet, monkeypatch):
    """Tiny queues and history buffers, three units in flight: the loop returns to Python
    to drain and to grow the history pool many times; nothing changes."""
    settings = sweep([0.5], [2.0, 1.1], [0])
    ref = _python(fleet, settings, monkeypatch)
    small_out = engine._make_out
    monkeypatch.setattr(engine, "_make_out", lambda n, capacity: small_out(n, 16))
    monkeypatch.setattr(engine, "_ACTIVE", 3)
    calls = []
    ours = replay_fleet(fleet, settings, threads=1, progress=lambda d, n: calls.append((d, n))).result
    _assert_same(ours, ref)
    assert calls[-1] == (2 * len(fleet), 2 * len(fleet))


@pytest.mark.parametrize("threads", [2, 3])
def test_compiled_driver_on_threads(fleet, monkeypatch, threads):
    monkeypatch.setattr(fleet_module, "MIN_GROUPS_PER_THREAD", 1)
    settings = sweep([0.5], [2.0], [0, 1])
    _assert_same(replay_fleet(fleet, settings, threads=threads).result, _python(fleet, settings, monkeypatch))


def test_partition_without_power_rows_needs_the_compiled_driver(fleet):
    from banditfleet import JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer
    from banditfleet.kernels.replay import MODE_GROUP
    from banditfleet.replay.engine import Partition, make_units, run_units

    t = fleet.workloads.tables
    w = int(fleet.group_wl[0])
    bso = PruningGTSBatchSizeOptimizer(concurrency=True, verbose=False)
    bso.register_jobs([0], np.array([fleet.workloads.arms[w]]), default_bs=t.arm_bs[t.wl_default_arm[[w]]])
    units = make_units(t, fleet.group_wl[:1], np.array([MODE_GROUP]), np.array([0.5]), np.array([2.0]), fleet.sub_count[:1],
                       np.zeros(1, np.int64), fleet.start_time, fleet.end_time, fleet.runtime_ratio)
    part = Partition(bso, JITPowerLimitOptimizer(verbose=False), np.zeros(1, np.int64), bso.rows([0]), None)
    with pytest.raises(ValueError, match="compiled"):
        run_units(t, units, np.ones(1, np.uint64), [part], compiled=False)
    assert run_units(t, units, np.ones(1, np.uint64), [part], compiled=True).status[0] >= 2  # ended


def test_group_seeds_equal_adler32():
    import zlib

    from banditfleet.replay.fleet import group_seed, group_seeds

    rng = np.random.default_rng(0)
    ids = ["".join(rng.choice(list("abc019-_/ "), int(rng.integers(0, 40)))) for _ in range(500)] + ["", "x" * 6000]
    for replicate in (0, 1, 12):
        assert group_seeds(ids, replicate).tolist() == [group_seed(i, replicate) for i in ids]
    assert group_seeds(["é", "a"]).tolist() == [zlib.adler32("é".encode()), zlib.adler32(b"a")]

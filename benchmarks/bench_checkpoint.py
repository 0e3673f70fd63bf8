"""Checkpoint and journal costs at fleet scale.

* ``checkpoint-1M-x-8``: ``save`` and ``load`` of a
  :class:`PruningGTSBatchSizeOptimizer` with 1,000,000 jobs x 8 batch sizes,
  ``window_size=10``, every job in the Thompson-sampling stage with the
  windows of its surviving arms full (the state a long-running scheduler
  has). ``extra_info``: ``n_jobs``, ``seconds`` (median), ``bytes``,
  ``bytes_per_job``, ``ns_per_job`` and ``mb_per_second``.
* ``journal-observe``: ``observe_many`` over a fleet in batches of 10,000
  rows with the journal on (``fsync="batch"``: one record and one fsync per
  batch) and off, on twin optimizers with the same state. ``extra_info``:
  ``observations_per_second`` on each side and ``overhead_ratio``
  (journaled time / plain time); ``fsync="never"`` is measured too.

The fleet is driven the way a scheduler would: ``predict_many`` /
``observe_many`` over all rows until pruning is over (every job has the same
default, and whether a batch size reaches the target is fixed per batch
size, so pruning always completes), then each survivor observed until its
window is full. With ``--benchmark-disable`` (CI) the fleets have 20,000
jobs, so the module only proves it works.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from banditfleet import PruningGTSBatchSizeOptimizer

ARMS = np.array([8, 16, 32, 64, 128, 256, 512, 1024], np.int64)
DEFAULT_BS = 128
REACHES = ARMS <= 256  # 512 and 1024 never reach the target: they are pruned
WINDOW = 10
FULL_JOBS = 1_000_000
QUICK_JOBS = 20_000
JOURNAL_JOBS = 200_000
JOURNAL_BATCH = 10_000


def _quick(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable"))


def _costs(rng: np.random.Generator, bs: np.ndarray) -> np.ndarray:
    """Energy-time cost: a per-batch-size curve with 10% noise."""
    base = 100.0 + 40.0 * np.abs(np.log2(bs) - 5.0)
    return base * (1.0 + 0.1 * rng.standard_normal(bs.shape[0]))


def drive_into_thompson(opt: PruningGTSBatchSizeOptimizer, n_jobs: int, seed: int = 0) -> np.ndarray:
    """Register ``n_jobs`` jobs and drive them all through pruning with full windows; returns the rows."""
    rng = np.random.default_rng(seed)
    rows = opt.register_jobs(range(n_jobs), np.tile(ARMS, (n_jobs, 1)), default_bs=DEFAULT_BS)
    reaches = dict(zip(ARMS.tolist(), REACHES.tolist()))
    lookup = np.vectorize(reaches.__getitem__, otypes=[bool])
    stage = opt._store.pr_stage
    for _ in range(4 * len(ARMS)):
        if not (stage[:n_jobs] == 0).any():
            break
        bs = opt.predict_many(rows)
        opt.observe_many(rows, bs, _costs(rng, bs), lookup(bs))
    assert (stage[:n_jobs] == 1).all(), "pruning did not complete"
    # Fill every survivor's window, then a few Thompson-sampling rounds.
    for _ in range(WINDOW):
        for b in ARMS[REACHES]:
            bs = np.full(n_jobs, b, np.int64)
            opt.observe_many(rows, bs, _costs(rng, bs))
    for _ in range(3):
        bs = opt.predict_many(rows)
        opt.observe_many(rows, bs, _costs(rng, bs))
    return rows


def _export(opt):
    return opt._store.keys(), opt._store.export_arrays()


@pytest.fixture(scope="module")
def fleet(request, tmp_path_factory):
    n = QUICK_JOBS if _quick(request.config) else FULL_JOBS
    opt = PruningGTSBatchSizeOptimizer(window_size=WINDOW, verbose=False)
    t0 = time.perf_counter()
    drive_into_thompson(opt, n)
    build = time.perf_counter() - t0
    path = tmp_path_factory.mktemp("ckpt") / "fleet.bfckpt"
    return {"opt": opt, "n": n, "path": path, "build_seconds": build}


def _report(benchmark, fleet, size: int) -> None:
    if benchmark.disabled or benchmark.stats is None:
        return
    seconds = benchmark.stats.stats.median
    n = fleet["n"]
    benchmark.extra_info.update(
        n_jobs=n,
        n_arms_per_job=len(ARMS),
        window_size=WINDOW,
        seconds=seconds,
        bytes=size,
        bytes_per_job=size / n,
        ns_per_job=seconds / n * 1e9,
        mb_per_second=size / seconds / 1e6,
        fleet_build_seconds=fleet["build_seconds"],
    )


@pytest.mark.benchmark(group="checkpoint-1M-x-8")
def test_save(benchmark, fleet):
    opt, path = fleet["opt"], fleet["path"]
    size = benchmark.pedantic(opt.save, args=(path,), rounds=1 if benchmark.disabled else 3, iterations=1)
    assert path.stat().st_size == size
    fleet["size"] = size
    _report(benchmark, fleet, size)


@pytest.mark.benchmark(group="checkpoint-1M-x-8")
def test_load(benchmark, fleet):
    opt, path = fleet["opt"], fleet["path"]
    if "size" not in fleet:
        fleet["size"] = opt.save(path)
    loaded = benchmark.pedantic(PruningGTSBatchSizeOptimizer.load, args=(path,), rounds=1 if benchmark.disabled else 3, iterations=1)
    keys, arrays = _export(loaded)
    want_keys, want = _export(opt)
    assert keys == want_keys and arrays.keys() == want.keys()
    assert all(np.array_equal(arrays[k], want[k]) for k in want)
    rows = np.arange(min(fleet["n"], 1000), dtype=np.int64)
    assert loaded.predict_many(rows).tolist() == opt.predict_many(rows).tolist()  # continues identically
    _report(benchmark, fleet, fleet["size"])


# ------------------------------------------------------------------ journal
@pytest.fixture(scope="module")
def journal_twins(request, tmp_path_factory):
    """Optimizers with the same state in the Thompson-sampling stage: journaled with
    ``fsync="batch"``, journaled with ``fsync="never"``, and plain."""
    n = QUICK_JOBS if _quick(request.config) else JOURNAL_JOBS
    root = tmp_path_factory.mktemp("journal")
    with PruningGTSBatchSizeOptimizer.open(root / "batch", window_size=WINDOW, fsync="never") as opt:
        drive_into_thompson(opt, n)
        opt.checkpoint()  # compaction: the folder is one checkpoint and an empty journal
    shutil.copytree(root / "batch", root / "never", ignore=shutil.ignore_patterns("LOCK"))
    plain = PruningGTSBatchSizeOptimizer.load(next((root / "batch").glob("checkpoint-*.bfckpt")))
    twins = {fsync: PruningGTSBatchSizeOptimizer.open(root / fsync, fsync=fsync) for fsync in ("batch", "never")}
    # Rows are per optimizer: each twin resolves the same keys itself.
    rows = {name: o.rows(range(n)) for name, o in {"plain": plain, **twins}.items()}
    yield {"plain": plain, "rows": rows, "n": n, **twins}
    for opt in twins.values():
        opt.close()


def _observe_in_batches(opt, rows, bs, costs) -> None:
    for start in range(0, len(rows), JOURNAL_BATCH):
        end = start + JOURNAL_BATCH
        opt.observe_many(rows[start:end], bs[start:end], costs[start:end])


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@pytest.mark.benchmark(group="journal-observe")
def test_observe_many_with_the_journal(benchmark, journal_twins):
    rows, n = journal_twins["rows"], journal_twins["n"]
    rng = np.random.default_rng(1)
    bs = rng.choice(ARMS[REACHES], size=n)
    costs = _costs(rng, bs)
    journaled = journal_twins["batch"]
    repeats = 1 if benchmark.disabled else 5
    benchmark.pedantic(_observe_in_batches, args=(journaled, rows["batch"], bs, costs), rounds=repeats, iterations=1)
    if benchmark.disabled:
        return
    on = benchmark.stats.stats.median
    off = _timed(lambda: _observe_in_batches(journal_twins["plain"], rows["plain"], bs, costs), repeats)
    never = _timed(lambda: _observe_in_batches(journal_twins["never"], rows["never"], bs, costs), repeats)
    benchmark.extra_info.update(
        n_jobs=n,
        batch=JOURNAL_BATCH,
        observations_per_second_journal=n / on,
        observations_per_second_plain=n / off,
        observations_per_second_fsync_never=n / never,
        overhead_ratio=on / off,
        overhead_ratio_fsync_never=never / off,
        ms_per_batch_journal=on / (n / JOURNAL_BATCH) * 1e3,
        ms_per_batch_plain=off / (n / JOURNAL_BATCH) * 1e3,
    )

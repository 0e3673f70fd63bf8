"""Benchmark cases of threads and of the journal (group ``threads`` and ``journal``).

Every row is ``kind="floor"``: the ratio is ours / comparison per unit, lower
is better.

* ``threads.predict-*``: a batch ``predict_many`` from 2 threads against the same
  two calls from 1 thread (below 1: the threads gained). On two optimizers the
  kernels run in parallel (each optimizer has its own lock and the kernels
  release the GIL); on one optimizer the lock orders them, so about 1.
* ``journal.observe-*``: a single-event ``observe`` journaled under each fsync
  mode from 1 and from 8 threads, per call (wall time / calls), against the
  same calls on an optimizer without a folder, 1 thread (times the in-memory
  call: lower is better). 8 threads under ``fsync="batch"`` share fsyncs (group
  commit), so their per-call time falls well below 1 thread's.
* ``journal.recovery-*``: reopening a folder whose journal holds N
  single-event records, against the live journaled calls (``fsync="never"``)
  that wrote them (target 0.2: recovery at least 5 times faster).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from typing import Any, Callable

import numpy as np

from banditfleet.bench.cases import Case, Config, Prepared

__all__ = ["CASES"]

_ARMS = [8, 16, 32, 64, 128, 256, 512, 1024]


def _gts(**kw: Any):
    from banditfleet import GTSBatchSizeOptimizer

    return GTSBatchSizeOptimizer(learn_reward_precision=False, reward_precision=1.0, verbose=False, **kw)


def _in_threads(n: int, work: Callable[[int], Any]) -> None:
    threads = [threading.Thread(target=work, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


# ---------------------------------------------------------------- threads
def _predict_threads(same: bool) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        n = max(cfg.jobs * 10, 2)  # long enough calls that starting 2 threads is noise
        jobs = [f"j{i}" for i in range(n)]
        first = _gts()
        first.register_jobs(jobs, np.tile(_ARMS[: cfg.arms], (n, 1)))
        second = first if same else _gts()
        if not same:
            second.register_jobs(jobs, np.tile(_ARMS[: cfg.arms], (n, 1)))
        rows = [first.rows(jobs), second.rows(jobs)]
        opts = [first, second]

        def two_threads() -> None:
            _in_threads(2, lambda t: opts[t].predict_many(rows[t]))

        def one_thread() -> None:
            opts[0].predict_many(rows[0])
            opts[1].predict_many(rows[1])

        where = "one optimizer (its lock orders the two calls)" if same else "two optimizers (one each)"
        return Prepared(two_threads, 2 * n, one_thread, 2 * n, note=f"2 batches of {n:,} decisions on {where}")

    return setup


# ---------------------------------------------------------------- journal
def _observe_journal(fsync: Any, n_threads: int) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        from banditfleet import GTSBatchSizeOptimizer

        calls = max(cfg.scalar_calls // (4 if fsync == "batch" else 1), n_threads)
        per_thread = calls // n_threads
        calls = per_thread * n_threads
        folder = tempfile.mkdtemp(prefix="banditfleet-bench-journal-", dir=cfg.workdir)
        jobs = [f"j{i}" for i in range(64)]
        opt = GTSBatchSizeOptimizer.open(folder, fsync=fsync, learn_reward_precision=False, reward_precision=1.0, verbose=False)
        mem = _gts()
        for o in (opt, mem):
            o.register_jobs(jobs, np.tile(_ARMS[:4], (64, 1)))
        rng = np.random.default_rng(0)
        plan = [(jobs[int(j)], _ARMS[int(b)], float(c)) for j, b, c in zip(rng.integers(0, 64, calls), rng.integers(0, 4, calls), rng.gamma(2.0, 30.0, calls))]

        def ours() -> None:
            def work(t: int) -> None:
                observe = opt.observe
                for job, bs, cost in plan[t * per_thread : (t + 1) * per_thread]:
                    observe(job, bs, cost)

            if n_threads == 1:
                work(0)
            else:
                _in_threads(n_threads, work)

        def in_memory() -> None:
            observe = mem.observe
            for job, bs, cost in plan:
                observe(job, bs, cost)

        def cleanup() -> None:
            opt.close()
            shutil.rmtree(folder, ignore_errors=True)

        mode = f"fsync={fsync!r}" if isinstance(fsync, str) else f"fsync={fsync} ms"
        return Prepared(ours, calls, in_memory, calls, same_repeats=True, cleanup=cleanup,
                        note=f"{calls:,} observe calls, {mode}, {n_threads} thread(s); per call = wall time / calls",
                        info={"fsync": fsync, "threads": n_threads})

    return setup


def _recovery(interleaved: bool) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        from banditfleet import GTSBatchSizeOptimizer

        n = cfg.scalar_calls * (10 if cfg.quick else 50)
        root = tempfile.mkdtemp(prefix="banditfleet-bench-recovery-", dir=cfg.workdir)
        settings = dict(learn_reward_precision=False, reward_precision=1.0, verbose=False)
        jobs = [f"j{i}" for i in range(1000)]
        rng = np.random.default_rng(1)
        plan = [(jobs[int(j)], _ARMS[int(b)], float(c)) for j, b, c in zip(rng.integers(0, 1000, n), rng.integers(0, 4, n), rng.gamma(2.0, 30.0, n))]
        state = {"k": 0}

        def fresh() -> None:
            state["k"] += 1
            state["folder"] = f"{root}/live{state['k']}"
            opt = GTSBatchSizeOptimizer.open(state["folder"], fsync="never", **settings)
            opt.register_jobs(jobs, np.tile(_ARMS[:4], (1000, 1)))
            state["opt"] = opt

        def live() -> None:
            opt = state["opt"]
            if interleaved:
                for job, _, cost in plan:
                    opt.observe(job, opt.predict(job), cost)
            else:
                for job, bs, cost in plan:
                    opt.observe(job, bs, cost)
            opt.close()
            shutil.rmtree(state["folder"], ignore_errors=True)

        kept = f"{root}/kept"
        opt = GTSBatchSizeOptimizer.open(kept, fsync="never", **settings)
        opt.register_jobs(jobs, np.tile(_ARMS[:4], (1000, 1)))
        for job, bs, cost in plan:
            opt.observe(job, opt.predict(job) if interleaved else bs, cost)
        opt.close()

        def recover() -> None:
            GTSBatchSizeOptimizer.open(kept, **settings).close()

        records = 2 * n if interleaved else n
        what = "predict + observe per call pair, random jobs" if interleaved else "observe only"
        return Prepared(recover, records, live, records, comparison_before=fresh, cleanup=lambda: shutil.rmtree(root, ignore_errors=True),
                        note=f"{records:,} single-event records ({what}) over 1,000 jobs; per record",
                        info={"records": records})

    return setup


_MODES: list[tuple[str, Any]] = [("batch", "batch"), ("10ms", 10), ("never", "never")]

CASES: list[Case] = [
    Case("threads.predict-two:1-thread", "threads", "2 threads, predict_many on 2 optimizers", "1 thread, both calls",
         "floor", "decision", "the same two batch calls made one after the other by one thread", _predict_threads(False)),
    Case("threads.predict-same:1-thread", "threads", "2 threads, predict_many on 1 optimizer", "1 thread, both calls",
         "floor", "decision", "the same two batch calls made one after the other by one thread", _predict_threads(True)),
    *[
        Case(f"journal.observe-{label}-{t}t:memory", "journal", f"observe, fsync={label}, {t} thread(s)",
             "observe in memory, 1 thread", "floor", "call",
             "the same scalar observe calls on an optimizer without a folder, one thread", _observe_journal(mode, t))
        for label, mode in _MODES
        for t in (1, 8)
    ],
    Case("journal.recovery:live", "journal", "open(): replay single-observe records", "the live journaled observes",
         "floor", "record", "the live observe calls (fsync='never') that wrote the journal", _recovery(False), target=0.2),
    Case("journal.recovery-interleaved:live", "journal", "open(): replay predict/observe records",
         "the live journaled predict + observe", "floor", "record",
         "the live predict and observe calls (fsync='never') that wrote the journal", _recovery(True), target=0.2),
]

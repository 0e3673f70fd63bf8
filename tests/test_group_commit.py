"""Journal for single events: group commit, crash safety under threads, merged recovery.

* Under ``fsync="batch"`` no call returns before an fsync that started after its
  record was written has finished, and concurrent callers share fsyncs.
* A writer killed while threads write loses no acknowledged call.
* Recovery that merges runs of records into batch calls gives exactly the
  arrays of record-by-record recovery.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import numpy as np
import pytest

import banditfleet._journaled as journaled
from banditfleet import GTSBatchSizeOptimizer
from banditfleet.errors import PruningExhaustedError
from banditfleet.journal import decode_record, scan_journal
from banditfleet.pair import open_pair
from banditfleet.power import JITPowerLimitOptimizer
from banditfleet.pruning import PruningGTSBatchSizeOptimizer

ARMS = [8, 16, 32, 64, 128]


def _journal(folder):
    return max(p for p in folder.iterdir() if p.name.startswith("journal-"))


def _records_with_ends(path):
    """(end offset, kind, arrays) of every record of a journal file."""
    payloads, good, torn = scan_journal(path)
    assert torn == 0
    out, pos = [], 0
    for p in payloads:
        pos += 12 + len(p)
        kind, arrays, _ = decode_record(p)
        out.append((pos, kind, arrays))
    assert pos == good
    return out


def test_every_acknowledged_call_was_fsynced_and_callers_share_fsyncs(tmp_path, monkeypatch):
    opt = GTSBatchSizeOptimizer.open(tmp_path, fsync="batch", learn_reward_precision=False, reward_precision=1.0, verbose=False)
    jobs = [f"j{i}" for i in range(16)]
    opt.register_jobs(jobs, [ARMS] * 16)
    journal = _journal(tmp_path)
    real_fsync = os.fsync
    durable = [0]  # journal bytes covered by a finished fsync
    journal_fsyncs = [0]
    guard = threading.Lock()

    def slow_fsync(fd):
        is_journal = os.readlink(f"/proc/self/fd/{fd}").endswith(journal.name)
        covered = os.fstat(fd).st_size  # everything written before the fsync starts
        time.sleep(0.002)  # a slow disk: callers arriving meanwhile must wait for the next one
        real_fsync(fd)
        if is_journal:
            with guard:
                durable[0] = max(durable[0], covered)
                journal_fsyncs[0] += 1

    monkeypatch.setattr(os, "fsync", slow_fsync)
    seen_at_return = {}  # cost -> durable bytes when the call returned

    def work(t):
        rng = np.random.default_rng(t)
        for i in range(25):
            cost = float(t * 1000 + i + 1)
            opt.observe(jobs[int(rng.integers(16))], ARMS[int(rng.integers(5))], cost)
            seen_at_return[cost] = durable[0]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    monkeypatch.setattr(os, "fsync", real_fsync)
    records = [(end, arrays) for end, kind, arrays in _records_with_ends(journal) if kind == "observe"]
    assert len(records) == len(seen_at_return) == 200
    for end, arrays in records:
        cost = float(arrays["costs"][0])
        assert seen_at_return[cost] >= end, f"the call with cost {cost} returned before its record was fsynced"
    # 200 calls from 8 threads on a slow disk: fsyncs are shared.
    assert journal_fsyncs[0] < 200
    opt.close()


def test_single_thread_batch_mode_fsyncs_every_call(tmp_path, monkeypatch):
    opt = GTSBatchSizeOptimizer.open(tmp_path, fsync="batch", learn_reward_precision=True, verbose=False)
    opt.register_jobs(["a"], [ARMS])
    journal = _journal(tmp_path)
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(os.fstat(fd).st_size), real_fsync(fd)))
    for i in range(5):
        opt.observe("a", 16, float(i + 1))
        assert calls and calls[-1] == journal.stat().st_size
    assert len(calls) == 5
    monkeypatch.setattr(os, "fsync", real_fsync)
    opt.close()


def test_never_mode_does_not_fsync_per_call(tmp_path, monkeypatch):
    opt = GTSBatchSizeOptimizer.open(tmp_path, fsync="never", learn_reward_precision=True, verbose=False)
    opt.register_jobs(["a"], [ARMS])
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    for i in range(5):
        opt.observe("a", 16, float(i + 1))
    assert calls == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    opt.close()


# ------------------------------------------------------------- crash tests
def _threaded_writer(folder: str, conn) -> None:
    opt = GTSBatchSizeOptimizer.open(folder, fsync="batch", learn_reward_precision=True, verbose=False)
    jobs = [f"j{i}" for i in range(8)]
    opt.register_jobs(jobs, [ARMS] * 8)
    send = threading.Lock()

    def work(t):
        rng = np.random.default_rng(t)
        for i in range(100_000):
            cost = float(t * 1_000_000 + i + 1)
            job = jobs[int(rng.integers(8))]
            bs = opt.predict(job)
            opt.observe(job, bs, cost)
            with send:
                conn.send(cost)  # acknowledged

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


@pytest.mark.parametrize("seed", [1, 2])
def test_killed_threaded_writer_loses_no_acknowledged_call(tmp_path, seed):
    ctx = mp.get_context("fork")
    rng = np.random.default_rng(seed)
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_threaded_writer, args=(str(tmp_path), send))
    child.start()
    send.close()
    acked = set()
    deadline = time.monotonic() + float(rng.uniform(0.5, 1.5))
    while (time.monotonic() < deadline or len(acked) < 20) and child.is_alive():
        if recv.poll(0.01):
            acked.add(recv.recv())
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    while True:
        try:
            if not recv.poll():
                break
            acked.add(recv.recv())
        except EOFError:
            break
    assert len(acked) >= 20
    recovered = GTSBatchSizeOptimizer.open(tmp_path, verbose=False)
    journaled_costs = {float(a["costs"][0]) for _, kind, a in _records_with_ends(_journal(tmp_path)) if kind == "observe"}
    assert acked <= journaled_costs
    # The recovered state is that of the journal's calls applied one by one.
    twin = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    twin.register_jobs([f"j{i}" for i in range(8)], [ARMS] * 8)
    for _, kind, arrays in _records_with_ends(_journal(tmp_path)):
        if kind == "predict":
            twin.predict_many([twin.jobs[r] for r in arrays["rows"].tolist()])
        elif kind == "observe":
            twin.observe_many([twin.jobs[r] for r in arrays["rows"].tolist()], arrays["batch_sizes"], arrays["costs"])
    assert _arrays(recovered) == _arrays(twin)
    recovered.close()


# ------------------------------------------------------- merged recovery
def _arrays(opt):
    if isinstance(opt, JITPowerLimitOptimizer):
        return list(opt._keys), {k: v.tobytes() for k, v in opt._export_arrays().items()}
    if hasattr(opt, "bso"):
        return _arrays(opt.bso), _arrays(opt.plo)
    return opt._store.keys(), {k: v.tobytes() for k, v in opt._store.export_arrays().items()}


def _workload(opt, seed: int, n: int) -> None:
    """Registrations, single and batch calls, interleaved, with repeated jobs."""
    rng = np.random.default_rng(seed)
    bso = opt.bso if hasattr(opt, "bso") else opt
    plo = opt.plo if hasattr(opt, "plo") else (opt if isinstance(opt, JITPowerLimitOptimizer) else None)
    pruning = isinstance(bso, PruningGTSBatchSizeOptimizer)
    jobs: list[str] = []
    dead: set[str] = set()
    for step in range(n):
        if not jobs or rng.random() < 0.03:
            new = [f"job{step}-{i}" for i in range(int(rng.integers(1, 4)))]
            if bso is not None and not isinstance(bso, JITPowerLimitOptimizer):
                extra = {"default_bs": 32} if pruning else {}
                bso.register_jobs(new, [ARMS] * len(new), **extra)
            jobs += new
        live = [j for j in jobs if j not in dead]
        if not live:
            continue
        r = rng.random()
        cost = float(rng.gamma(2.0, 30.0))
        job = live[int(rng.integers(len(live)))]
        if r < 0.04 and (job in opt if isinstance(opt, JITPowerLimitOptimizer) else True):
            # Removal and reset are barriers to regrouping (compaction renumbers rows).
            if r < 0.02:
                opt.remove_jobs([job])
                jobs.remove(job)
                dead.discard(job)
            else:
                opt.reset_jobs([job])
                dead.discard(job)
            continue
        if isinstance(bso, JITPowerLimitOptimizer):
            if r < 0.7:
                opt.observe(job, ARMS[int(rng.integers(5))], int(rng.integers(100, 300)), cost)
            else:
                pick = [live[int(i)] for i in rng.integers(0, len(live), 3)]
                opt.observe_many(pick, [16, 32, 16], rng.integers(100, 300, 3), rng.gamma(2.0, 30.0, 3))
            continue
        if r < 0.8:
            try:
                bs = bso.predict(job)
            except PruningExhaustedError:
                dead.add(job)
                continue
            if rng.random() < 0.9 or (pruning and not bso.concurrency):
                bso.observe(job, bs, cost, bool(rng.random() < 0.8) if pruning else None)
            if plo is not None:
                plo.observe(job, bs, int(rng.integers(100, 300)), cost)
        elif not pruning:
            pick = [live[int(i)] for i in rng.integers(0, len(live), 3)]
            out = bso.predict_many(pick)
            bso.observe_many(pick, out, rng.gamma(2.0, 30.0, 3))
        else:
            bso.observe(job, ARMS[int(rng.integers(5))], cost, True) if bso.concurrency else None


def _open(kind, folder):
    if kind == "gts":
        return GTSBatchSizeOptimizer.open(folder, fsync="never", learn_reward_precision=False, reward_precision=1.0, verbose=False)
    if kind == "gts-learn":
        return GTSBatchSizeOptimizer.open(folder, fsync="never", learn_reward_precision=True, verbose=False)
    if kind == "pruning":
        return PruningGTSBatchSizeOptimizer.open(folder, fsync="never", window_size=5, verbose=False)
    if kind == "pruning-concurrent":
        return PruningGTSBatchSizeOptimizer.open(folder, fsync="never", window_size=0, concurrency=True, verbose=False)
    if kind == "plo":
        return JITPowerLimitOptimizer.open(folder, fsync="never", verbose=False)
    if kind == "pair-gts":
        return open_pair(folder, GTSBatchSizeOptimizer, fsync="never", learn_reward_precision=True)
    return open_pair(folder, PruningGTSBatchSizeOptimizer, fsync="never", window_size=4)


@pytest.mark.parametrize("kind", ["gts", "gts-learn", "pruning", "pruning-concurrent", "plo", "pair-gts", "pair-pruning"])
@pytest.mark.parametrize("seed", [0, 1])
def test_merged_recovery_equals_record_by_record_recovery(tmp_path, monkeypatch, kind, seed):
    opt = _open(kind, tmp_path)
    _workload(opt, seed, 400)
    memory = _arrays(opt)
    opt.close()
    merged = _open(kind, tmp_path)
    got_merged = _arrays(merged)
    merged.close()
    monkeypatch.setattr(journaled, "MERGE_RECORDS", False)
    one_by_one = _open(kind, tmp_path)
    got_one_by_one = _arrays(one_by_one)
    one_by_one.close()
    assert got_one_by_one == memory
    assert got_merged == got_one_by_one


def test_automatic_checkpoint_when_the_journal_passes_a_size(tmp_path):
    opt = GTSBatchSizeOptimizer.open(tmp_path, fsync="never", checkpoint_bytes=4000, learn_reward_precision=True, verbose=False)
    twin = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    for o in (opt, twin):
        o.register_jobs(["a", "b"], [ARMS, ARMS])
    for i in range(200):
        job = "ab"[i % 2]
        assert opt.predict(job) == (bs := twin.predict(job))
        opt.observe(job, bs, float(i % 17 + 1))
        twin.observe(job, bs, float(i % 17 + 1))
        assert _journal(tmp_path).stat().st_size < 4000
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith((".bfj", ".bfckpt")))
    assert len(names) == 2 and names[0] != "checkpoint-000000.bfckpt"
    opt.close()
    with GTSBatchSizeOptimizer.open(tmp_path) as again:
        assert _arrays(again) == _arrays(twin)


def test_a_failed_fsync_fails_the_waiting_call_and_every_later_one(tmp_path, monkeypatch):
    from banditfleet.errors import JournalError

    opt = GTSBatchSizeOptimizer.open(tmp_path, fsync="batch", learn_reward_precision=True, verbose=False)
    opt.register_jobs(["a"], [ARMS])
    real_fsync = os.fsync

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(JournalError, match="fsync"):
        opt.observe("a", 16, 1.0)
    with pytest.raises(JournalError):
        opt.observe("a", 16, 2.0)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert opt._folder is None  # the optimizer let go of the folder, and its lock
    # The first call's record reached the file (its fsync failed, the process lives
    # on); the second was refused before writing. Reopening recovers the first.
    with GTSBatchSizeOptimizer.open(tmp_path) as again:
        assert sum(s.observations for s in again.arm_state("a").values()) == 1

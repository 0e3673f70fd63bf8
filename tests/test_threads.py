"""Many threads on one optimizer: the outcome is some sequential order of the calls.

Every test runs real threads with a tiny switch interval and random pauses, so
calls interleave differently on every run. The order the optimizer applied the
calls in is read back from its journal (records are written under the lock that
applies them), and the state in memory must equal a fresh optimizer that is
given the same calls one by one in that order, through the public batch
methods. Reopening the folder must give the same state again.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict

import numpy as np
import pytest

from banditfleet import GTSBatchSizeOptimizer
from banditfleet.checkpoint import decode_keys
from banditfleet.errors import PruningExhaustedError, PruningOrderError
from banditfleet.journal import decode_record, scan_journal
from banditfleet.pair import open_pair
from banditfleet.power import JITPowerLimitOptimizer
from banditfleet.pruning import PruningExploreManager, PruningGTSBatchSizeOptimizer

ARMS = [8, 16, 32, 64, 128]
N_THREADS = 4


@pytest.fixture(autouse=True)
def _switch_often():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _run_threads(target, n=N_THREADS):
    errors = []

    def wrap(t):
        try:
            target(t)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


def _pause(rng):
    if rng.random() < 0.3:
        time.sleep(float(rng.random()) * 1e-4)


def _journal_records(folder):
    path = max(p for p in folder.iterdir() if p.name.startswith("journal-"))
    payloads, _, torn = scan_journal(path)
    assert torn == 0
    return [decode_record(p) for p in payloads]


def _bso_state(opt):
    return opt._store.keys(), {k: v.tobytes() for k, v in opt._store.export_arrays().items()}


def _plo_state(plo):
    return list(plo._keys), {k: v.tobytes() for k, v in plo._export_arrays().items()}


def _replay_sequentially(records, bso=None, plo=None):
    """Apply journal records one by one through the public batch methods; returns
    each job key's predictions in order."""
    predictions = defaultdict(list)
    for kind, arrays, extra in records:
        member, _, call = kind.rpartition(".")
        if member == "plo" or (member == "" and bso is None):
            if "keys" in extra:
                plo.rows(decode_keys(extra["keys"], arrays))
            if call == "observe":
                keys = [plo.key_of(r) for r in arrays["rows"].tolist()]
                plo.observe_many(keys, arrays["batch_sizes"], arrays["power_limits"], arrays["costs"])
            continue
        assert call != "register", "tests register before the threads start"
        if call == "predict":
            keys = [bso.jobs[r] for r in arrays["rows"].tolist()]  # no job is removed here: row = position
            out = bso.predict_many(keys)
            for key, bs in zip(keys, out.tolist()):
                predictions[key].append(bs)
        else:
            keys = [bso.jobs[r] for r in arrays["rows"].tolist()]
            bso.observe_many(keys, arrays["batch_sizes"], arrays["costs"], arrays.get("converged"))
    return predictions


@pytest.mark.parametrize("learn", [False, True])
def test_gts_threads_equal_the_journal_order(tmp_path, learn):
    cfg = dict(learn_reward_precision=learn, reward_precision=1.0, verbose=False)
    opt = GTSBatchSizeOptimizer.open(tmp_path, **cfg)
    twin = GTSBatchSizeOptimizer(**cfg)
    own = {t: [f"t{t}-{j}" for j in range(6)] for t in range(N_THREADS)}
    shared = [f"shared-{j}" for j in range(3)]
    for o in (opt, twin):
        o.register_jobs([k for t in own for k in own[t]] + shared, [ARMS] * (6 * N_THREADS + 3))
    opt.checkpoint()  # the journal now holds only the threads' calls
    got = defaultdict(list)

    def work(t):
        rng = np.random.default_rng(t)
        for i in range(60):
            job = own[t][int(rng.integers(6))]
            if rng.random() < 0.2:
                jobs = [own[t][int(j)] for j in rng.integers(0, 6, 3)]
                out = opt.predict_many(jobs)
                for j, bs in zip(jobs, out.tolist()):
                    got[j].append(bs)
                opt.observe_many(jobs, out, rng.gamma(2.0, 30.0, 3))
            else:
                bs = opt.predict(job)
                got[job].append(bs)
                _pause(rng)
                opt.observe(job, bs, float(rng.gamma(2.0, 30.0)))
            if rng.random() < 0.3:
                opt.observe(shared[int(rng.integers(3))], ARMS[int(rng.integers(5))], float(rng.gamma(2.0, 30.0)))
            _pause(rng)

    _run_threads(work)
    predictions = _replay_sequentially(_journal_records(tmp_path), bso=twin)
    assert _bso_state(opt) == _bso_state(twin)
    for t in own:
        for job in own[t]:
            assert got[job] == predictions[job]
    memory = _bso_state(opt)
    opt.close()
    with GTSBatchSizeOptimizer.open(tmp_path) as again:
        assert _bso_state(again) == memory


def test_in_memory_observes_on_distinct_jobs_lose_nothing():
    cfg = dict(learn_reward_precision=False, reward_precision=1.0, verbose=False)
    opt = GTSBatchSizeOptimizer(**cfg)
    per_thread = [GTSBatchSizeOptimizer(**cfg) for _ in range(N_THREADS)]
    jobs = {t: [f"t{t}-{j}" for j in range(4)] for t in range(N_THREADS)}
    opt.register_jobs([k for t in jobs for k in jobs[t]], [ARMS] * (4 * N_THREADS))
    for t, o in enumerate(per_thread):
        o.register_jobs(jobs[t], [ARMS] * 4)
    calls = {}
    for t in range(N_THREADS):
        rng = np.random.default_rng(100 + t)
        calls[t] = [(jobs[t][int(rng.integers(4))], ARMS[int(rng.integers(5))], float(rng.gamma(2.0, 30.0))) for _ in range(400)]

    def work(t):
        for job, bs, cost in calls[t]:
            opt.observe(job, bs, cost)

    _run_threads(work)
    for t, o in enumerate(per_thread):
        for job, bs, cost in calls[t]:
            o.observe(job, bs, cost)
        for job in jobs[t]:
            assert opt.arm_state(job) == o.arm_state(job)


@pytest.mark.parametrize("concurrency", [False, True])
def test_pruning_threads_equal_the_journal_order(tmp_path, concurrency):
    cfg = dict(window_size=4, concurrency=concurrency, verbose=False)
    opt = PruningGTSBatchSizeOptimizer.open(tmp_path, **cfg)
    twin = PruningGTSBatchSizeOptimizer(**cfg)
    own = {t: [f"t{t}-{j}" for j in range(4)] for t in range(N_THREADS)}
    keys = [k for t in own for k in own[t]]
    for o in (opt, twin):
        o.register_jobs(keys, [ARMS] * len(keys), default_bs=32)
    opt.checkpoint()
    got = defaultdict(list)

    def work(t):
        rng = np.random.default_rng(7 + t)
        alive = list(own[t])
        for i in range(50):
            if not alive:
                return
            job = alive[int(rng.integers(len(alive)))]
            try:
                bs = opt.predict(job)
            except PruningExhaustedError:
                alive.remove(job)
                continue
            got[job].append(bs)
            _pause(rng)
            opt.observe(job, bs, float(rng.gamma(2.0, 30.0)), bool(rng.random() < 0.8))
            _pause(rng)

    _run_threads(work)
    predictions = _replay_sequentially(_journal_records(tmp_path), bso=twin)
    assert _bso_state(opt) == _bso_state(twin)
    for job in keys:
        assert got[job] == predictions[job]
    memory = _bso_state(opt)
    opt.close()
    with PruningGTSBatchSizeOptimizer.open(tmp_path) as again:
        assert _bso_state(again) == memory


def test_power_limit_threads_equal_the_journal_order(tmp_path):
    opt = JITPowerLimitOptimizer.open(tmp_path, verbose=False)
    twin = JITPowerLimitOptimizer(verbose=False)
    answers = []

    def work(t):
        rng = np.random.default_rng(30 + t)
        for i in range(80):
            job = f"job{int(rng.integers(12))}"  # shared by all threads, created on first use
            bs = ARMS[int(rng.integers(5))]
            if rng.random() < 0.2:
                jobs = [f"job{int(j)}" for j in rng.integers(0, 14, 3)]
                opt.observe_many(jobs, [bs] * 3, rng.integers(100, 300, 3), rng.gamma(2.0, 30.0, 3))
                job = jobs[0]
            else:
                opt.observe(job, bs, int(rng.integers(100, 300)), float(rng.gamma(2.0, 30.0)))
            answers.append(opt.predict_many([job], [bs])[0])
            _pause(rng)

    _run_threads(work)
    _replay_sequentially(_journal_records(tmp_path), plo=twin)
    assert _plo_state(opt) == _plo_state(twin)
    assert all(a > 0 for a in answers)  # every job had just been observed at that batch size
    memory = _plo_state(opt)
    opt.close()
    with JITPowerLimitOptimizer.open(tmp_path) as again:
        assert _plo_state(again) == memory


@pytest.mark.parametrize("bso_class", [GTSBatchSizeOptimizer, PruningGTSBatchSizeOptimizer])
def test_pair_threads_share_one_order(tmp_path, bso_class):
    settings = dict(learn_reward_precision=True) if bso_class is GTSBatchSizeOptimizer else dict(window_size=0)
    pair = open_pair(tmp_path, bso_class, **settings)
    twin_bso = bso_class(verbose=False, **settings)
    twin_plo = JITPowerLimitOptimizer(verbose=False)
    own = {t: [f"t{t}-{j}" for j in range(3)] for t in range(N_THREADS)}
    keys = [k for t in own for k in own[t]]
    extra = {} if bso_class is GTSBatchSizeOptimizer else {"default_bs": 32}
    pair.bso.register_jobs(keys, [ARMS] * len(keys), **extra)
    twin_bso.register_jobs(keys, [ARMS] * len(keys), **extra)
    pair.checkpoint()
    assert pair.bso._lock is pair.plo._lock is pair._lock
    got = defaultdict(list)

    def work(t):
        rng = np.random.default_rng(50 + t)
        alive = list(own[t])
        for i in range(40):
            if not alive:
                return
            job = alive[int(rng.integers(len(alive)))]
            try:
                bs = pair.bso.predict(job)
            except PruningExhaustedError:
                alive.remove(job)
                continue
            got[job].append(bs)
            pl = pair.plo.predict(job, bs) or int(rng.integers(150, 300))
            _pause(rng)
            cost = float(rng.gamma(2.0, 30.0))
            pair.plo.observe(job, bs, pl, cost)
            pair.bso.observe(job, bs, cost, bool(rng.random() < 0.85))

    _run_threads(work)
    records = _journal_records(tmp_path)
    predictions = _replay_sequentially(records, bso=twin_bso, plo=twin_plo)
    assert _bso_state(pair.bso) == _bso_state(twin_bso)
    assert _plo_state(pair.plo) == _plo_state(twin_plo)
    for job in keys:
        assert got[job] == predictions[job]
    memory = (_bso_state(pair.bso), _plo_state(pair.plo))
    pair.close()
    again = open_pair(tmp_path, bso_class)
    assert (_bso_state(again.bso), _plo_state(again.plo)) == memory
    again.close()


def test_explore_manager_from_threads_prunes_like_one_thread():
    def cost(bs):
        return float(abs(bs - 40) + 1)

    def reached(bs):
        return bs <= 64

    alone = PruningExploreManager(ARMS, 32)
    while True:
        try:
            bs = alone.next_batch_size()
        except StopIteration as stop:
            want = stop.value
            break
        alone.report_batch_size_result(bs, cost(bs), reached(bs))

    shared = PruningExploreManager(ARMS, 32)
    results = []

    def work(t):
        rng = np.random.default_rng(t)
        for _ in range(400):
            try:
                bs = shared.next_batch_size()
            except StopIteration as stop:
                results.append(stop.value)
                return
            except PruningOrderError:
                _pause(rng)
                continue
            try:
                shared.report_batch_size_result(bs, cost(bs), reached(bs))
            except PruningOrderError:
                pass  # another thread asked in between; the state machine refused, unchanged
            _ = (shared.batch_sizes, shared.default, shared.expecting)
            _pause(rng)

    _run_threads(work)
    # Whatever the interleaving, results depend only on the batch size: same survivors.
    assert results and all(r == want for r in results)

"""Optimizer pairs: a batch-size optimizer and its power-limit optimizer as one durable unit.

Driven like a scheduler (``bso.predict_many`` -> ``plo.predict_many`` ->
observe both), a pair that is saved and loaded, or journaled, closed and
reopened at random points equals one that never stopped; a writer killed with
SIGKILL at random moments (checkpoints included) loses no acknowledged call
of either optimizer; bad files are refused naming the file.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet import (
    NEEDS_PROFILING,
    GTSBatchSizeOptimizer,
    JITPowerLimitOptimizer,
    OptimizerPair,
    PruningGTSBatchSizeOptimizer,
    load_pair,
    open_pair,
    save_pair,
)
from banditfleet.checkpoint import FORMAT_VERSION, MAGIC, read_checkpoint, write_checkpoint
from banditfleet.errors import CheckpointError, FolderLockedError, JournalError
from banditfleet.journal import decode_record, scan_journal

ARMS = [8, 16, 32, 64, 128, 256]
POWER_LIMITS = [300, 250, 200, 175]
SETTINGS = {
    "gts": (GTSBatchSizeOptimizer, {"learn_reward_precision": True, "seed": 7}),
    "pruning": (PruningGTSBatchSizeOptimizer, {"window_size": 3, "seed": 11}),
    "pruning-unbounded": (PruningGTSBatchSizeOptimizer, {"window_size": 0, "concurrency": True}),
}


def _new_pair(kind: str) -> OptimizerPair:
    cls, cfg = SETTINGS[kind]
    return OptimizerPair(cls(**cfg, verbose=False), JITPowerLimitOptimizer(verbose=False))


def _state(pair: OptimizerPair):
    bso, plo = pair.bso, pair.plo
    return (
        bso.jobs,
        {k: v.tobytes() for k, v in bso._store.export_arrays().items()},
        plo.jobs,
        {k: v.tobytes() for k, v in plo.table.arrays().items()},
    )


def scheduler(current, seed: int, n_steps: int, max_jobs: int = 8):
    """Drive ``current()`` (the pair in use) like a scheduler.

    Yields after every call that may change state (``("call", output)``) and
    between steps (``("pause", None)``), where a driver may save, reload,
    checkpoint or reopen. Everything depends on ``seed`` and on the pair's
    decisions only, so two pairs driven alike must say the same.
    """
    rng = np.random.default_rng(seed)
    keys: list = []
    for _ in range(n_steps):
        pair = current()
        pruning = isinstance(pair.bso, PruningGTSBatchSizeOptimizer)
        r = rng.random()
        if not keys or (r < 0.12 and len(keys) < max_jobs):
            new = [("job", len(keys) + i) for i in range(int(rng.integers(1, 3)))]
            if pruning:
                # 8..64 always reach the target, so no pruning round ends empty.
                pair.bso.register_jobs(new, [ARMS] * len(new), default_bs=32)
            else:
                pair.bso.register_jobs(new, [ARMS] * len(new))
            keys += new
            yield ("call", None)
            continue
        if r < 0.25:
            yield ("pause", None)
            continue
        idx = rng.choice(len(keys), size=int(rng.integers(1, len(keys) + 1)), replace=False)
        jobs = [keys[i] for i in idx]
        rows = pair.bso.rows(jobs)
        bs = pair.bso.predict_many(rows)
        yield ("call", bs.tolist())
        pair = current()
        pl = pair.plo.predict_many(jobs, bs)  # never changes state
        need = pl == NEEDS_PROFILING
        pl[need] = rng.choice(POWER_LIMITS, size=int(need.sum()))  # profile those
        costs = rng.gamma(3.0, 40.0, size=len(jobs)) * (1 + np.log2(bs) / 8)
        if rng.random() < 0.5:
            pair.plo.observe_many(jobs, bs, pl, costs)  # keys: creates rows for new jobs
        else:
            plo_rows = pair.plo.rows(jobs)  # journals the rows it creates
            yield ("call", plo_rows.array.tolist())
            pair = current()
            pair.plo.observe_many(plo_rows, bs, pl, costs)
        yield ("call", pl.tolist())
        pair = current()
        pair.bso.observe_many(rows, bs, costs, bs <= 64 if pruning else None)
        yield ("call", None)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32),
    n_steps=st.integers(1, 50),
    kind=st.sampled_from(list(SETTINGS)),
    journaled=st.booleans(),
)
def test_pair_stop_and_resume_anywhere_equals_never_stopping(tmp_path_factory, seed, n_steps, kind, journaled):
    folder = tmp_path_factory.mktemp("pair")
    cls, cfg = SETTINGS[kind]
    never = [_new_pair(kind)]
    mine = [open_pair(folder / "state", cls, **cfg) if journaled else _new_pair(kind)]
    pauses = 0
    for got, want in zip(scheduler(lambda: mine[0], seed, n_steps), scheduler(lambda: never[0], seed, n_steps)):
        assert got == want
        if got[0] != "pause":
            continue
        pauses += 1
        if journaled:
            if pauses % 2:
                mine[0].checkpoint()
            mine[0].close()
            mine[0] = open_pair(folder / "state", cls)
        else:
            path = folder / f"pair{pauses}.bfckpt"
            save_pair(path, mine[0].bso, mine[0].plo)
            mine[0] = OptimizerPair(*load_pair(path))
        assert _state(mine[0]) == _state(never[0])
    assert _state(mine[0]) == _state(never[0])
    if journaled:
        mine[0].close()
        with open_pair(folder / "state", cls, **cfg) as again:
            assert _state(again) == _state(never[0])


def _driven(kind: str = "pruning", n_steps: int = 40, seed: int = 3) -> OptimizerPair:
    pair = [_new_pair(kind)]
    for _ in scheduler(lambda: pair[0], seed, n_steps):
        pass
    return pair[0]


def test_one_file_holds_both(tmp_path):
    pair = _driven()
    p = tmp_path / "pair.bfckpt"
    size = save_pair(p, pair.bso, pair.plo)
    assert p.stat().st_size == size
    header, keys, arrays = read_checkpoint(p)
    assert header["optimizer"] == "pair:PruningGTSBatchSizeOptimizer+JITPowerLimitOptimizer"
    assert header["settings"] == pair.bso._settings()
    assert keys == pair.bso.jobs
    assert all(name.startswith(("bso.", "plo.")) for name in arrays)
    assert {"plo.entry.row", "bso.job.arm_start", "bso.arm.pr_member"} <= set(arrays)
    bso, plo = load_pair(p)
    assert type(bso) is PruningGTSBatchSizeOptimizer and type(plo) is JITPowerLimitOptimizer
    assert _state(OptimizerPair(bso, plo)) == _state(pair)
    again = OptimizerPair.load(p, bso_class=PruningGTSBatchSizeOptimizer)
    assert _state(again) == _state(pair)


def test_bad_pair_files_are_refused_naming_the_file(tmp_path):
    pair = _driven()
    p = tmp_path / "pair.bfckpt"
    save_pair(p, pair.bso, pair.plo)
    good = p.read_bytes()
    bad = tmp_path / "bad.bfckpt"

    def refused(match=None):
        with pytest.raises(CheckpointError, match=match) as info:
            load_pair(bad)
        assert str(bad) in str(info.value)

    for n in [0, 5, 30, len(good) // 3, len(good) - 1]:
        bad.write_bytes(good[:n])
        refused()
    raw = bytearray(good)
    raw[40] ^= 0x10
    bad.write_bytes(bytes(raw))
    refused("corrupted")
    raw = bytearray(good)
    raw[len(good) - 200] ^= 0x01  # inside the last arrays
    bad.write_bytes(bytes(raw))
    try:
        load_pair(bad)
    except CheckpointError as exc:
        assert str(bad) in str(exc)
    raw = bytearray(good)
    struct.pack_into("<I", raw, len(MAGIC), FORMAT_VERSION + 1)
    bad.write_bytes(bytes(raw))
    refused("newer than this banditfleet reads")
    pair.bso.save(bad)
    refused("holds a PruningGTSBatchSizeOptimizer checkpoint, not an optimizer pair")
    with pytest.raises(CheckpointError, match="not a PruningGTSBatchSizeOptimizer one"):
        PruningGTSBatchSizeOptimizer.load(p)
    with pytest.raises(CheckpointError, match="not a JITPowerLimitOptimizer one"):
        JITPowerLimitOptimizer.load(p)
    with pytest.raises(CheckpointError, match="not a pair:GTSBatchSizeOptimizer"):
        load_pair(p, GTSBatchSizeOptimizer)
    header, keys, arrays = read_checkpoint(p)
    write_checkpoint(bad, "pair:Mystery+JITPowerLimitOptimizer", header["settings"], keys, arrays, header["extra"])
    refused("unknown batch-size optimizer 'Mystery'")
    # Forged contents of either member are refused as inconsistent state.
    forged = dict(arrays)
    forged["plo.entry.row"] = forged["plo.entry.row"] + 10**6
    write_checkpoint(bad, header["optimizer"], header["settings"], keys, forged, header["extra"])
    refused("inconsistent state: array 'entry.row'")
    forged = dict(arrays)
    forged["bso.job.arm_count"] = forged["bso.job.arm_count"] * 0
    write_checkpoint(bad, header["optimizer"], header["settings"], keys, forged, header["extra"])
    refused("inconsistent state")
    forged = dict(arrays)
    forged["other.thing"] = np.zeros(2)
    write_checkpoint(bad, header["optimizer"], header["settings"], keys, forged, header["extra"])
    refused("neither optimizer")
    write_checkpoint(bad, header["optimizer"], header["settings"], keys, arrays, {})
    refused("power-limit job keys")
    write_checkpoint(bad, header["optimizer"], {"window_size": 1}, keys, arrays, header["extra"])
    refused("settings are not valid")


def test_unsavable_keys_are_refused_with_nothing_written(tmp_path):
    pair = _driven("gts")
    p = tmp_path / "pair.bfckpt"
    save_pair(p, pair.bso, pair.plo)
    before = p.read_bytes()
    pair.plo.observe(2.5, 8, 100, 1.0)
    with pytest.raises(CheckpointError, match="cannot be saved"):
        save_pair(p, pair.bso, pair.plo)
    assert p.read_bytes() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["pair.bfckpt"]


def test_one_folder_one_lock_one_journal_tagged_records(tmp_path):
    cls, cfg = SETTINGS["pruning"]
    pair = open_pair(tmp_path, cls, **cfg)
    steps = scheduler(lambda: pair, 5, 30)
    for _ in steps:
        pass
    assert pair.bso._folder is pair._folder is pair.plo._folder
    with pytest.raises(JournalError, match="part of an OptimizerPair"):
        pair.bso.checkpoint()
    with pytest.raises(JournalError, match="part of an OptimizerPair"):
        pair.plo.close()
    with pytest.raises(FolderLockedError):
        open_pair(tmp_path, cls)
    with GTSBatchSizeOptimizer.open(tmp_path / "g", learn_reward_precision=True) as journaled:
        with pytest.raises(JournalError, match="own"):
            OptimizerPair(journaled, JITPowerLimitOptimizer())
    pair.close()
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert names == ["LOCK", "checkpoint-000000.bfckpt", "journal-000000.bfj", "settings.json"]
    payloads, _, torn = scan_journal(tmp_path / "journal-000000.bfj")
    kinds = {decode_record(p)[0] for p in payloads}
    assert torn == 0 and kinds <= {"bso.register", "bso.predict", "bso.observe", "plo.register", "plo.observe"}
    assert {"bso.register", "bso.predict", "bso.observe", "plo.observe"} <= kinds
    # After close the members are plain optimizers again.
    assert pair.bso._folder is None and pair.plo._folder is None
    with pytest.raises(JournalError, match="needs an optimizer from open"):
        pair.bso.checkpoint()


def test_open_pair_checks_the_folder(tmp_path):
    open_pair(tmp_path / "p", PruningGTSBatchSizeOptimizer, window_size=4).close()
    with pytest.raises(JournalError, match="window_size"):
        open_pair(tmp_path / "p", PruningGTSBatchSizeOptimizer, window_size=5)
    with pytest.raises(JournalError, match="not a pair:GTSBatchSizeOptimizer"):
        open_pair(tmp_path / "p", GTSBatchSizeOptimizer)
    with pytest.raises(JournalError, match="holds a pair:PruningGTSBatchSizeOptimizer"):
        PruningGTSBatchSizeOptimizer.open(tmp_path / "p")
    PruningGTSBatchSizeOptimizer.open(tmp_path / "single").close()
    with pytest.raises(JournalError, match="not a pair"):
        open_pair(tmp_path / "single", PruningGTSBatchSizeOptimizer)
    with pytest.raises(Exception, match="batch-size optimizer class"):
        open_pair(tmp_path / "x", JITPowerLimitOptimizer)
    with open_pair(tmp_path / "p", PruningGTSBatchSizeOptimizer, window_size=4) as pair:
        assert pair.bso.window_size == 4 and "folder=" in repr(pair)
    assert pair._folder is None


# ------------------------------------------------------------------- crashes
def _crash_child(folder: str, kind: str, seed: int, conn) -> None:
    cls, cfg = SETTINGS[kind]
    pair = open_pair(folder, cls, **cfg)
    for i, (what, _) in enumerate(scheduler(lambda: pair, seed, 100_000, max_jobs=12)):
        if what == "pause":
            pair.checkpoint()
        conn.send(i)  # acknowledged


def _states_after(kind: str, seed: int, counts: list[int]):
    pair = _new_pair(kind)
    states = {}
    if 0 in counts:
        states[0] = _state(pair)
    for i, _ in enumerate(scheduler(lambda: pair, seed, 100_000, max_jobs=12)):
        if i + 1 in counts:
            states[i + 1] = _state(pair)
        if i + 1 >= max(counts):
            break
    return states


@pytest.mark.parametrize("kind, seed", [("pruning", 1), ("pruning", 2), ("gts", 3), ("pruning-unbounded", 4)])
def test_sigkill_at_random_moments_loses_no_acknowledged_call(tmp_path, kind, seed):
    ctx = mp.get_context("fork")
    rng = np.random.default_rng(seed)
    cls, cfg = SETTINGS[kind]
    _states_after(kind, seed, [200])  # compiled kernels are loaded before the fork
    for attempt in range(3):
        folder = tmp_path / f"run{attempt}"
        recv, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_crash_child, args=(str(folder), kind, seed, send))
        child.start()
        send.close()
        acked = -1
        deadline = time.monotonic() + float(rng.uniform(0.3, 1.5))
        while time.monotonic() < deadline and child.is_alive():
            if recv.poll(0.01):
                acked = recv.recv()
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        while recv.poll():
            try:
                acked = recv.recv()
            except EOFError:
                break
        with open_pair(folder, cls, **cfg) as recovered:  # (a kill inside open may leave no folder yet)
            got = _state(recovered)
        # Every acknowledged call is there; the next one may be too (journaled, not yet acknowledged).
        candidates = _states_after(kind, seed, [acked + 1, acked + 2])
        assert got in candidates.values(), f"acknowledged {acked + 1} calls; the recovered pair matches neither candidate"
        assert acked > 0


def _fill_big(pair: OptimizerPair) -> None:
    n = 20_000
    keys = [f"job{i}" for i in range(n)]
    rows = pair.bso.register_jobs(keys, np.tile(np.array(ARMS), (n, 1)))
    rng = np.random.default_rng(0)
    for _ in range(4):
        bs = pair.bso.predict_many(rows)
        pl = pair.plo.predict_many(keys, bs)
        pl[pl == NEEDS_PROFILING] = 300
        costs = rng.gamma(2.0, 30.0, size=n)
        pair.plo.observe_many(keys, bs, pl, costs)
        pair.bso.observe_many(rows, bs, costs)


def _checkpointing_child(folder: str, conn) -> None:
    pair = open_pair(folder, GTSBatchSizeOptimizer, learn_reward_precision=True)
    _fill_big(pair)
    conn.send("filled")
    while True:
        pair.checkpoint()
        conn.send("checkpointed")


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.1, 0.3])
def test_sigkill_during_checkpoint_keeps_both_optimizers(tmp_path, delay):
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_checkpointing_child, args=(str(tmp_path), send))
    child.start()
    send.close()
    assert recv.recv() == "filled"
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    expected = OptimizerPair(GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False), JITPowerLimitOptimizer(verbose=False))
    _fill_big(expected)
    with open_pair(tmp_path, GTSBatchSizeOptimizer) as recovered:
        assert _state(recovered) == _state(expected)
        recovered.checkpoint()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("checkpoint-")]) == 1


_HOLDER = """
import sys, time
from banditfleet import PruningGTSBatchSizeOptimizer, open_pair
pair = open_pair(sys.argv[1], PruningGTSBatchSizeOptimizer, window_size=4)
pair.plo.observe("a", 8, 100, 1.0)
print("open", flush=True)
time.sleep(60)
"""


def test_a_second_process_gets_folder_locked_error(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        with pytest.raises(FolderLockedError, match="another process"):
            open_pair(tmp_path, PruningGTSBatchSizeOptimizer)
        with pytest.raises(FolderLockedError):
            JITPowerLimitOptimizer.open(tmp_path)
        child.send_signal(signal.SIGKILL)
        child.wait()
        with open_pair(tmp_path, PruningGTSBatchSizeOptimizer) as pair:  # the lock died with its process
            assert pair.plo.predict("a", 8) == 100
    finally:
        child.kill()
        child.wait()

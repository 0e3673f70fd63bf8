"""JITPowerLimitOptimizer and PruningExploreManager: save/load and journaled folders.

A power-limit optimizer that is saved and loaded, or journaled, closed and
reopened at random points must hold the same keys and entries and make the
same predictions as one that never stopped; a pruning manager that is saved
and loaded anywhere must hand out the same batch sizes, errors and survivors.
Bad files and forged states are refused with a CheckpointError naming the file.
"""

from __future__ import annotations

import logging
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet import GTSBatchSizeOptimizer, JITPowerLimitOptimizer, Job, PruningExploreManager
from banditfleet.checkpoint import FORMAT_VERSION, MAGIC, read_checkpoint, write_checkpoint
from banditfleet.errors import BanditFleetError, CheckpointError, FolderLockedError, JournalError
from banditfleet.kernels.power import find_entry
from banditfleet.power import PowerLimitTable

BATCH_SIZES = [8, 16, 32, 64]
POWER_LIMITS = [300, 250, 200, 150]


def _plo_state(opt):
    return opt.jobs, {k: v.tobytes() for k, v in opt.table.arrays().items()}


def _key_pool(kind: str) -> list:
    if kind == "int":
        return list(range(-3, 9))
    if kind == "str":
        return [f"job-{i}" for i in range(12)]
    job = Job("cifar100", "resnet", "adam", 0.5, 10, 32)
    return [3, "x", ("t", 1), ("t", (2, "u")), job, Job("imagenet", "vit", "sgd", 0.7, 5), -7, "ünïcode"]


def _plo_ops(seed: int, n: int, kind: str):
    """Deterministic calls: scalar and batch observes (keys, rows), row creation, predictions, pauses."""
    rng = np.random.default_rng(seed)
    pool = _key_pool(kind)
    for _ in range(n):
        r = rng.random()
        m = int(rng.integers(1, 6))
        keys = [pool[i] for i in rng.integers(0, len(pool), size=m)]
        bs = rng.choice(BATCH_SIZES, size=m)
        pl = rng.choice(POWER_LIMITS, size=m)
        costs = rng.integers(1, 6, size=m).astype(float)  # small integers: equal costs happen
        if r < 0.1:
            yield ("pause",)
        elif r < 0.25:
            yield ("observe", keys[0], int(bs[0]), int(pl[0]), float(costs[0]))
        elif r < 0.45:
            yield ("observe_keys", keys, bs, pl, costs)
        elif r < 0.6:
            yield ("observe_rows", rng.integers(0, 1 << 30, size=m), bs, pl, costs)
        elif r < 0.7:
            yield ("rows", keys)
        elif r < 0.8:
            yield ("rows_nocreate", keys)
        else:
            yield ("predict", keys, bs)


def _plo_apply(opt, call):
    kind = call[0]
    if kind == "observe":
        opt.observe(*call[1:])
    elif kind == "observe_keys":
        opt.observe_many(*call[1:])
    elif kind == "observe_rows":
        if len(opt) == 0:
            return "no rows"
        rows = opt.rows([opt.key_of(int(r)) for r in call[1] % len(opt)])
        opt.observe_many(rows, *call[2:])
    elif kind == "rows":
        return opt.rows(call[1]).array.tolist()
    elif kind == "rows_nocreate":
        return opt.rows(call[1], create=False).array.tolist()
    elif kind == "predict":
        return opt.predict_many(call[1], call[2]).tolist(), [opt.predict(k, int(b)) for k, b in zip(call[1], call[2])]
    return None


def _all_predictions(opt):
    jobs = opt.jobs
    keys = [k for k in jobs for _ in BATCH_SIZES]
    return opt.predict_many(keys, np.tile(BATCH_SIZES, len(jobs))).tolist() if jobs else []


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 60),
    kind=st.sampled_from(["int", "str", "mixed"]),
    journaled=st.booleans(),
)
def test_power_limits_stop_and_resume_anywhere_equals_never_stopping(tmp_path_factory, seed, n, kind, journaled):
    folder = tmp_path_factory.mktemp("plo")
    never = JITPowerLimitOptimizer(verbose=False)
    opt = JITPowerLimitOptimizer.open(folder / "state") if journaled else JITPowerLimitOptimizer(verbose=False)
    pauses = 0
    for call in _plo_ops(seed, n, kind):
        if call[0] == "pause":
            pauses += 1
            if journaled:
                if pauses % 2:
                    opt.checkpoint()
                opt.close()
                opt = JITPowerLimitOptimizer.open(folder / "state")
            else:
                path = folder / f"p{pauses}.bfckpt"
                opt.save(path)
                opt = JITPowerLimitOptimizer.load(path)
            assert _plo_state(opt) == _plo_state(never)
            continue
        assert _plo_apply(opt, call) == _plo_apply(never, call)
    assert _plo_state(opt) == _plo_state(never)
    assert _all_predictions(opt) == _all_predictions(never)
    if journaled:
        opt.close()
        with JITPowerLimitOptimizer.open(folder / "state") as again:
            assert _plo_state(again) == _plo_state(never)
            assert _all_predictions(again) == _all_predictions(never)


def _filled(n_jobs: int = 30, seed: int = 0) -> JITPowerLimitOptimizer:
    rng = np.random.default_rng(seed)
    opt = JITPowerLimitOptimizer(verbose=False)
    for _ in range(4):
        keys = [f"j{i}" for i in rng.integers(0, n_jobs, size=50)]
        opt.observe_many(keys, rng.choice(BATCH_SIZES, 50), rng.choice(POWER_LIMITS, 50), rng.gamma(2.0, 10.0, 50))
    opt.rows(["never-observed"])  # a row with no entries is state too
    return opt


def test_load_rebuilds_the_hash_table(tmp_path):
    opt = _filled()
    opt.save(tmp_path / "p.bfckpt")
    back = JITPowerLimitOptimizer.load(tmp_path / "p.bfckpt")
    assert _plo_state(back) == _plo_state(opt)
    assert "never-observed" in back and back.state("never-observed") == {}
    t = back.table
    for e in range(len(t)):
        assert find_entry(t.entry_row[e], t.entry_batch_size[e], t.table, t.entry_row, t.entry_batch_size) == e
    assert all(back.state(k) == opt.state(k) for k in opt.jobs)
    # It keeps learning like the original, including new entries past the loaded capacity.
    for o in (opt, back):
        o.observe_many([f"n{i}" for i in range(100)], [8] * 100, [100] * 100, np.arange(100.0))
    assert _plo_state(back) == _plo_state(opt)


def test_keys_of_every_supported_kind_survive(tmp_path):
    job = Job("cifar100", "resnet", "adam", 0.5, 10, 32, command=["python", "train.py"])
    for keys in ([1, 2, 2**62], ["a", "ß", ""], [job, ("t", 1), 7, "s"]):
        opt = JITPowerLimitOptimizer(verbose=False)
        opt.observe_many(keys, [8] * len(keys), [200] * len(keys), [1.0] * len(keys))
        opt.save(tmp_path / "k.bfckpt")
        back = JITPowerLimitOptimizer.load(tmp_path / "k.bfckpt")
        assert back.jobs == keys and [type(k) for k in back.jobs] == [type(k) for k in keys]
        assert back.predict(keys[0], 8) == 200


@pytest.mark.parametrize("key", [1.5, None, b"raw", frozenset({1}), ("ok", 2.5), True])
def test_unsupported_keys_are_refused_at_save_time_with_nothing_written(tmp_path, key):
    p = tmp_path / "p.bfckpt"
    _filled().save(p)
    before = p.read_bytes()
    opt = _filled()
    opt.observe(key, 8, 100, 1.0)  # fine in memory
    with pytest.raises(CheckpointError, match="cannot be saved|booleans"):
        opt.save(p)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["p.bfckpt"]


def test_a_journaled_optimizer_refuses_unsavable_keys_before_any_change(tmp_path):
    opt = JITPowerLimitOptimizer.open(tmp_path)
    opt.observe_many(["a", "b"], [8, 16], [300, 300], [1.0, 2.0])
    before = _plo_state(opt)
    with pytest.raises(CheckpointError, match="cannot be saved"):
        opt.observe(1.5, 8, 100, 1.0)
    with pytest.raises(CheckpointError, match="cannot be saved"):
        opt.observe_many(["a", None], [8, 8], [100, 100], [1.0, 1.0])
    with pytest.raises(CheckpointError, match="cannot be saved"):
        opt.rows(["c", b"bytes"])
    assert _plo_state(opt) == before and 1.5 not in opt and "c" not in opt
    opt.rows(["a", "b"], create=True)  # known keys: nothing to journal
    opt.close()
    with JITPowerLimitOptimizer.open(tmp_path) as again:
        assert _plo_state(again) == before


def _forge(path, **changes):
    header, keys, arrays = read_checkpoint(path)
    arrays = dict(arrays)
    for name, value in changes.items():
        name = name.replace("__", ".")
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    write_checkpoint(path, header["optimizer"], header["settings"], keys, arrays)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: {"entry__row": a["entry.row"] + 1000}, "entry.row"),
        (lambda a: {"entry__row": a["entry.row"] - a["entry.row"] - 1}, "entry.row"),
        (lambda a: {"entry__batch_size": a["entry.batch_size"] * 0}, "entry.batch_size"),
        (lambda a: {"entry__best_power_limit": -a["entry.best_power_limit"]}, "entry.best_power_limit"),
        (lambda a: {"entry__observe_count": a["entry.observe_count"] * 0}, "entry.observe_count"),
        (lambda a: {"entry__best_cost": a["entry.best_cost"] * np.nan}, "entry.best_cost"),
        (lambda a: {"entry__row": a["entry.row"] * 0, "entry__batch_size": a["entry.batch_size"] * 0 + 8}, "two entries"),
        (lambda a: {"entry__best_cost": a["entry.best_cost"][:-1]}, "entry.best_cost"),
        (lambda a: {"entry__observe_count": a["entry.observe_count"].astype(np.int32)}, "entry.observe_count"),
        (lambda a: {"entry__observe_count": None}, "missing"),
        (lambda a: {"entry__extra": a["entry.row"]}, "unexpected"),
    ],
)
def test_inconsistent_state_is_refused_naming_the_file(tmp_path, change, message):
    p = tmp_path / "p.bfckpt"
    _filled().save(p)
    _, _, arrays = read_checkpoint(p)
    _forge(p, **change(arrays))
    with pytest.raises(CheckpointError, match="inconsistent state") as info:
        JITPowerLimitOptimizer.load(p)
    assert str(p) in str(info.value) and message in str(info.value)


def test_duplicate_keys_and_stray_settings_are_refused(tmp_path):
    p = tmp_path / "p.bfckpt"
    opt = _filled()
    opt.save(p)
    header, keys, arrays = read_checkpoint(p)
    write_checkpoint(p, header["optimizer"], {}, keys[:-1] + [keys[0]], arrays)
    with pytest.raises(CheckpointError, match="duplicate job keys"):
        JITPowerLimitOptimizer.load(p)
    write_checkpoint(p, header["optimizer"], {"window_size": 3}, keys, arrays)
    with pytest.raises(CheckpointError, match="settings are not valid"):
        JITPowerLimitOptimizer.load(p)


def test_bad_files_are_refused_naming_the_file(tmp_path):
    p = tmp_path / "p.bfckpt"
    _filled().save(p)
    good = p.read_bytes()
    bad = tmp_path / "bad.bfckpt"
    for n in [0, 10, 40, len(good) // 2, len(good) - 1]:
        bad.write_bytes(good[:n])
        with pytest.raises(CheckpointError) as info:
            JITPowerLimitOptimizer.load(bad)
        assert str(bad) in str(info.value)
    for pos in [30, len(good) // 2, len(good) - 20]:
        raw = bytearray(good)
        raw[pos] ^= 0x5A
        bad.write_bytes(bytes(raw))
        try:
            back = JITPowerLimitOptimizer.load(bad)
        except CheckpointError as exc:
            assert str(bad) in str(exc)
        else:  # only alignment padding may change unnoticed
            assert _plo_state(back) == _plo_state(JITPowerLimitOptimizer.load(p))
    raw = bytearray(good)
    struct.pack_into("<I", raw, len(MAGIC), FORMAT_VERSION + 1)
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="newer than this banditfleet reads") as info:
        JITPowerLimitOptimizer.load(bad)
    assert str(bad) in str(info.value)
    gts = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    gts.save(bad)
    with pytest.raises(CheckpointError, match="GTSBatchSizeOptimizer checkpoint, not a JITPowerLimitOptimizer one"):
        JITPowerLimitOptimizer.load(bad)
    with pytest.raises(CheckpointError, match="JITPowerLimitOptimizer checkpoint, not a GTSBatchSizeOptimizer one"):
        GTSBatchSizeOptimizer.load(p)


# ------------------------------------------------------------------ journal
def _journal(folder):
    return next(p for p in folder.iterdir() if p.name.startswith("journal-"))


def test_torn_journal_tail_is_dropped_and_nothing_before_is_lost(tmp_path, caplog):
    opt = JITPowerLimitOptimizer.open(tmp_path)
    states = []
    for i in range(5):
        opt.observe_many([f"k{i}", "shared"], [8, 16], [300 - i, 250], [10.0 - i, 5.0 - i])
        states.append(_plo_state(opt))
    opt.close()
    journal = _journal(tmp_path)
    full = journal.read_bytes()
    last = full.rfind(b"BFJR")
    for cut in range(last + 1, len(full), 23):
        journal.write_bytes(full[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="banditfleet"):
            rec = JITPowerLimitOptimizer.open(tmp_path)
        assert f"{cut - last} bytes after 4 intact records" in caplog.text
        assert _plo_state(rec) == states[3]
        assert journal.stat().st_size == last
        rec.close()
        journal.write_bytes(full)


def test_journal_records_only_state_changes(tmp_path):
    from banditfleet.journal import decode_record, scan_journal

    opt = JITPowerLimitOptimizer.open(tmp_path)
    rows = opt.rows(["a", "b", "a"])  # register (two new keys)
    opt.rows(["a", "b"])  # nothing new: no record
    opt.rows(["z"], create=False)  # no record
    opt.predict_many(["a", "q"], [8, 8])  # no record
    opt.predict("a", 8)  # no record
    opt.observe_many(rows, [8, 8, 16], [100, 100, 100], [1.0, 2.0, 3.0])  # observe
    opt.observe("c", 8, 90, 0.5)  # observe carrying the new key
    opt.observe("c", 8, 80, 0.1)  # observe
    with pytest.raises(BanditFleetError):
        opt.observe_many(["d", "a"], [8, -8], [100, 100], [1.0, 1.0])  # refused: no record, no row
    assert "d" not in opt
    opt.close()
    payloads, _, _ = scan_journal(_journal(tmp_path))
    kinds = [decode_record(p)[0] for p in payloads]
    assert kinds == ["register", "observe", "observe", "observe"]
    assert "keys" in decode_record(payloads[2])[2] and "keys" not in decode_record(payloads[3])[2]


def test_open_refuses_settings_and_other_folders(tmp_path):
    JITPowerLimitOptimizer.open(tmp_path / "plo").close()
    with pytest.raises(JournalError):
        JITPowerLimitOptimizer.open(tmp_path / "plo", window_size=3)
    with pytest.raises(TypeError):
        JITPowerLimitOptimizer.open(tmp_path / "new", window_size=3)
    GTSBatchSizeOptimizer.open(tmp_path / "gts", learn_reward_precision=True).close()
    with pytest.raises(JournalError, match="holds a GTSBatchSizeOptimizer optimizer, not a JITPowerLimitOptimizer"):
        JITPowerLimitOptimizer.open(tmp_path / "gts")
    with pytest.raises(JournalError, match="holds a JITPowerLimitOptimizer"):
        GTSBatchSizeOptimizer.open(tmp_path / "plo")


def test_an_interrupted_creation_is_redone_and_foreign_leftovers_are_refused(tmp_path):
    # A crash during creation leaves generation 0 without settings.json: open creates again.
    opt = JITPowerLimitOptimizer.open(tmp_path / "a")
    opt.close()
    (tmp_path / "a" / "settings.json").unlink()
    with JITPowerLimitOptimizer.open(tmp_path / "a") as again:
        again.observe("x", 8, 100, 1.0)
    assert (tmp_path / "a" / "settings.json").exists()
    # Later generations without settings are someone's data: refused, not overwritten.
    opt = JITPowerLimitOptimizer.open(tmp_path / "b")
    opt.observe("x", 8, 100, 1.0)
    opt.checkpoint()
    opt.close()
    (tmp_path / "b" / "settings.json").unlink()
    with pytest.raises(JournalError, match="no settings.json"):
        JITPowerLimitOptimizer.open(tmp_path / "b")


def test_checkpoint_compacts_and_context_manager_closes(tmp_path):
    with JITPowerLimitOptimizer.open(tmp_path, fsync="never") as opt:
        opt.observe_many(["a", "b"], [8, 8], [100, 200], [2.0, 1.0])
        assert opt.checkpoint() > 0
        opt.observe("a", 8, 50, 0.5)
    assert opt._folder is None
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["LOCK", "checkpoint-000001.bfckpt", "journal-000001.bfj", "settings.json"]
    with JITPowerLimitOptimizer.open(tmp_path) as again:
        assert again.predict("a", 8) == 50 and again.observations("a", 8) == 2
    with pytest.raises(JournalError, match="needs an optimizer from open"):
        JITPowerLimitOptimizer(verbose=False).checkpoint()


_HOLDER = """
import sys, time
from banditfleet import JITPowerLimitOptimizer
opt = JITPowerLimitOptimizer.open(sys.argv[1])
opt.observe("a", 8, 100, 1.0)
print("open", flush=True)
time.sleep(60)
"""


def test_a_second_process_gets_folder_locked_error(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        with pytest.raises(FolderLockedError, match="another process"):
            JITPowerLimitOptimizer.open(tmp_path)
        child.send_signal(signal.SIGKILL)
        child.wait()
        with JITPowerLimitOptimizer.open(tmp_path) as opt:  # the lock died with its process
            assert opt.predict("a", 8) == 100
    finally:
        child.kill()
        child.wait()


# ------------------------------------------------------------------ manager
def _manager_steps(mgr, plan):
    """Drive a manager by ``plan``; returns everything it said, errors included."""
    out = []
    for step, (cost, misuse) in enumerate(plan["steps"]):
        try:
            bs = mgr.next_batch_size()
        except StopIteration as stop:
            out.append(("stop", stop.value))
            return out
        except BanditFleetError as exc:
            out.append((type(exc).__name__, str(exc)))
            return out
        out.append(("bs", bs, mgr.batch_sizes, mgr.default, mgr.expecting))
        if misuse:
            try:
                mgr.report_batch_size_result(bs + 1, cost, True)  # not what was asked for
            except BanditFleetError as exc:
                out.append((type(exc).__name__, str(exc)))
        if step in plan["pause_awaiting"]:
            mgr = plan["reload"](mgr)
        mgr.report_batch_size_result(bs, cost, bs not in plan["failing"])
        if step in plan["pause_settled"]:
            mgr = plan["reload"](mgr)
        out.append(("state", mgr.batch_sizes, mgr.default, mgr.expecting))
    return out


@settings(max_examples=60)
@given(data=st.data())
def test_manager_saved_and_loaded_anywhere_equals_an_uninterrupted_one(tmp_path_factory, data):
    arms = data.draw(st.lists(st.integers(1, 512), min_size=1, max_size=7, unique=True))
    default = data.draw(st.sampled_from(arms))
    rounds = data.draw(st.integers(1, 3))
    failing = set(data.draw(st.lists(st.sampled_from(arms), max_size=len(arms))))
    steps = data.draw(st.lists(st.tuples(st.sampled_from([1.0, 2.0, 3.0, 5.5]), st.booleans()), min_size=1, max_size=30))
    pause_awaiting = set(data.draw(st.lists(st.integers(0, 29), max_size=5)))
    pause_settled = set(data.draw(st.lists(st.integers(0, 29), max_size=5)))
    folder = tmp_path_factory.mktemp("mgr")
    saves = []

    def reload(mgr):
        path = folder / f"m{len(saves)}.bfckpt"
        saves.append(mgr.save(path))
        return PruningExploreManager.load(path)

    def plan(with_pauses):
        return {
            "steps": steps,
            "failing": failing,
            "pause_awaiting": pause_awaiting if with_pauses else set(),
            "pause_settled": pause_settled if with_pauses else set(),
            "reload": reload,
        }

    never = _manager_steps(PruningExploreManager(list(arms), default, rounds), plan(False))
    resumed = _manager_steps(PruningExploreManager(list(arms), default, rounds), plan(True))
    assert resumed == never


def test_manager_load_refuses_bad_files_and_forged_state(tmp_path):
    p = tmp_path / "m.bfckpt"
    mgr = PruningExploreManager([64, 8, 32, 16], 32)
    first = mgr.next_batch_size()
    mgr.save(p)
    loaded = PruningExploreManager.load(p)
    assert (loaded.batch_sizes, loaded.expecting, loaded.num_pruning_rounds) == ([64, 8, 32, 16], first, 2)
    with pytest.raises(CheckpointError, match="not a GTSBatchSizeOptimizer one"):
        GTSBatchSizeOptimizer.load(p)
    JITPowerLimitOptimizer(verbose=False).save(tmp_path / "plo.bfckpt")
    with pytest.raises(CheckpointError, match="JITPowerLimitOptimizer checkpoint, not a PruningExploreManager one"):
        PruningExploreManager.load(tmp_path / "plo.bfckpt")
    header, keys, arrays = read_checkpoint(p)

    def forged(settings=None, keys_=None, **changes):
        a = dict(arrays)
        a.update({k.replace("__", "."): v for k, v in changes.items()})
        write_checkpoint(tmp_path / "f.bfckpt", header["optimizer"], settings or header["settings"], keys_ or keys, a)
        with pytest.raises(CheckpointError) as info:
            PruningExploreManager.load(tmp_path / "f.bfckpt")
        assert str(tmp_path / "f.bfckpt") in str(info.value)
        return str(info.value)

    assert "settings are not valid" in forged(settings={"num_pruning_rounds": 0})
    assert "settings are not valid" in forged(settings={"rounds": 2})
    assert "exactly one job" in forged(keys_=["a"])
    assert "pr_round" in forged(job__pr_round=np.array([7], np.int64))
    assert "pr_stage" in forged(job__pr_stage=np.array([5], np.uint8))
    assert "pr_member" in forged(arm__pr_member=np.array([2, 0, 1, 0], np.uint8))
    assert "outside its job" in forged(job__pr_current=np.array([9], np.int64))
    assert "n_down" in forged(job__pr_n_down=np.array([9], np.int64))
    raw = bytearray(p.read_bytes())
    raw[40] ^= 0xFF  # inside the header
    (tmp_path / "c.bfckpt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted"):
        PruningExploreManager.load(tmp_path / "c.bfckpt")


# ------------------------------------------- large-file paths of the checkpoint module
@pytest.mark.parametrize("chunks", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("extra", [0, 1, 4097])
def test_chunked_parallel_crc_equals_zlib(chunks, extra):
    import zlib

    from banditfleet import checkpoint

    n = chunks * checkpoint._CRC_CHUNK + extra
    buf = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    with checkpoint._Checksums() as sums:
        sums.add(memoryview(buf))
        sums.add(memoryview(buf[: n // 2]))
        assert sums.results() == [zlib.crc32(buf), zlib.crc32(buf[: n // 2])]


def test_large_arrays_round_trip_and_a_flipped_bit_in_a_late_chunk_is_caught(tmp_path):
    from banditfleet import checkpoint

    big = np.arange(3 * checkpoint._CRC_CHUNK // 8 + 5, dtype=np.int64)
    p = tmp_path / "big.bfckpt"
    write_checkpoint(p, "Demo", {}, ["a"], {"big": big, "small": np.ones(3)})
    _, _, arrays = read_checkpoint(p)
    assert np.array_equal(arrays["big"], big) and arrays["big"].flags.owndata
    raw = bytearray(p.read_bytes())
    raw[raw.rindex(big[-200:].tobytes()) + 7] ^= 0x04  # inside the third chunk
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="array 'big' fails its checksum"):
        read_checkpoint(p)


def test_string_keys_round_trip_ascii_and_not(tmp_path):
    p = tmp_path / "k.bfckpt"
    for keys in (["a", "bb", "", "job-7"], ["a", "é", "日本", "", "x"]):
        write_checkpoint(p, "Demo", {}, keys, {})
        assert read_checkpoint(p)[1] == keys


def test_a_store_adopts_only_arrays_it_may_keep(tmp_path):
    from banditfleet import PruningGTSBatchSizeOptimizer

    opt = PruningGTSBatchSizeOptimizer(window_size=3, verbose=False)
    opt.register_jobs(range(40), np.tile([8, 16, 32], (40, 1)), default_bs=16)
    exported = opt._store.export_arrays()  # views of opt's own arrays
    for adopt in (False, True):
        twin = PruningGTSBatchSizeOptimizer(window_size=3, verbose=False)
        twin._store.import_arrays(opt.jobs, exported, adopt=adopt)
        assert not any(np.shares_memory(getattr(twin._store, "posterior_mean"), a) for a in exported.values())
        twin.predict_many(np.arange(40))
        assert not np.array_equal(twin._store.pr_expecting[:40], opt._store.pr_expecting[:40])
    opt.save(tmp_path / "p.bfckpt")
    loaded = PruningGTSBatchSizeOptimizer.load(tmp_path / "p.bfckpt")
    assert loaded._store.job_capacity == 40 and loaded._store.arm_capacity == 120  # taken without a copy
    loaded.register_jobs(["more"], [[8, 16]], default_bs=8)  # and it still grows
    assert loaded.predict("more") == 8

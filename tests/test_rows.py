"""Tagged rows: integer arrays are always job keys, rows are bound to their optimizer."""

from __future__ import annotations

import numpy as np
import pytest

from banditfleet import GTSBatchSizeOptimizer, JITPowerLimitOptimizer, OptimizerPair, PruningGTSBatchSizeOptimizer, open_pair
from banditfleet.errors import ForeignRowsError, StaleRowsError, UnknownJobError
from banditfleet.rows import Rows

ARMS = [8, 16, 32]
KEYS = [5, 7, 1, 0]  # integer keys that are not their rows


def _gts(seed=1):
    opt = GTSBatchSizeOptimizer(learn_reward_precision=True, seed=seed, verbose=False)
    opt.register_jobs(KEYS, [ARMS] * len(KEYS))
    return opt


def _arrays(opt):
    return opt._store.keys(), {k: v.tobytes() for k, v in opt._store.export_arrays().items()}


def test_an_integer_array_is_job_keys_like_a_list():
    by_array, by_list = _gts(), _gts()
    for _ in range(5):
        got = by_array.predict_many(np.array([1, 5, 1]))
        want = by_list.predict_many([1, 5, 1])
        assert got.tolist() == want.tolist()
        by_array.observe_many(np.array([1, 5, 1], np.uint16), got, [3.0, 4.0, 5.0])
        by_list.observe_many([1, 5, 1], want, [3.0, 4.0, 5.0])
    assert _arrays(by_array) == _arrays(by_list)
    # Key 1 lives on row 2: its state moved, row 1's (key 7) did not.
    assert sum(s.observations for s in by_array.arm_state(1).values()) == 10
    assert sum(s.observations for s in by_array.arm_state(7).values()) == 0
    with pytest.raises(UnknownJobError, match="unknown job 3"):
        by_array.predict_many(np.array([3]))  # a row number, not a key: refused, not read as row 3


def test_rows_equal_keys_and_integer_rows_are_not_rows():
    a, b = _gts(), _gts()
    rows = a.rows([1, 5])
    assert isinstance(rows, Rows) and rows.array.tolist() == [2, 0]
    assert a.predict_many(rows).tolist() == b.predict_many([1, 5]).tolist()
    # The numbers of the rows, as a plain array, are keys again: key 2 does not exist.
    with pytest.raises(UnknownJobError):
        a.predict_many(rows.array)


def test_rows_of_another_optimizer_are_refused_and_change_nothing():
    a, b = _gts(), _gts()
    before = _arrays(b)
    with pytest.raises(ForeignRowsError, match="given to GTSBatchSizeOptimizer"):
        b.predict_many(a.rows([1]))
    with pytest.raises(ForeignRowsError):
        b.observe_many(a.rows([1]), [8], [1.0])
    with pytest.raises(ForeignRowsError):
        b.rows(a.rows([1]))
    assert _arrays(b) == before
    # A loaded twin numbers alike but is another optimizer.


def test_a_pairs_two_numberings_do_not_mix(tmp_path):
    pair = OptimizerPair(_gts(), JITPowerLimitOptimizer(verbose=False))
    pair.plo.observe_many([7, 1], [8, 8], [200, 150], [1.0, 2.0])  # plo rows: 7 -> 0, 1 -> 1
    bso_rows = pair.bso.rows([7, 1])  # bso rows: 7 -> 1, 1 -> 2
    plo_rows = pair.plo.rows([7, 1], create=False)
    assert bso_rows.array.tolist() == [1, 2] and plo_rows.array.tolist() == [0, 1]
    before = {k: v.copy() for k, v in pair.plo.table.arrays().items()}
    with pytest.raises(ForeignRowsError, match="GTSBatchSizeOptimizer.*given to JITPowerLimitOptimizer"):
        pair.plo.predict_many(bso_rows, [8, 8])
    with pytest.raises(ForeignRowsError):
        pair.plo.observe_many(bso_rows, [8, 8], [100, 100], [0.5, 0.5])
    with pytest.raises(ForeignRowsError, match="JITPowerLimitOptimizer.*given to GTSBatchSizeOptimizer"):
        pair.bso.predict_many(plo_rows)
    assert all(np.array_equal(v, before[k]) for k, v in pair.plo.table.arrays().items())
    assert pair.plo.predict_many(plo_rows, [8, 8]).tolist() == [200, 150]
    assert pair.plo.predict_many([7, 1], [8, 8]).tolist() == [200, 150]


def test_stale_rows_are_refused():
    opt = _gts()
    rows = opt.rows([1, 5])
    opt.register_jobs([99], [ARMS])  # registering keeps rows valid
    opt.predict_many(rows)
    opt.remove_job(0)  # a removal may free or (on compaction) renumber rows
    before = _arrays(opt)
    with pytest.raises(StaleRowsError, match="resolve the keys again"):
        opt.predict_many(rows)
    with pytest.raises(StaleRowsError):
        opt.observe_many(rows, [8, 8], [1.0, 1.0])
    assert _arrays(opt) == before
    assert isinstance(StaleRowsError("x"), ForeignRowsError)
    opt.predict_many(opt.rows([1, 5]))
    plo = JITPowerLimitOptimizer(verbose=False)
    plo_rows = plo.rows([1, 2])
    plo.remove_job(2)
    with pytest.raises(StaleRowsError):
        plo.predict_many(plo_rows, [8, 8])
    assert plo.predict_many(plo.rows([1], create=False), [8]).tolist() == [-1]


def test_checkpoint_load_gives_new_rows(tmp_path):
    opt = _gts()
    rows = opt.rows([1])
    opt.save(tmp_path / "c.bfckpt")
    loaded = GTSBatchSizeOptimizer.load(tmp_path / "c.bfckpt")
    with pytest.raises(ForeignRowsError):
        loaded.predict_many(rows)
    assert loaded.predict_many(loaded.rows([1])).tolist() == opt.predict_many(rows).tolist()


def test_rows_are_convenient():
    opt = _gts()
    rows = opt.rows([1, 5, 7, 0])
    assert len(rows) == 4
    assert rows[1:3].array.tolist() == [0, 1]
    assert rows[np.array([True, False, False, True])].array.tolist() == [2, 3]
    assert rows[np.array([3, 0, 0])].array.tolist() == [3, 2, 2]
    assert rows[[1]].array.tolist() == [0]
    assert rows[-1].array.tolist() == [3] and rows[0].array.tolist() == [2]
    with pytest.raises(IndexError):
        rows[4]
    assert Rows.concatenate([rows[:1], rows[3:]]).array.tolist() == [2, 3]
    with pytest.raises(ForeignRowsError):
        Rows.concatenate([rows, _gts().rows([1])])
    # Every derived Rows is still this optimizer's.
    assert opt.predict_many(rows[np.array([True, False, True, False])]).shape == (2,)
    arr = rows.array
    assert arr.dtype == np.int64 and not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[0] = 1
    with pytest.raises(TypeError):
        list(rows)
    with pytest.raises(TypeError, match="rows.array"):
        np.asarray(rows)
    with pytest.raises(TypeError):
        Rows(np.array([0]))
    assert "GTSBatchSizeOptimizer" in repr(rows)
    assert len(opt.register_jobs(["x", "y"], [ARMS, ARMS])) == 2
    with pytest.raises(UnknownJobError, match="not job keys"):
        opt.register_jobs(rows, [ARMS] * 4)


def test_exhausted_many_takes_rows_and_masks_stay_rows():
    opt = PruningGTSBatchSizeOptimizer(verbose=False)
    rows = opt.register_jobs([3, 4], [ARMS, ARMS], default_bs=16)
    live = rows[~opt.exhausted_many(rows)]
    assert isinstance(live, Rows) and opt.predict_many(live).tolist() == [16, 16]


@pytest.mark.parametrize("kind", ["gts", "pruning"])
def test_journaled_optimizer_with_integer_keys_recovers_its_memory_state(tmp_path, kind):
    """Journal records hold int64 rows; recovery replays them as this optimizer's rows,
    not as keys (integer keys here differ from their rows)."""
    cls = GTSBatchSizeOptimizer if kind == "gts" else PruningGTSBatchSizeOptimizer
    settings = {"learn_reward_precision": True} if kind == "gts" else {"window_size": 3, "concurrency": True}
    extra = {} if kind == "gts" else {"default_bs": 16}
    rng = np.random.default_rng(0)
    opt = cls.open(tmp_path / "f", fsync="never", **settings)
    opt.register_jobs(KEYS, [ARMS] * len(KEYS), **extra)
    for step in range(12):
        keys = rng.permutation(KEYS)[: 1 + step % 4]
        jobs = opt.rows(keys) if step % 2 else np.array(keys)
        bs = opt.predict_many(jobs)
        opt.observe_many(jobs, bs, rng.gamma(2.0, 10.0, len(keys)), bs <= 16)
        opt.predict(int(keys[0]))
        opt.observe(int(keys[0]), 16, 1.5, True)
    memory = _arrays(opt)
    opt.close()
    recovered = cls.open(tmp_path / "f")
    assert _arrays(recovered) == memory
    recovered.close()


def test_journaled_power_limits_with_integer_keys_recover(tmp_path):
    plo = JITPowerLimitOptimizer.open(tmp_path / "p", fsync="never")
    plo.observe_many([9, 3], [8, 8], [200, 150], [1.0, 2.0])
    rows = plo.rows([3, 9, 4])  # creates a row for 4
    plo.observe_many(rows, [16, 16, 8], [100, 120, 90], [0.5, 0.4, 0.3])
    plo.observe_many(np.array([4]), [8], [80], [0.1])
    memory = (plo.jobs, {k: v.tobytes() for k, v in plo.table.arrays().items()})
    plo.close()
    again = JITPowerLimitOptimizer.open(tmp_path / "p")
    assert (again.jobs, {k: v.tobytes() for k, v in again.table.arrays().items()}) == memory
    assert again.predict_many([4, 3], [8, 16]).tolist() == [80, 100]
    again.close()


def test_journaled_pair_with_integer_keys_recovers(tmp_path):
    pair = open_pair(tmp_path / "pair", GTSBatchSizeOptimizer, fsync="never", learn_reward_precision=True)
    pair.bso.register_jobs(KEYS, [ARMS] * len(KEYS))
    bso_rows = pair.bso.rows(KEYS)
    plo_rows = pair.plo.rows(KEYS)
    for _ in range(3):
        bs = pair.bso.predict_many(bso_rows)
        pair.plo.observe_many(plo_rows, bs, np.full(len(KEYS), 200), np.arange(len(KEYS), dtype=float))
        pair.bso.observe_many(bso_rows, bs, np.arange(len(KEYS), dtype=float) + 1)
    memory = (_arrays(pair.bso), {k: v.tobytes() for k, v in pair.plo.table.arrays().items()}, pair.plo.jobs)
    pair.close()
    again = open_pair(tmp_path / "pair", GTSBatchSizeOptimizer)
    assert (_arrays(again.bso), {k: v.tobytes() for k, v in again.plo.table.arrays().items()}, again.plo.jobs) == memory
    again.close()

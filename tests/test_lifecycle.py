"""Job removal and reset on every optimizer, against the reference and against fleets that never
held the removed jobs; refusals, journaled recovery, checkpoints (including format version 1
files) and the memory bound under churn."""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet import GTSBatchSizeOptimizer, JITPowerLimitOptimizer, PruningExploreManager, PruningGTSBatchSizeOptimizer
from banditfleet.errors import PruningExhaustedError, UnknownJobError
from banditfleet.pair import OptimizerPair, load_pair, open_pair

zeus_policy = pytest.importorskip("zeus._legacy.policy.optimizer", reason="differential tests need zeus==0.16.0")
from zeus._legacy.job import Job as RefJob  # noqa: E402

DATA = Path(__file__).parent / "data"
ARMS = [8, 16, 24, 32, 48, 64, 96, 128]


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _ref_key(key, generation, default):
    # A new reference job object per registration: the reference keeps a bandit per job object.
    return RefJob("d", f"{key}-{generation}", "adam", 0.5, 10, default_bs=default)


def _cost(rng, bs):
    return float(abs(bs - 40) * 3.0 + rng.uniform(0.0, 50.0))


# ------------------------------------------------------------------ GTS
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32), learn=st.booleans(), data=st.data())
def test_gts_lifecycle_matches_fresh_reference_optimizers(seed, learn, data):
    """Every job, after any mix of removals, re-registrations and resets, decides like a new
    reference optimizer (seeded with the job's seed) fed only the observations since."""
    rng = np.random.default_rng(seed)
    cfg = dict(learn_reward_precision=learn, reward_precision=0.0 if learn else 0.01, prior_precision=0.0 if learn else 0.001, num_exploration=2)
    ours = GTSBatchSizeOptimizer(verbose=False, **cfg)
    refs: dict[int, tuple] = {}
    generation: dict[int, int] = {}
    n_keys = 40

    def register(keys):
        arm_lists = [sorted(rng.choice(ARMS, size=int(rng.integers(1, 5)), replace=False).tolist()) for _ in keys]
        seeds = rng.integers(0, 2**63, size=len(keys))
        ours.register_jobs(keys, arm_lists, seeds=seeds)
        for k, arms, s in zip(keys, arm_lists, seeds.tolist()):
            generation[k] = generation.get(k, 0) + 1
            with quiet():
                ref = zeus_policy.GTSBatchSizeOptimizer(verbose=False, seed=s, **cfg)
                rk = _ref_key(k, generation[k], arms[0])
                ref.register_job(rk, arms)
            refs[k] = (ref, rk, arms, s)

    register(list(range(n_keys)))
    for _ in range(data.draw(st.integers(4, 10), label="steps")):
        live = list(refs)
        batch = rng.choice(live, size=min(len(live), 25), replace=True).tolist()
        got = ours.predict_many(batch)
        with quiet():
            want = [refs[k][0].predict(refs[k][1]) for k in batch]
        assert got.tolist() == [int(w) for w in want]
        costs = [_cost(rng, int(b)) for b in got]
        ours.observe_many(batch, got, costs)
        with quiet():
            for k, b, c in zip(batch, got.tolist(), costs):
                refs[k][0].observe(refs[k][1], b, c)
        action = data.draw(st.sampled_from(["remove", "reset", "reregister", "none"]), label="action")
        if action == "remove" and len(live) > 2:
            gone = rng.choice(live, size=int(rng.integers(1, len(live) // 2 + 1)), replace=False).tolist()
            ours.remove_jobs(gone)
            for k in gone:
                del refs[k]
        elif action == "reset":
            again = rng.choice(live, size=int(rng.integers(1, len(live) + 1)), replace=False).tolist()
            ours.reset_jobs(again)
            for k in again:
                ref, rk, arms, s = refs[k]
                generation[k] += 1
                with quiet():
                    fresh = zeus_policy.GTSBatchSizeOptimizer(verbose=False, seed=s, **cfg)
                    rk = _ref_key(k, generation[k], arms[0])
                    fresh.register_job(rk, arms)
                refs[k] = (fresh, rk, arms, s)
        elif action == "reregister":
            back = [k for k in range(n_keys) if k not in refs]
            if back:
                register(back)
        assert sorted(ours.jobs) == sorted(refs)
    for k, (ref, rk, arms, _) in refs.items():
        mab = ref.mabs[rk]
        for arm, state in ours.arm_state(k).items():
            assert state.observations == mab.arm_num_observations[arm]
            assert state.posterior_precision == float(mab.arm_param_prec[arm])


def _drive(opt, keys, rounds, seed, converged=None):
    """Predict and observe every key ``rounds`` times; the decisions, in order."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rounds):
        for k in keys:
            bs = opt.predict(k)
            c = _cost(rng, bs)
            if converged is None:
                opt.observe(k, bs, c)
            else:
                opt.observe(k, bs, c, converged)
            out.append(bs)
    return out


def test_never_removed_jobs_keep_their_decisions_and_state():
    """A fleet that registered, fed and removed other jobs in between decides, for the jobs
    that stayed, exactly like a fleet that never had the others."""
    keep = [f"k{i}" for i in range(30)]
    churn = [f"c{i}" for i in range(120)]
    plain = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    mixed = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    plain.register_jobs(keep, [[16, 32, 64]] * len(keep))
    mixed.register_jobs(keep[:10], [[16, 32, 64]] * 10)
    mixed.register_jobs(churn[:60], [[8, 16]] * 60)
    mixed.register_jobs(keep[10:], [[16, 32, 64]] * 20)
    gen0 = mixed.generation
    _drive(mixed, churn[:60], 2, 9)
    got = _drive(mixed, keep, 3, 1)
    mixed.remove_jobs(churn[:50])  # compacts: more than a quarter of the rows are dead
    assert mixed.generation > gen0 and mixed.memory_report()["jobs"] == 40
    assert mixed._store.n_jobs == 40 and mixed._store.n_dead_jobs == 0  # compacted
    mixed.register_jobs(churn[60:], [[8, 16, 32]] * 60)
    _drive(mixed, churn[60:], 2, 5)
    mixed.remove_jobs(churn[50:60] + churn[60:])
    got += _drive(mixed, keep, 3, 2)
    want = _drive(plain, keep, 3, 1) + _drive(plain, keep, 3, 2)
    assert got == want
    assert mixed.jobs == keep
    for k in keep:
        assert mixed.arm_state(k) == plain.arm_state(k)


# ------------------------------------------------------------- PruningGTS
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32), window=st.sampled_from([0, 2, 3]), data=st.data())
def test_pruning_lifecycle_matches_fresh_reference_optimizers(seed, window, data):
    rng = np.random.default_rng(seed)
    cfg = dict(window_size=window, prior_precision=0.0)
    ours = PruningGTSBatchSizeOptimizer(verbose=False, **cfg)
    refs: dict[int, tuple] = {}
    generation: dict[int, int] = {}

    def fresh_ref(k, arms, default, s):
        generation[k] = generation.get(k, 0) + 1
        with quiet():
            ref = zeus_policy.PruningGTSBatchSizeOptimizer(verbose=False, seed=s, **cfg)
            rk = _ref_key(k, generation[k], default)
            ref.register_job(rk, arms)
        return (ref, rk, arms, default, s)

    def register(keys):
        arm_lists = [sorted(rng.choice(ARMS, size=int(rng.integers(1, 5)), replace=False).tolist()) for _ in keys]
        defaults = [int(rng.choice(a)) for a in arm_lists]
        seeds = rng.integers(0, 2**63, size=len(keys))
        ours.register_jobs(keys, arm_lists, default_bs=defaults, seeds=seeds)
        for k, a, d, s in zip(keys, arm_lists, defaults, seeds.tolist()):
            refs[k] = fresh_ref(k, a, d, s)

    register(list(range(24)))
    for _ in range(data.draw(st.integers(4, 9), label="steps")):
        for k in list(refs):
            ref, rk, arms, default, s = refs[k]
            try:
                got = ours.predict(k)
            except PruningExhaustedError:
                with quiet(), pytest.raises(Exception):
                    ref.predict(rk)
                continue
            with quiet():
                want = ref.predict(rk)
            assert got == want
            c = _cost(rng, got)
            reached = bool(rng.uniform() < 0.8)
            ours.observe(k, got, c, reached)
            with quiet():
                ref.observe(rk, got, c, reached)
        live = list(refs)
        action = data.draw(st.sampled_from(["remove", "reset", "reregister", "none"]), label="action")
        if action == "remove" and len(live) > 2:
            gone = rng.choice(live, size=int(rng.integers(1, len(live) // 2 + 1)), replace=False).tolist()
            ours.remove_jobs(gone)
            for k in gone:
                del refs[k]
        elif action == "reset":
            # Exhausted jobs first: a reset is how they start over.
            exhausted = [k for k, e in zip(live, ours.exhausted_many(live).tolist()) if e]
            again = exhausted + [k for k in live if k not in exhausted][: int(rng.integers(0, len(live)))]
            ours.reset_jobs(again)
            for k in again:
                _, _, arms, default, s = refs[k]
                refs[k] = fresh_ref(k, arms, default, s)
        elif action == "reregister":
            back = [k for k in range(24) if k not in refs]
            if back:
                register(back)
    assert sorted(ours.jobs) == sorted(refs)


def test_exhausted_job_starts_over_after_reset():
    opt = PruningGTSBatchSizeOptimizer(verbose=False)
    opt.register_job("j", [16, 32, 64], default_bs=32)
    with pytest.raises(PruningExhaustedError):
        for _ in range(4):
            bs = opt.predict("j")
            opt.observe("j", bs, 10.0, False)
    opt.reset_job("j")
    with quiet():
        ref = zeus_policy.PruningGTSBatchSizeOptimizer(verbose=False)
        rk = _ref_key("j", 1, 32)
        ref.register_job(rk, [16, 32, 64])
    rng = np.random.default_rng(3)
    for _ in range(12):
        with quiet():
            want = ref.predict(rk)
        assert opt.predict("j") == want
        c = _cost(rng, want)
        opt.observe("j", want, c, True)
        with quiet():
            ref.observe(rk, want, c, True)


def test_manager_reset_equals_new_reference_manager():
    rng = np.random.default_rng(5)
    ours = PruningExploreManager([32, 8, 64, 16], 32)
    for _ in range(3):
        bs = ours.next_batch_size()
        ours.report_batch_size_result(bs, 1.0, bs != 8)
    ours.reset()
    ref = zeus_policy.PruningExploreManager([32, 8, 64, 16], 32)
    for _ in range(20):
        try:
            want = ref.next_batch_size()
        except StopIteration as stop:
            with pytest.raises(StopIteration) as got:
                ours.next_batch_size()
            assert got.value.value == stop.value
            break
        assert ours.next_batch_size() == want
        c, reached = float(rng.uniform()), bool(rng.uniform() < 0.7)
        ref.report_batch_size_result(want, c, reached)
        ours.report_batch_size_result(want, c, reached)
    ours.remove_job(0)
    with pytest.raises(UnknownJobError):
        ours.next_batch_size()
    with pytest.raises(UnknownJobError):
        ours.reset()


# ------------------------------------------------------------------ power
def test_power_removal_keeps_others_and_starts_removed_jobs_afresh():
    rng = np.random.default_rng(7)
    ours = JITPowerLimitOptimizer(verbose=False)
    twin = JITPowerLimitOptimizer(verbose=False)  # never sees the removed jobs
    with quiet():
        ref = zeus_policy.JITPowerLimitOptimizer(verbose=False)
    events = [(int(rng.integers(0, 60)), int(rng.choice([8, 16, 32])), int(rng.choice([100, 150, 200, 250])), float(rng.uniform())) for _ in range(2000)]
    removed = set(range(0, 60, 3))
    for k, bs, pl, c in events:
        ours.observe(k, bs, pl, c)
        if k not in removed:
            twin.observe(k, bs, pl, c)
    ours.remove_jobs(sorted(removed))
    assert sorted(ours.jobs) == sorted(twin.jobs)
    for k in twin.jobs:
        assert ours.state(k) == twin.state(k)
        for bs in (8, 16, 32):
            assert ours.predict(k, bs) == twin.predict(k, bs)
    # A removed job observed again is a new job: equal to a new reference optimizer's.
    for k, bs, pl, c in events[:500]:
        if k in removed:
            ours.observe(k, bs, pl, c)
            with quiet():
                ref.observe(_ref_key(k, 1, bs), bs, pl, c)
    for k in removed:
        for bs in (8, 16, 32):
            with quiet():
                want = ref.predict(_ref_key(k, 1, bs), bs)
            assert ours.predict(k, bs) == want
    # Row arrays of removed jobs are refused after removal.
    row = ours.rows([1])
    ours.reset_job(1)
    with pytest.raises(UnknownJobError):
        ours.predict_many(row, [8])
    assert ours.predict(1, 8) is None


# --------------------------------------------------------------- refusals
def _snapshot(opt):
    s = opt._store if hasattr(opt, "_store") else opt._table
    arrays = {k: v.copy() for k, v in vars(s).items() if isinstance(v, np.ndarray)}
    if hasattr(s, "streams"):
        arrays.update({f"stream{i}": a.copy() for i, a in enumerate(s.streams)})
    keys = list(getattr(opt, "_keys", None) or s._keys)
    return arrays, keys, opt.jobs, opt.generation


def _same_snapshot(a, b):
    assert a[1:] == b[1:]
    assert a[0].keys() == b[0].keys()
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k], err_msg=k)


@pytest.mark.parametrize("make", ["gts", "pruning", "power"])
def test_refused_removals_and_resets_change_nothing(make):
    if make == "power":
        opt = JITPowerLimitOptimizer(verbose=False)
        for k in range(40):
            opt.observe(k, 16, 100, float(k))
    elif make == "gts":
        opt = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
        opt.register_jobs(list(range(40)), [[16, 32]] * 40)
        _drive(opt, list(range(40)), 2, 1)
    else:
        opt = PruningGTSBatchSizeOptimizer(verbose=False)
        opt.register_jobs(list(range(40)), [[16, 32]] * 40, default_bs=16)
        _drive(opt, list(range(40)), 2, 1, True)
    opt.remove_jobs([0, 1, 2])  # some dead rows, below the compaction threshold
    before = _snapshot(opt)
    for bad in ([3, 4, 999], [5, 5], [0], [[1, 2]], np.array([3, 4])):
        for method in (opt.remove_jobs, opt.reset_jobs):
            with pytest.raises(UnknownJobError):
                method(bad)
            _same_snapshot(before, _snapshot(opt))
    with pytest.raises(UnknownJobError):
        opt.remove_job("nope")
    _same_snapshot(before, _snapshot(opt))


def test_removed_rows_are_refused_and_keys_can_come_back():
    opt = GTSBatchSizeOptimizer(learn_reward_precision=False, reward_precision=1.0, verbose=False)
    rows = opt.register_jobs(["a", "b", "c"], [[8, 16], [16, 32], [32, 64]])
    gen = opt.generation
    opt.remove_job("b")
    assert opt.generation > gen and "b" not in opt and len(opt) == 2 and opt.jobs == ["a", "c"]
    with pytest.raises(UnknownJobError, match="removed"):
        opt.predict_many(rows[1:2])
    with pytest.raises(UnknownJobError):
        opt.predict("b")
    opt.register_job("b", [64, 128])  # different batch sizes are fine once removed
    assert opt.batch_sizes_of("b") == [64, 128]


# --------------------------------------------------------------- journal
def _state(opt):
    if isinstance(opt, JITPowerLimitOptimizer):
        return [(k, opt.state(k)) for k in opt.jobs]
    out = [(k, opt.arm_state(k), opt.batch_sizes_of(k)) for k in opt.jobs]
    if isinstance(opt, PruningGTSBatchSizeOptimizer):
        out += [opt.pruning_state(k) for k in opt.jobs]
    return out


@pytest.mark.parametrize("cls", [GTSBatchSizeOptimizer, PruningGTSBatchSizeOptimizer])
def test_journaled_removal_and_reset_recover_the_state_in_memory(tmp_path, cls):
    kw = dict(learn_reward_precision=True) if cls is GTSBatchSizeOptimizer else dict(window_size=3)
    conv = None if cls is GTSBatchSizeOptimizer else True
    reg = (lambda o, ks: o.register_jobs(ks, [[8, 16, 32]] * len(ks))) if conv is None else (lambda o, ks: o.register_jobs(ks, [[8, 16, 32]] * len(ks), default_bs=16))
    opt = cls.open(tmp_path / "f", fsync="never", verbose=False, **kw)
    reg(opt, list(range(60)))
    _drive(opt, list(range(60)), 3, 1, conv)
    opt.remove_jobs(list(range(0, 40, 2)))  # compacts (journaled)
    opt.reset_jobs([1, 3, 41])
    reg(opt, list(range(100, 170)))  # grows: compacts the remaining dead rows first
    opt.remove_jobs([5, 7])
    _drive(opt, [1, 3, 41, 100, 101], 4, 2, conv)
    opt.save(tmp_path / "elsewhere.ckpt")  # compacts, journaled
    reg(opt, [5])
    _drive(opt, [5, 9], 2, 3, conv)
    opt.remove_jobs([9])
    _drive(opt, opt.jobs, 2, 4, conv)
    opt._detach_folder()  # like a crash after the last acknowledged call: no new checkpoint
    again = cls.open(tmp_path / "f", fsync="never", verbose=False)
    assert again.jobs == opt.jobs
    assert _state(again) == _state(opt)
    assert _drive(again, again.jobs, 2, 5, conv) == _drive(opt, opt.jobs, 2, 5, conv)
    again.close()


def test_journaled_pair_removal_and_reset(tmp_path):
    pair = open_pair(tmp_path / "p", GTSBatchSizeOptimizer, fsync="never", learn_reward_precision=True)
    bso, plo = pair.bso, pair.plo
    keys = list(range(50))
    bso.register_jobs(keys, [[8, 16, 32]] * 50)
    rng = np.random.default_rng(0)
    for k in keys:
        bs = bso.predict(k)
        bso.observe(k, bs, float(rng.uniform()))
        plo.observe(k, bs, 200, float(rng.uniform()))
    pair.remove_jobs(list(range(0, 30)))
    pair.reset_jobs([31, 32])
    with pytest.raises(UnknownJobError):
        pair.remove_jobs([40, 0])
    plo.observe("only-power", 8, 100, 1.0)
    pair.remove_job("only-power")
    pair.checkpoint()
    pair.remove_jobs([33])
    want = (_state(bso), _state(plo))
    pair._detach_folder()
    again = open_pair(tmp_path / "p", GTSBatchSizeOptimizer, fsync="never")
    assert (_state(again.bso), _state(again.plo)) == want
    assert 31 not in again.plo and 31 in again.bso
    again.close()


# ------------------------------------------------------------ checkpoints
def _same_future(a, b, keys, conv=None):
    assert _drive(a, keys, 3, 11, conv) == _drive(b, keys, 3, 11, conv)


@pytest.mark.parametrize("name", ["gts", "pruning", "power", "pair"])
def test_format_version_1_files_still_load(name):
    """Files written by main's writer (format version 1, tests/data/make_v1_fixtures.py) load to
    the state that script builds with this code."""
    script = (DATA / "make_v1_fixtures.py").read_text()
    scope: dict = {}
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.makedirs(Path(tmp) / "tests" / "data")
        os.chdir(tmp)
        try:
            exec(compile(script, "make_v1_fixtures.py", "exec"), scope)  # noqa: S102 - our own fixture script
        finally:
            os.chdir(cwd)
    g, p, plo = scope["g"], scope["p"], scope["plo"]
    if name == "gts":
        old = GTSBatchSizeOptimizer.load(DATA / "v1_gts.ckpt")
        assert _state(old) == _state(g)
        _same_future(old, g, ["a", "b", "c", "d"])
        # Jobs registered with the optimizer's seed reset exactly.
        old.reset_job("d")
        g.reset_job("d")
        _same_future(old, g, ["d"])
    elif name == "pruning":
        old = PruningGTSBatchSizeOptimizer.load(DATA / "v1_pruning.ckpt")
        assert _state(old) == _state(p)
        _same_future(old, p, ["x", "y"], True)
    elif name == "power":
        old = JITPowerLimitOptimizer.load(DATA / "v1_power.ckpt")
        assert _state(old) == _state(plo)
    else:
        bso, old_plo = load_pair(DATA / "v1_pair.ckpt")
        assert _state(bso) == _state(p) and _state(old_plo) == _state(plo)


@pytest.mark.parametrize("cls", [GTSBatchSizeOptimizer, PruningGTSBatchSizeOptimizer])
def test_checkpoint_after_churn_equals_a_fresh_fleet_with_the_live_jobs(tmp_path, cls):
    """5,000 registrations with at most 1,000 live: the checkpoint is the size of a fresh fleet's
    holding the same live jobs (fed the same observations), its allocated arrays at most twice
    the live state, and both continue with identical decisions."""
    rng = np.random.default_rng(42)
    kw = dict(learn_reward_precision=True) if cls is GTSBatchSizeOptimizer else dict(window_size=0)
    conv = None if cls is GTSBatchSizeOptimizer else True
    extra = {} if conv is None else {"default_bs": 16}
    churned = cls(verbose=False, **kw)
    log: dict[int, list] = {}
    live: list[int] = []
    next_key = 0
    while next_key < 5000:
        n_new = min(250, 5000 - next_key)
        new = list(range(next_key, next_key + n_new))
        next_key += n_new
        churned.register_jobs(new, [[8, 16, 32, 64]] * n_new, **extra)
        live += new
        for k in new:
            log[k] = []
        batch = live[-600:]
        bs = churned.predict_many(batch)
        costs = rng.uniform(1, 100, size=len(batch))
        churned.observe_many(batch, bs, costs, None if conv is None else [True] * len(batch))
        for k, b, c in zip(batch, bs.tolist(), costs.tolist()):
            log[k].append((b, c))
        if len(live) > 1000:
            gone = rng.choice(live, size=len(live) - 800, replace=False).tolist()
            churned.remove_jobs(gone)
            gone_set = set(gone)
            live = [k for k in live if k not in gone_set]
    fresh = cls(verbose=False, **kw)
    fresh.register_jobs(live, [[8, 16, 32, 64]] * len(live), **extra)
    for k in live:
        for b, c in log[k]:
            assert fresh.predict(k) == b
            fresh.observe(k, b, c, conv)
    a = churned.save(tmp_path / "churned")
    b = fresh.save(tmp_path / "fresh")
    assert a <= 1.2 * b
    live_bytes = sum(arr.nbytes for arr in fresh._store.export_arrays().values())
    assert churned.memory_report()["allocated_bytes"] <= 2 * live_bytes
    assert _state(churned) == _state(fresh)
    loaded = cls.load(tmp_path / "churned", verbose=False)
    futures = [_drive(o, live[:50], 3, 11, conv) for o in (churned, loaded, fresh)]
    assert futures[0] == futures[1] == futures[2]


def test_power_checkpoint_after_churn(tmp_path):
    rng = np.random.default_rng(1)
    churned = JITPowerLimitOptimizer(verbose=False)
    fresh = JITPowerLimitOptimizer(verbose=False)
    live: list[int] = []
    events: dict[int, list] = {}
    for start in range(0, 5000, 250):
        new = list(range(start, start + 250))
        live += new
        for k in new:
            events[k] = [(int(b), int(p), float(c)) for b, p, c in zip(rng.choice([8, 16, 32], 4), rng.choice([100, 200], 4), rng.uniform(size=4))]
            for b, p, c in events[k]:
                churned.observe(k, b, p, c)
        if len(live) > 1000:
            gone = rng.choice(live, size=len(live) - 800, replace=False).tolist()
            churned.remove_jobs(gone)
            live = [k for k in live if k not in set(gone)]
    for k in live:
        for b, p, c in events[k]:
            fresh.observe(k, b, p, c)
    assert churned.save(tmp_path / "a") <= 1.2 * fresh.save(tmp_path / "b")
    live_bytes = sum(a.nbytes for a in fresh._export_arrays().values())
    assert churned.memory_report()["allocated_bytes"] <= 2 * (live_bytes + fresh.table.table.nbytes)
    assert _state(churned) == _state(fresh)


# ------------------------------------------------------------ naive models
@settings(max_examples=15, deadline=None)
@given(learn=st.booleans(), data=st.data())
def test_gts_lifecycle_against_the_naive_model(learn, data):
    """Random register / predict / observe / remove / reset sequences: a removed job is gone
    from the model, a reset one is registered in it anew (same arms, the optimizer's seed)."""
    from naive_gts import NaiveGTS

    cfg = dict(learn_reward_precision=learn, reward_precision=0.0 if learn else 0.5, num_exploration=1, seed=99)
    ours = GTSBatchSizeOptimizer(verbose=False, **cfg)
    model = NaiveGTS(learn, reward_precision=cfg["reward_precision"], num_exploration=1, seed=99)
    arms_of = {k: sorted(data.draw(st.sets(st.sampled_from(ARMS), min_size=1, max_size=4), label=f"arms{k}")) for k in range(12)}
    for _ in range(data.draw(st.integers(10, 60), label="ops")):
        op = data.draw(st.sampled_from(["register", "step", "step", "step", "remove", "reset"]), label="op")
        k = data.draw(st.integers(0, 11), label="key")
        known = k in model.jobs
        if op == "register":
            ours.register_job(k, arms_of[k])
            model.register(k, arms_of[k])
        elif not known:
            for method in (ours.remove_job, ours.reset_job, ours.predict):
                with pytest.raises(UnknownJobError):
                    method(k)
        elif op == "step":
            bs = ours.predict(k)
            assert bs == model.predict(k)
            cost = data.draw(st.floats(0.5, 100.0), label="cost")
            ours.observe(k, bs, cost)
            model.observe(k, bs, cost)
        elif op == "remove":
            ours.remove_job(k)
            del model.jobs[k]
        else:
            ours.reset_job(k)
            del model.jobs[k]
            model.register(k, arms_of[k])
        assert sorted(ours.jobs) == sorted(model.jobs)
    for k, j in model.jobs.items():
        for arm, state in ours.arm_state(k).items():
            assert state.observations == j["count"][arm]
            assert state.posterior_precision == j["prec"][arm]


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_power_lifecycle_against_the_naive_model(data):
    from naive_power import NaivePowerLimit

    ours = JITPowerLimitOptimizer(verbose=False)
    model = NaivePowerLimit()
    for _ in range(data.draw(st.integers(10, 120), label="ops")):
        op = data.draw(st.sampled_from(["observe", "observe", "observe", "remove", "reset"]), label="op")
        k = data.draw(st.integers(0, 8), label="key")
        if op == "observe":
            bs = data.draw(st.sampled_from([8, 16, 32]), label="bs")
            pl = data.draw(st.sampled_from([100, 150, 200]), label="pl")
            c = data.draw(st.floats(0.0, 10.0), label="cost")
            ours.observe(k, bs, pl, c)
            model.observe(k, bs, pl, c)
        elif k not in model.jobs():
            with pytest.raises(UnknownJobError):
                (ours.remove_job if op == "remove" else ours.reset_job)(k)
        else:
            (ours.remove_job if op == "remove" else ours.reset_job)(k)
            model.entries = {key: e for key, e in model.entries.items() if key[0] != k}
        assert ours.jobs == model.jobs()
        for j in model.jobs():
            assert {bs: tuple(s) for bs, s in ours.state(j).items()} == model.state(j)
        for j in range(9):
            for bs in (8, 16, 32):
                assert ours.predict(j, bs) == model.predict(j, bs)


def test_version_1_manager_file_loads_and_resets(tmp_path, monkeypatch):
    """A manager file as the version-1 writer wrote it (no registered default, format 1)."""
    import banditfleet.checkpoint as ckpt

    m = PruningExploreManager([32, 8, 64, 16], 32)
    m.report_batch_size_result(m.next_batch_size(), 1.0, True)
    arrays = {k: v for k, v in m._store.export_arrays().items() if k != "job.pr_registered_default"}
    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 1)
    ckpt.write_checkpoint(tmp_path / "m", "PruningExploreManager", {"num_pruning_rounds": 2}, [0], arrays)
    monkeypatch.undo()
    assert ckpt.read_checkpoint(tmp_path / "m")[0]["format_version"] == 1
    old = PruningExploreManager.load(tmp_path / "m")
    twin = PruningExploreManager([32, 8, 64, 16], 32)
    twin.report_batch_size_result(twin.next_batch_size(), 1.0, True)
    for _ in range(3):
        bs = old.next_batch_size()
        assert bs == twin.next_batch_size()
        old.report_batch_size_result(bs, 2.0, True)
        twin.report_batch_size_result(bs, 2.0, True)
    old.reset()
    fresh = PruningExploreManager([32, 8, 64, 16], 32)
    assert old.next_batch_size() == fresh.next_batch_size() == 32
    assert (old.expecting, old.default, old.batch_sizes) == (fresh.expecting, fresh.default, fresh.batch_sizes)


def test_power_entry_count_follows_removal():
    from naive_power import NaivePowerLimit

    ours, model = JITPowerLimitOptimizer(verbose=False), NaivePowerLimit()
    for k in range(100):
        for bs in (8, 16, 32)[: 1 + k % 3]:
            ours.observe(k, bs, 100, 1.0)
            model.observe(k, bs, 100, 1.0)
    ours.remove_jobs([1, 2, 3])  # below the compaction threshold: dead entries stay in the table
    assert len(ours.table) > ours.n_entries == len([e for e in model.entries if e[0] not in (1, 2, 3)])


@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_random_journaled_lifecycles_recover_the_state_in_memory(tmp_path_factory, data):
    """Random registrations, decisions, removals, resets, saves elsewhere and checkpoints on a
    journaled pair: reopening after an unclean stop gives the state in memory, rows included."""
    folder = tmp_path_factory.mktemp("pair")
    pair = open_pair(folder / "f", PruningGTSBatchSizeOptimizer, fsync="never", window_size=0)
    bso, plo = pair.bso, pair.plo
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32), label="seed"))
    next_key = 0
    for _ in range(data.draw(st.integers(5, 25), label="ops")):
        op = data.draw(st.sampled_from(["register", "step", "step", "remove", "reset", "save", "checkpoint"]), label="op")
        live = bso.jobs
        if op == "register" or not live:
            n = int(rng.integers(1, 30))
            keys = list(range(next_key, next_key + n))
            next_key += n
            bso.register_jobs(keys, [[8, 16, 32]] * n, default_bs=16)
        elif op == "step":
            keys = [k for k, e in zip(live, bso.exhausted_many(live).tolist()) if not e]
            if keys:
                bs = bso.predict_many(keys)
                bso.observe_many(keys, bs, rng.uniform(1, 9, len(keys)), rng.uniform(size=len(keys)) < 0.8)
                plo.observe_many(keys, bs, [200] * len(keys), rng.uniform(1, 9, len(keys)))
        elif op in ("remove", "reset"):
            chosen = rng.choice(live, size=int(rng.integers(1, len(live) + 1)), replace=False).tolist()
            (pair.remove_jobs if op == "remove" else pair.reset_jobs)(chosen)
        elif op == "save":
            pair.save(folder / "elsewhere")
        else:
            pair.checkpoint()
    rows = bso.rows(bso.jobs)
    want = (_state(bso), _state(plo), bso._store.n_jobs, bso._store.n_dead_jobs)
    pair._detach_folder()
    again = open_pair(folder / "f", PruningGTSBatchSizeOptimizer, fsync="never")
    assert (_state(again.bso), _state(again.plo), again.bso._store.n_jobs, again.bso._store.n_dead_jobs) == want
    assert np.array_equal(again.bso.rows(again.bso.jobs), rows)
    again.close()


def _chains(store):
    """Each live job's per-arm rewards, read by walking the chunk chains in Python."""
    from banditfleet.kernels.thompson import CHUNK

    out = {}
    for key in store.keys():
        row = store.row(key)
        arms = []
        for slot in range(int(store.arm_start[row]), int(store.arm_start[row] + store.arm_count[row])):
            n, chunk, values = int(store.history_count[slot]), int(store.slot_chunks[slot, 0]), []
            while len(values) < n:
                values += store.chunk_values[chunk, : min(CHUNK, n - len(values))].tolist()
                chunk = int(store.chunk_next[chunk])
            arms.append(values)
        out[key] = arms
    return out


def test_compaction_keeps_every_live_chain_and_drops_the_rest():
    from banditfleet.store import _check_chunks

    opt = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    rng = np.random.default_rng(4)
    opt.register_jobs(list(range(200)), [[8, 16, 32]] * 200)
    for _ in range(40):
        keys = rng.choice(200, size=150).tolist()
        opt.observe_many(keys, rng.choice([8, 16, 32], size=150), rng.uniform(size=150))
    before = _chains(opt._store)
    opt.remove_jobs(list(range(0, 200, 3)))
    opt.reset_jobs([1, 2])
    s = opt._store
    s.compact()
    after = _chains(s)
    assert after == {k: ([[]] * 3 if k in (1, 2) else v) for k, v in before.items() if k % 3}
    used = int(s.pool_used[0])
    _check_chunks(s.slot_chunks[: s.n_arms], s.chunk_next[:used], s.history_count[: s.n_arms])
    assert s.n_dead_chunks == s.n_dead_jobs == s.n_dead_arms == 0

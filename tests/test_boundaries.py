"""Inputs at the boundaries, each checked against the reference, numpy or a naive twin.

Written to kill planted bugs a mutation audit found alive (see docs/testing.md):
signed and unsigned zero costs, the largest finite costs, ties, forced
fingerprint collisions in the power table, the concurrency "best known" batch
size when the cheapest converged arm is the first slot, the pruning round
transitions, window boundaries (fill = window - 1, window, window + 1),
checkpoints with bytes after the end marker, atomic writes, and the journal's
fsync guarantee.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples
from naive import NaivePruningGTS
from naive_power import NaivePowerLimit

from banditfleet import (
    GTSBatchSizeOptimizer,
    JITPowerLimitOptimizer,
    OptimizerPair,
    PruningExploreManager,
    PruningGTSBatchSizeOptimizer,
)
from banditfleet.errors import BanditFleetError, CheckpointError

MAX = sys.float_info.max


def bits(x: float) -> bytes:
    return struct.pack("<d", float(x))


def same_float(a: float, b: float) -> bool:
    """Equal IEEE bits (so -0.0 != 0.0), or both NaN."""
    return bits(a) == bits(b) or (math.isnan(a) and math.isnan(b))


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _ref():
    return pytest.importorskip("zeus._legacy.policy.optimizer", reason="needs the reference zeus==0.16.0")


def _ref_job(i=0, default_bs=8):
    from zeus._legacy.job import Job as RefJob

    return RefJob("d", f"net{i}", "adam", 0.5, 10, default_bs=default_bs)


# ----------------------------------------------------------- zero and huge costs
# Costs a bandit may see at the edges: zeros of both signs (reward -0.0 / 0.0),
# ties, tiny and the largest finite values (sums overflow to inf, variances to nan).
edge_costs = st.sampled_from([0.0, -0.0, 0.0, 1.0, 1.0, 2.5, 5e-324, 1e-300, 1e300, MAX, MAX / 2])


def _assert_gts_posteriors(ref, ours, job, arms, where):
    mab = ref.mabs[job]
    for arm, state in ours.arm_state(job).items():
        assert same_float(state.posterior_mean, float(mab.arm_param_mean[arm])), (where, arm, state, mab.arm_param_mean[arm])
        assert same_float(state.posterior_precision, float(mab.arm_param_prec[arm])), (where, arm)
        assert same_float(state.reward_precision, float(mab.arm_reward_prec[arm])), (where, arm)
        assert state.observations == mab.arm_num_observations[arm], (where, arm)


@pytest.mark.reference
@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 15, 16, 17, 129, 130])
@pytest.mark.parametrize("cost", [0.0, -0.0])
def test_runs_of_zero_costs_keep_the_reference_posterior_bits(n, cost):
    """``n`` zero costs on one arm: the reward history is all -0.0 (or 0.0), and the posterior
    mean is numpy's sum (which starts from +0.0) over n, bit for bit. Runs of >= 8 take
    numpy's unrolled pairwise leaf, >= 128 its recursion."""
    ref_mod = _ref()
    arms = [8, 16]
    job = _ref_job()
    with quiet():
        ref = ref_mod.GTSBatchSizeOptimizer(learn_reward_precision=True, seed=3, verbose=False)
        ref.register_job(job, arms)
    ours = GTSBatchSizeOptimizer(learn_reward_precision=True, seed=3, verbose=False)
    ours.register_job(job, arms)
    for i in range(n):
        with quiet():
            ref.observe(job, 8, cost)
        ours.observe(job, 8, cost)
    # one batch call of the same, on the other arm
    with quiet():
        for _ in range(n):
            ref.observe(job, 16, cost)
    ours.observe_many([job] * n, [16] * n, [cost] * n)
    _assert_gts_posteriors(ref, ours, job, arms, f"n={n}")
    with quiet():
        want = [ref.predict(job) for _ in range(5)]
    assert ours.predict_many([job] * 5).tolist() == want


@pytest.mark.reference
@given(
    learn=st.booleans(),
    costs=st.lists(st.tuples(st.integers(0, 2), edge_costs), min_size=1, max_size=40),
    seed=st.sampled_from([0, 1, 2**63]),
)
@example(learn=True, costs=[(0, 0.0)] * 9, seed=0)
@example(learn=True, costs=[(0, -0.0)] * 9, seed=0)
@example(learn=True, costs=[(0, MAX), (0, MAX), (0, MAX)], seed=0)
@example(learn=True, costs=[(0, MAX), (0, -MAX / 2), (1, 0.0), (1, 0.0)], seed=1)
@example(learn=False, costs=[(0, MAX)] * 3 + [(1, 0.0)] * 9, seed=0)
def test_gts_edge_costs_equal_reference(learn, costs, seed):
    """Zeros, signed zeros, ties, tiny and the largest finite costs, repeated arms in a batch."""
    ref_mod = _ref()
    arms = [8, 16, 32]
    cfg = dict(learn_reward_precision=learn, seed=seed) if learn else dict(learn_reward_precision=False, reward_precision=0.5, seed=seed)
    job = _ref_job()
    with quiet():
        ref = ref_mod.GTSBatchSizeOptimizer(verbose=False, **cfg)
        ref.register_job(job, arms)
        for a, c in costs:
            ref.observe(job, arms[a], c)
    ours = GTSBatchSizeOptimizer(verbose=False, **cfg)
    ours.register_job(job, arms)
    ours.observe_many([job] * len(costs), [arms[a] for a, _ in costs], [c for _, c in costs])
    _assert_gts_posteriors(ref, ours, job, arms, "batch")
    with quiet():
        want = [ref.predict(job) for _ in range(4)]
    assert ours.predict_many([job] * 4).tolist() == want


# ------------------------------------------------------------------ windows
@st.composite
def window_runs(draw):
    """A pruning job driven to Thompson sampling, then ``fill`` more observations of one arm
    where fill is window - 1, window or window + 1, plus repeats in a batch."""
    window = draw(st.integers(2, 5))  # 1 is refused (a window of one reward has no variance)
    fill = window + draw(st.sampled_from([-1, 0, 1]))
    costs = draw(st.lists(edge_costs, min_size=max(fill, 0), max_size=max(fill, 0)))
    return window, costs


@pytest.mark.reference
@settings(max_examples=examples(30))
@given(run=window_runs(), seed=st.sampled_from([0, 7]))
@example(run=(2, [0.0]), seed=0)
@example(run=(2, [1.0, 1.0, 1.0]), seed=0)
@example(run=(3, [-0.0, 0.0]), seed=0)
@example(run=(3, [MAX, MAX, MAX, MAX]), seed=0)
def test_window_boundaries_equal_reference(run, seed):
    window, costs = run
    ref_mod = _ref()
    arms = [8, 16, 32]
    job = _ref_job(default_bs=16)
    with quiet():
        ref = ref_mod.PruningGTSBatchSizeOptimizer(window_size=window, seed=seed, verbose=False)
        ref.register_job(job, arms)
    ours = PruningGTSBatchSizeOptimizer(window_size=window, seed=seed, verbose=False)
    ours.register_job(job, arms, 16)
    # pruning: every arm reaches, distinct costs (no early exhaustion)
    for i in range(20):
        with quiet():
            want = ref.predict(job)
        got = ours.predict(job)
        assert got == want
        if job in ref.mabs:
            break
        c = 1.0 + (want % 7) + i / 8
        with quiet():
            ref.observe(job, want, c, True)
        ours.observe(job, got, c, True)
    assert job in ref.mabs
    # the window of arm 8: fill it to window-1, window or window+1 (one batch, repeated job)
    with quiet():
        for c in costs:
            ref.observe(job, 8, c)
    if costs:
        ours.observe_many([job] * len(costs), [8] * len(costs), costs)
    mab = ref.mabs[job]
    for arm, state in ours.arm_state(job).items():
        assert same_float(state.posterior_mean, float(mab.arm_param_mean[arm])), arm
        assert same_float(state.posterior_precision, float(mab.arm_param_prec[arm])), arm
        assert same_float(state.reward_precision, float(mab.arm_reward_prec[arm])), arm
    with quiet():
        want = [ref.predict(job) for _ in range(3)]
    assert [ours.predict(job) for _ in range(3)] == want


# ------------------------------------------------- pruning: concurrency, rounds
def _drive(ours, naive, ops):
    """Apply ops ("p",) predict or ("o", bs, cost, converged) to ours and the naive twin;
    every result or error class must agree. Returns the predictions."""
    out = []
    for op in ops:
        if op[0] == "p":
            calls = (lambda: ours.predict("a"), lambda: naive.predict("a"))
        else:
            calls = (lambda: ours.observe("a", *op[1:]), lambda: naive.observe("a", *op[1:]))
        results = []
        for call in calls:
            try:
                results.append((call(), None))
            except BanditFleetError as err:
                results.append((None, type(err).__mro__[1] if type(err).__module__ == "naive" else type(err)))
        (a, ea), (b, eb) = results
        assert (a is None) == (b is None) and a == b, (op, results)
        out.append(a)
    return out


def test_concurrency_best_known_is_the_converged_first_slot():
    """While a pruning result is awaited, a concurrent submission gets the cheapest converged
    batch size so far. Here that is batch size 8, slot 0, found in round 1, while round 2's
    own best is 16: the answer must be 8 (naive twin and the reference simulator's rule)."""
    ours = PruningGTSBatchSizeOptimizer(concurrency=True, seed=1, verbose=False)
    naive = NaivePruningGTS(concurrency=True, seed=1)
    ours.register_job("a", [8, 16, 32], 16)
    naive.register("a", [8, 16, 32], 16)
    ops = [
        ("p",), ("o", 16, 5.0, True),
        ("p",), ("o", 8, 1.0, True),  # cheapest converged: 8, slot 0
        ("p",), ("o", 32, 3.0, True),
        ("p",), ("o", 8, 20.0, True),  # round 2 starts at 8, now expensive
        ("p",), ("o", 16, 2.0, True),  # round 2's best: 16
        ("p",),  # 32 handed out, awaited
        ("p",), ("p",),  # concurrent submissions: best known
    ]
    got = _drive(ours, naive, ops)
    assert got[-2:] == [8, 8]


@pytest.mark.parametrize("slot0_first", [True, False])
def test_concurrency_best_known_tracks_converged_results_out_of_order(slot0_first):
    """Results nobody asked for (concurrent runs) still update the cheapest converged arm."""
    ours = PruningGTSBatchSizeOptimizer(concurrency=True, seed=2, verbose=False)
    naive = NaivePruningGTS(concurrency=True, seed=2)
    arms = [8, 16, 32, 64]
    ours.register_job("a", arms, 32)
    naive.register("a", arms, 32)
    early = [("o", 8, 0.5, True)] if slot0_first else [("o", 64, 0.5, True)]
    ops = [("p",), ("p",)] + early + [("p",), ("o", 32, 4.0, True), ("p",), ("p",), ("o", 64, 0.25, False), ("p",)]
    _drive(ours, naive, ops)


def _ref_manager_run(arms, default, rounds, outcome_of):
    """Drive our manager and the reference's side by side; ``outcome_of(i, bs)`` is the
    (cost, reached) of the i-th handed-out batch size. Every answer, ``default`` and
    ``expecting`` must agree after every step."""
    ref_mod = _ref()
    ref = ref_mod.PruningExploreManager(list(arms), default, rounds)
    ours = PruningExploreManager(list(arms), default, rounds)
    seen = []
    for _ in range(100):
        results = []
        for m in (ref, ours):
            try:
                results.append(("bs", m.next_batch_size()))
            except StopIteration as stop:
                results.append(("stop", sorted(stop.value)))
            except Exception:  # nothing reached in a round: both must refuse
                results.append(("error", None))
        assert results[0] == results[1], (seen, results)
        assert (ref.default, ref.expecting) == (ours.default, ours.expecting), seen
        kind, bs = results[0]
        if kind != "bs":
            return seen
        seen.append(bs)
        cost, reached = outcome_of(len(seen), bs)
        ref.report_batch_size_result(bs, cost, reached)
        ours.report_batch_size_result(bs, cost, reached)
        assert (ref.default, ref.expecting) == (ours.default, ours.expecting), seen
    raise AssertionError("pruning did not finish")


@pytest.mark.reference
@pytest.mark.parametrize("rounds", [1, 2, 3])
@pytest.mark.parametrize(
    "name,outcome_of",
    [
        # later rounds are all more expensive than round 1's best: the best must restart
        ("costs rise", lambda i, bs: (float(i) + bs / 100, True)),
        # later rounds are cheaper
        ("costs fall", lambda i, bs: (100.0 / i + bs / 1000, True)),
        # ties everywhere: the first of equal costs wins
        ("ties", lambda i, bs: (1.0, True)),
        # zeros and negative zeros
        ("zeros", lambda i, bs: (0.0 if i % 2 else -0.0, True)),
        # the largest batch sizes fail
        ("big fail", lambda i, bs: (float(i % 5), bs < 64)),
        # the smallest fail
        ("small fail", lambda i, bs: (float(7 - i % 7), bs > 8)),
    ],
)
@pytest.mark.parametrize(
    "arms,default",
    [
        ([8, 16, 32, 64, 128], 32),
        ([8, 16, 32, 64, 128], 8),
        ([8, 16, 32, 64, 128], 128),
        ([16], 16),
        # unsorted: round 1 splits by position, later rounds by value
        ([64, 8, 128, 16, 32], 16),
        ([128, 8, 64, 32, 16], 8),
    ],
)
def test_pruning_round_transitions_equal_reference(rounds, name, outcome_of, arms, default):
    """Fixed round transitions: default at either end of the list or in the middle, costs
    that rise or fall across rounds (the round's best must reset), ties, signed zeros."""
    _ref_manager_run(arms, default, rounds, outcome_of)


# ---------------------------------------------------------- power-limit table
def _np_hash(row: int, bs: np.ndarray) -> np.ndarray:
    """splitmix64-based key hash, as documented in kernels/power.py, in numpy uint64."""
    golden, m1, m2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)

    def mix(x):
        x = (x ^ (x >> np.uint64(30))) * m1
        x = (x ^ (x >> np.uint64(27))) * m2
        return x ^ (x >> np.uint64(31))

    with np.errstate(over="ignore"):
        h = mix(np.uint64(row) * golden + np.uint64(1))
        return mix(h ^ bs.astype(np.uint64))


def _colliding_batch_sizes(row: int, low_bits: int, count: int = 1):
    """Pairs of batch sizes whose keys for ``row`` share the 31-bit fingerprint and the
    lowest ``low_bits`` hash bits (the same home position in a table of 2**low_bits)."""
    from banditfleet.kernels.power import hash_key

    bs = np.arange(1, 1 << 21, dtype=np.int64)
    h = _np_hash(row, bs)
    assert int(h[0]) == int(hash_key(row, 1)) and int(h[-1]) == int(hash_key(row, int(bs[-1])))
    key = ((h >> np.uint64(32)) & np.uint64(0x7FFFFFFF)) << np.uint64(low_bits) | (h & np.uint64((1 << low_bits) - 1))
    order = np.argsort(key, kind="stable")
    k = key[order]
    dup = np.flatnonzero(k[1:] == k[:-1])
    assert dup.size >= count, "no colliding pair in the search range"
    return [(int(bs[order[i]]), int(bs[order[i + 1]])) for i in dup[:count]]


@pytest.fixture(scope="module")
def collisions():
    return _colliding_batch_sizes(0, 5, 2)


def test_forced_fingerprint_collision_is_told_apart(collisions):
    """Two batch sizes of one job with the same fingerprint and home position: the table must
    still compare the batch size itself (naive twin: plain dict)."""
    for a, b in collisions:
        opt = JITPowerLimitOptimizer(verbose=False)
        naive = NaivePowerLimit()
        assert opt.table.capacity <= 32 // 2  # the table has 2**5 positions
        for job, bs, pl, cost in [("j", a, 300, 2.0), ("j", b, 250, 1.0), ("j", a, 200, 1.5), ("j", b, 150, 3.0)]:
            assert opt.predict(job, bs) == naive.predict(job, bs)
            assert opt.predict_many([job], [bs]).tolist() == [naive.predict(job, bs) or -1] or naive.predict(job, bs) is None
            opt.observe(job, bs, pl, cost)
            naive.observe(job, bs, pl, cost)
        for bs in (a, b):
            assert opt.predict("j", bs) == naive.predict("j", bs)
            s = opt.state("j")[bs]
            assert (s.best_power_limit, s.best_cost, s.observations) == naive.state("j")[bs]


def test_forced_fingerprint_collision_in_one_batch_and_after_growth(collisions):
    (a, b), (c, d) = collisions
    opt = JITPowerLimitOptimizer(verbose=False)
    naive = NaivePowerLimit()
    obs = [("j", x, 100 + 10 * i, float(9 - i)) for i, x in enumerate([a, b, c, d, b, a, d, c])]
    opt.observe_many([o[0] for o in obs], [o[1] for o in obs], [o[2] for o in obs], [o[3] for o in obs])
    for o in obs:
        naive.observe(*o)
    # grow the table (rehash) with other keys, then check every colliding key again
    for i in range(40):
        opt.observe(f"k{i}", 8, 100, 1.0)
        naive.observe(f"k{i}", 8, 100, 1.0)
    for x in (a, b, c, d):
        assert opt.predict("j", x) == naive.predict("j", x)
        s = opt.state("j")[x]
        assert (s.best_power_limit, s.best_cost, s.observations) == naive.state("j")[x]
    assert opt.predict("j", a + b + c + d) is None


@given(
    obs=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from([8, 16, 32]), st.sampled_from([100, 150, 200, 250]), edge_costs),
        min_size=1,
        max_size=30,
    ),
    batch=st.booleans(),
)
@example(obs=[(0, 8, 250, 1.0), (0, 8, 100, 1.0), (0, 8, 200, 1.0)], batch=False)  # ties: the first stays
@example(obs=[(0, 8, 250, 0.0), (0, 8, 100, -0.0), (0, 8, 200, 0.0)], batch=True)  # -0.0 is not < 0.0
@example(obs=[(0, 8, 250, MAX), (0, 8, 100, MAX), (0, 8, 200, MAX / 2)], batch=True)
@example(obs=[(0, 8, 100, 2.0), (0, 8, 250, 1.0), (0, 8, 200, 1.0), (0, 8, 150, 0.5)], batch=False)
def test_power_limit_order_equals_naive(obs, batch):
    """The best power limit is the first of the cheapest, in observation order, whether the
    observations come one by one or in one batch (repeated keys inside the batch)."""
    opt = JITPowerLimitOptimizer(verbose=False)
    naive = NaivePowerLimit()
    jobs = [f"j{j}" for j, *_ in obs]
    if batch:
        opt.observe_many(jobs, [o[1] for o in obs], [o[2] for o in obs], [o[3] for o in obs])
    else:
        for job, (_, bs, pl, c) in zip(jobs, obs):
            opt.observe(job, bs, pl, c)
    for job, (_, bs, pl, c) in zip(jobs, obs):
        naive.observe(job, bs, pl, c)
    for job in set(jobs):
        got = {bs: (s.best_power_limit, s.best_cost, s.observations) for bs, s in opt.state(job).items()}
        want = naive.state(job)
        assert list(got) == list(want)  # first-observation order
        for bs in want:
            assert got[bs][0] == want[bs][0] and got[bs][2] == want[bs][2]
            assert same_float(got[bs][1], want[bs][1])


@pytest.mark.reference
def test_power_limit_order_equals_reference():
    ref_mod = _ref()
    job = _ref_job()
    ref = ref_mod.JITPowerLimitOptimizer(verbose=False)
    ours = JITPowerLimitOptimizer(verbose=False)
    rng = np.random.default_rng(5)
    for _ in range(200):
        bs = int(rng.choice([8, 16, 32]))
        pl = int(rng.choice([100, 150, 200, 250, 300]))
        cost = float(rng.choice([0.0, 1.0, 1.0, 2.0, 0.5]))
        with quiet():
            ref.observe(job, bs, pl, cost)
        ours.observe(job, bs, pl, cost)
        for b in (8, 16, 32):
            with quiet():
                want = ref.predict(job, b)
            assert ours.predict(job, b) == want


# ------------------------------------------------------- checkpoint files
def _durables(tmp_path):
    gts = GTSBatchSizeOptimizer(learn_reward_precision=True, seed=1, verbose=False)
    gts.register_jobs(["a", "b"], [[8, 16], [32]])
    gts.observe_many(["a", "a", "b"], [8, 16, 32], [1.0, 2.0, 3.0])
    pr = PruningGTSBatchSizeOptimizer(seed=2, verbose=False)
    pr.register_job("a", [8, 16, 32], 16)
    pr.observe("a", pr.predict("a"), 1.0, True)
    plo = JITPowerLimitOptimizer(verbose=False)
    plo.observe("a", 8, 100, 1.0)
    m = PruningExploreManager([8, 16, 32], 16)
    m.report_batch_size_result(m.next_batch_size(), 1.0, True)
    pair = OptimizerPair(GTSBatchSizeOptimizer(learn_reward_precision=True, seed=3, verbose=False), JITPowerLimitOptimizer(verbose=False))
    pair.bso.register_job("a", [8, 16])
    pair.plo.observe("a", 8, 100, 1.0)
    return [gts, pr, plo, m, pair]


@pytest.mark.parametrize("tail", [b"\0", b"x", b"BANDITFLEET-END\0", b"\0" * 4096])
def test_checkpoint_with_bytes_after_the_end_marker_is_refused(tmp_path, tail):
    for obj in _durables(tmp_path):
        path = tmp_path / f"{type(obj).__name__}.bfc"
        obj.save(path)
        type(obj).load(path)  # the intact file loads
        with open(path, "ab") as f:
            f.write(tail)
        with pytest.raises(CheckpointError):
            type(obj).load(path)


def test_truncated_checkpoint_is_refused(tmp_path):
    for obj in _durables(tmp_path):
        path = tmp_path / f"{type(obj).__name__}.bfc"
        obj.save(path)
        data = path.read_bytes()
        for cut in (1, 8, 16, 17, len(data) // 2):
            path.write_bytes(data[:-cut])
            with pytest.raises(CheckpointError):
                type(obj).load(path)


# ---------------------------------------------------------------- atomic writes
def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    from banditfleet.checkpoint import atomic_write

    path = tmp_path / "f.bin"
    atomic_write(path, [b"old"])
    assert path.read_bytes() == b"old"

    def chunks():
        yield b"new, partial"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(path, chunks())
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_atomic_write_fsyncs_the_data_before_the_rename(tmp_path, monkeypatch):
    """The new file's bytes are fsynced before it replaces the old name, and the folder after."""
    from banditfleet import checkpoint

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st_ = os.fstat(fd)
        events.append(("fsync", st_.st_ino, st_.st_size))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, os.stat(src).st_size))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "f.bin"
    checkpoint.atomic_write(path, [b"abc", b"defg"])
    assert path.read_bytes() == b"abcdefg"
    kinds = [e[0] for e in events]
    r = kinds.index("replace")
    ino, size = events[r][1], events[r][2]
    assert size == 7
    assert ("fsync", ino, 7) in events[:r], events
    assert "fsync" in kinds[r + 1 :], "the folder is not fsynced after the rename"


def test_atomic_save_failure_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from banditfleet import checkpoint

    opt = GTSBatchSizeOptimizer(learn_reward_precision=True, seed=1, verbose=False)
    opt.register_job("a", [8, 16])
    path = tmp_path / "c.bfc"
    opt.save(path)
    before = path.read_bytes()
    opt.observe("a", 8, 1.0)

    def fail(*args, **kwargs):
        raise OSError("no space left")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        opt.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.bfc"]
    assert GTSBatchSizeOptimizer.load(path).arm_state("a")[8].observations == 0


# ----------------------------------------------------------- journal fsync
def _journal_files(folder: Path):
    return sorted(p for p in folder.iterdir() if p.name.startswith("journal"))


def _fsync_spy(monkeypatch):
    """Records (inode, size at the time) of every fsync/fdatasync."""
    synced = []
    real = {name: getattr(os, name) for name in ("fsync", "fdatasync") if hasattr(os, name)}

    def spy(name):
        def call(fd):
            try:
                st_ = os.fstat(fd)
                synced.append((st_.st_ino, st_.st_size))
            except OSError:
                pass
            return real[name](fd)

        return call

    for name in real:
        monkeypatch.setattr(os, name, spy(name))
    return synced


def _assert_journal_durable(folder: Path, synced):
    """The journal's current bytes were all on disk (an fsync of the journal file happened
    when it had at least its present size)."""
    files = _journal_files(folder)
    assert files, "no journal file"
    st_ = files[-1].stat()
    assert any(ino == st_.st_ino and size >= st_.st_size for ino, size in synced), (
        f"{files[-1].name}: {st_.st_size} bytes, never fsynced at that size; fsyncs: {synced[-5:]}"
    )


def _journaled_calls():
    """(name, opener, calls): each call is a state-changing public method."""
    gts = (
        "gts",
        lambda folder: GTSBatchSizeOptimizer.open(folder, fsync="batch", learn_reward_precision=True, seed=1),
        [
            lambda o: o.register_job("a", [8, 16]),
            lambda o: o.register_jobs(["b", "c"], [[8], [16, 32]]),
            lambda o: o.predict("a"),
            lambda o: o.observe("a", 8, 1.0),
            lambda o: o.predict_many(["a", "b"]),
            lambda o: o.observe_many(["a", "c"], [16, 32], [2.0, 3.0]),
        ],
    )
    pruning = (
        "pruning",
        lambda folder: PruningGTSBatchSizeOptimizer.open(folder, fsync="batch", seed=2),
        [
            lambda o: o.register_job("a", [8, 16, 32], 16),
            lambda o: o.register_jobs(["b"], [[8, 16]], [8]),
            lambda o: o.observe("a", o.predict("a"), 1.0, True),
            lambda o: o.predict_many(["b"]),
            lambda o: o.observe_many(["b"], [8], [2.0], [True]),
        ],
    )
    power = (
        "power",
        lambda folder: JITPowerLimitOptimizer.open(folder, fsync="batch"),
        [
            lambda o: o.observe("a", 8, 100, 1.0),
            lambda o: o.observe_many(["a", "b"], [8, 16], [200, 100], [0.5, 2.0]),
        ],
    )
    pair = (
        "pair",
        lambda folder: OptimizerPair.open(folder, GTSBatchSizeOptimizer, fsync="batch", learn_reward_precision=True, seed=4),
        [
            lambda o: o.bso.register_job("a", [8, 16]),
            lambda o: o.bso.observe("a", o.bso.predict("a"), 1.0),
            lambda o: o.plo.observe("a", 8, 100, 1.0),
            lambda o: o.plo.observe_many(["a"], [16], [150], [2.0]),
        ],
    )
    return [gts, pruning, power, pair]


@pytest.mark.parametrize("name,opener,calls", _journaled_calls(), ids=lambda x: x if isinstance(x, str) else "")
def test_batch_fsync_covers_every_acknowledged_call(tmp_path, monkeypatch, name, opener, calls):
    """Under fsync="batch", when a journaled call returns, its record is on disk: an fsync of
    the journal file happened after the record was written. (Checked as a guarantee, not as
    a count of fsync calls per append, so group commit may batch concurrent appends.)"""
    folder = tmp_path / name
    obj = opener(folder)
    try:
        synced = _fsync_spy(monkeypatch)
        for call in calls:
            size_before = _journal_files(folder)[-1].stat().st_size
            call(obj)
            assert _journal_files(folder)[-1].stat().st_size > size_before, "the call journaled nothing"
            _assert_journal_durable(folder, synced)
    finally:
        monkeypatch.undo()
        obj.close()

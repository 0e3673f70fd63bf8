"""The Thompson-sampling decision kernel against numpy, the naive twin and zeus.

The kernel (``kernels/thompson.py``) skips the permutation of
``choice(k, k, replace=False)`` when no active arm is under-explored and
redoes a job exactly when Lemire's rare branch fires; these tests drive it
over fleets built to reach every path -- ragged arm counts 1-70, pruned and
under-explored arms, precision 0 and inf, exact ties, buffered 32-bit halves,
and stream states crafted so that a chosen draw of the permutation is
rejected -- and compare each decision and each job's whole stream state with
numpy's ``Generator`` doing what the reference does, and with the naive
PCG64 twin.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet.kernels.streams import allocate_streams
from banditfleet.kernels.thompson import thompson_predict, thompson_predict_parallel
from banditfleet.rng_state import export_state, import_state
from hypothesis_budget import examples
from naive import MASK64, MASK128, PCG64_MULTIPLIER, NaivePCG64

_MULT_INV = pow(PCG64_MULTIPLIER, -1, 1 << 128)


def _rotl64(value: int, rot: int) -> int:
    return ((value << rot) | (value >> ((64 - rot) & 63))) & MASK64


def crafted_state(rng: np.random.Generator, steps_before: int, zero: str) -> dict:
    """A PCG64 state whose ``steps_before + 1``-th 64-bit output has a zero low half
    (``zero="low"``), a zero high half ("high") or is zero ("both").

    A zero 32-bit draw over ``e`` values takes Lemire's rare branch (its
    leftover 0 is below ``e``) and is rejected when ``(2**32 - e) % e > 0``
    (e.g. ``e = 3``), so numpy then draws again.
    """
    inc = (int(rng.integers(0, 2**63)) << 65 | int(rng.integers(0, 2**63)) << 1 | 1) & MASK128
    hi = int(rng.integers(0, 2**63)) << 1 | int(rng.integers(0, 2))
    y = (int(rng.integers(0, 2**63)) << 1 | 1) & MASK64  # the output, rotated back below
    if zero in ("low", "both"):
        y &= ~0xFFFFFFFF & MASK64
    if zero in ("high", "both"):
        y &= 0xFFFFFFFF
    x = _rotl64(y, hi >> 58)
    state = (hi << 64) | (hi ^ x)
    for _ in range(steps_before + 1):  # step back to the state before those steps
        state = ((state - inc) * _MULT_INV) & MASK128
    return {"bit_generator": "PCG64", "state": {"state": state, "inc": inc}, "has_uint32": 0, "uinteger": 0}


def model_decision(state: dict, arms: list[tuple[bool, int, float, float]], need: int) -> tuple[int, dict, bool]:
    """The reference's decision over a job's arms (slot order) with numpy:
    ``(chosen arm index, numpy's state after, explored)``.

    ``arms``: (active, observations, posterior mean, posterior precision).
    """
    bitgen = np.random.PCG64()
    bitgen.state = state
    rng = np.random.Generator(bitgen)
    act = [a for a, arm in enumerate(arms) if arm[0]]
    for p in rng.choice(np.array(act), len(act), replace=False):
        if arms[p][1] < need:
            return int(p), bitgen.state, True
    best, chosen = None, None
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in act:
            _, _, mean, prec = arms[a]
            draw = rng.normal(mean, np.sqrt(np.reciprocal(np.float64(prec))))
            if best is None or draw > best:
                best, chosen = draw, a
    return int(chosen), bitgen.state, False


class Fleet:
    """Struct-of-arrays arms of ``counts`` jobs, as the store lays them out."""

    def __init__(self, rng: np.random.Generator, counts: list[int], need: list[int], mode: str) -> None:
        n = len(counts)
        self.counts = np.array(counts, np.int64)
        self.start = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        total = int(self.counts.sum())
        self.need = np.array(need, np.int64)
        self.active = (rng.random(total) < 0.8).astype(np.uint8)
        for r in range(n):  # every bandit keeps at least one arm
            if not self.active[self.start[r] : self.start[r] + self.counts[r]].any():
                self.active[self.start[r] + rng.integers(0, self.counts[r])] = 1
        self.value = (8 * (1 + np.arange(total)) + 1000 * np.repeat(np.arange(n), self.counts)).astype(np.int64)
        self.obs = rng.integers(0, 4, total).astype(np.int64)
        if mode == "sampling":  # nobody explores: the skipped-permutation path
            self.obs[:] = np.repeat(self.need, self.counts)
        mean = rng.normal(-1000.0, 50.0, total)
        prec = rng.choice([1e-4, 1e-2, 1.0], total)
        special = rng.random(total)
        prec[special < 0.08] = 0.0  # an infinite scale: +-inf draws
        prec[(special >= 0.08) & (special < 0.2)] = np.inf  # a zero scale: the mean itself
        tie = rng.random(total) < 0.15  # exact ties with another arm of the job at precision inf
        mean[tie] = -1000.0
        prec[tie] = np.inf
        self.mean, self.prec = mean, prec
        self.streams = allocate_streams(n)

    def arms(self, r: int) -> list[tuple[bool, int, float, float]]:
        s, c = int(self.start[r]), int(self.counts[r])
        return [(bool(self.active[i]), int(self.obs[i]), float(self.mean[i]), float(self.prec[i])) for i in range(s, s + c)]

    def predict(self, rows: np.ndarray, parallel: int = 0) -> np.ndarray:
        out = np.empty(rows.shape[0], np.int64)
        args = (rows, self.start, self.counts, self.active, self.value, self.obs, self.mean, self.prec, self.need, self.streams, out)
        if parallel:
            thompson_predict_parallel(*args, int(self.counts.max()), parallel)
        else:
            thompson_predict(*args)
        return out


def _states(rng: np.random.Generator, n: int) -> list[dict]:
    """Seeded states, some with a buffered 32-bit half, some crafted to force a rejection
    at a random draw of the permutation (or of the normals after it)."""
    out = []
    for _ in range(n):
        u = rng.random()
        if u < 0.5:
            g = np.random.default_rng(int(rng.integers(0, 2**63)))
            if rng.random() < 0.4:
                g.integers(0, 2**32, dtype=np.uint32)  # leaves the high half buffered
            out.append(g.bit_generator.state)
        else:
            state = crafted_state(rng, int(rng.integers(0, 40)), ["low", "high", "both"][int(rng.integers(0, 3))])
            if rng.random() < 0.3:
                state["has_uint32"], state["uinteger"] = 1, int(rng.choice([0, 1, int(rng.integers(0, 2**32))]))
            out.append(state)
    return out


def _check(fleet: Fleet, rows: np.ndarray, states: list[dict], parallel: int = 0) -> tuple[int, int]:
    for r, state in enumerate(states):
        import_state(fleet.streams, r, state)
    out = fleet.predict(rows, parallel)
    explored = 0
    now = list(states)
    for i, r in enumerate(rows.tolist()):
        chosen, now[r], was_explore = model_decision(now[r], fleet.arms(r), int(fleet.need[r]))
        explored += was_explore
        assert out[i] == fleet.value[fleet.start[r] + chosen], f"job {r} (call {i})"
    for r in range(len(states)):
        assert export_state(fleet.streams, r) == now[r], f"stream of job {r}"
    return explored, len(rows) - explored


@settings(max_examples=examples(25), deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["sampling", "mixed"]))
def test_decisions_and_streams_match_numpy(seed, mode):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    counts = rng.integers(1, 71, n).tolist()
    fleet = Fleet(rng, counts, rng.integers(0, 4, n).tolist(), mode)
    rows = rng.integers(0, n, int(rng.integers(1, 3 * n))).astype(np.int64)  # jobs may repeat
    _check(fleet, rows, _states(rng, n))


def test_crafted_states_force_rejections_and_match():
    """Every arm count 1-70, each with states whose zeroed draw lands on each position of
    the permutation; the crafted draws must really make numpy redraw (else the test
    would not reach the redo)."""
    rng = np.random.default_rng(2026)
    rejected = 0
    for k in range(1, 71):
        n32 = 2 * (k - 1)
        n = max(1, (n32 + 1) // 2 + 1)
        fleet = Fleet(rng, [k] * n, [1] * n, "sampling")
        fleet.active[:] = 1
        states = [crafted_state(rng, j, "both") for j in range(n)]
        _check(fleet, np.arange(n, dtype=np.int64), states)
        for j, state in enumerate(states):
            twin = NaivePCG64()
            twin.numpy_state = state
            twin.choice_without_replacement(k, k)
            draws32 = 2 * _steps_between(state, twin) - twin.has_uint32
            rejected += draws32 > n32
    assert rejected > 50


def _steps_between(before: dict, twin: NaivePCG64) -> int:
    s, inc = before["state"]["state"], before["state"]["inc"]
    for steps in range(200):
        if s == twin.state:
            return steps
        s = (s * PCG64_MULTIPLIER + inc) & MASK128
    raise AssertionError("the twin's state is not within 200 steps")


def test_exploration_order_matches_naive_twin():
    """Under-explored jobs: the chosen arm is the first under-explored one in the twin's
    ``choice`` order (the exact sampler path)."""
    rng = np.random.default_rng(5)
    for k in (1, 2, 3, 8, 17, 70):
        n = 30
        fleet = Fleet(rng, [k] * n, [2] * n, "mixed")
        fleet.active[:] = 1
        seeds = rng.integers(0, 2**32, n)
        twins = []
        for r in range(n):
            twin = NaivePCG64(int(seeds[r]))
            import_state(fleet.streams, r, twin.numpy_state)
            twins.append(twin)
        out = fleet.predict(np.arange(n, dtype=np.int64))
        for r, twin in enumerate(twins):
            order = twin.choice_without_replacement(k, k)
            slots = [a for a in order if fleet.obs[fleet.start[r] + a] < 2]
            if slots:
                assert out[r] == fleet.value[fleet.start[r] + slots[0]]
                assert export_state(fleet.streams, r) == twin.numpy_state


@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_kernel_equals_numpy_for_any_thread_count(threads):
    rng = np.random.default_rng(77)
    n = 300
    fleet = Fleet(rng, rng.integers(1, 71, n).tolist(), rng.integers(0, 3, n).tolist(), "mixed")
    states = _states(rng, n)
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        _check(fleet, rng.permutation(n).astype(np.int64), states, parallel=4 * threads)
    finally:
        numba.set_num_threads(before)


def test_independent_streams_ragged_fleet_matches_zeus():
    """The bench's fleet of per-job seeds, own cost bowls and ragged arm counts: every
    decision of its warm-up and of further rounds equals zeus's (one reference optimizer
    per job, seeded alike; the fleet builder asserts each round)."""
    from banditfleet.bench.fleets import random_gts_fleet, reference

    policy, why = reference()
    if policy is None:
        pytest.skip(why)
    fleet = random_gts_fleet(150, 8, 150, policy=policy, seed=11)
    for _ in range(6):
        fleet.round()
    assert fleet.arm_counts.min() < fleet.arm_counts.max()

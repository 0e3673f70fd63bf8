"""Batched Gaussian Thompson sampling and posterior updates over the fleet arrays.

Layout (see docs/architecture.md): jobs are rows; job ``r`` owns the arm slots
``arm_start[r] : arm_start[r] + arm_count[r]``, in the order its arm values
were registered. Per-arm arrays are indexed by slot. ``arm_active`` marks the
slots that are arms of the job's bandit (all of them for plain GTS, the
survivors of pruning for PruningGTS); the bandit's arm order is slot order.

Reward history is kept per slot with the slot's own window
``slot_window[slot]``: a ring buffer of ``W > 0`` doubles, contiguous in the
ring pool at ``history_values[slot_offset[slot] : slot_offset[slot] + W]``, or,
with ``W == 0``, unbounded and kept in a pool of fixed-size chunks linked per
slot. ``history_count[slot]`` is the number of rewards ever appended. Per-job
settings (``prior_mean``, ``prior_precision``, ``num_exploration``) are arrays
indexed by row.
"""

from __future__ import annotations

import math
from enum import IntEnum

import numba
import numpy as np

from ._ziggurat_tables import FI_DOUBLE, KI_DOUBLE, WI_DOUBLE, ZIGGURAT_NOR_INV_R, ZIGGURAT_NOR_R
from .distributions import sample_without_replacement_s
from .streams import load_stream, next_double_s, next_uint64_s, store_stream
from .stats import SUM_STACK_DEPTH, fit_increment, fit_reset_with, precision_from_variance, variance_with, window_fit_with

__all__ = [
    "ThompsonCode",
    "CHUNK",
    "thompson_predict",
    "thompson_predict_parallel",
    "rows_are_unique",
    "find_arm_slots",
    "observe_incremental",
    "observe_refit",
    "observe_refit_parallel",
    "observe_incremental_parallel",
    "append_history",
    "gather_history",
    "refit_slot",
    "refit_history",
    "window_needs_copy",
]

from ._config import INLINE as _INLINE, INLINE_HELPER as _INLINE_HELPER, JIT as _JIT, JIT_HELPER as _JIT_HELPER, JIT_PARALLEL as _JIT_PARALLEL

_MASK52 = np.uint64(0x000FFFFFFFFFFFFF)



class ThompsonCode(IntEnum):
    """Negative results of the scalar observe kernels (non-negative results are arm slots)."""

    UNKNOWN_BATCH_SIZE = -1  # not one of the job's batch sizes; nothing changed
    NEEDS_POOL = -2  # unbounded history has no free chunk: grow the pool, call again; nothing changed


# Rewards per chunk of unbounded history.
CHUNK = 16


# ---------------------------------------------------------------------------
# The decision kernel (docs/kernels.md, "The decision kernel").
#
# Per job the reference draws choice(k, k, replace=False) -- 2 (k - 1) bounded
# 32-bit draws with Lemire's method, over the ranges 1 .. k-1 (Floyd) and then
# k-1 .. 1 (the shuffle) -- and, unless an active arm is under-explored, one
# standard normal per active arm. When no active arm is under-explored the
# permutation cannot change the decision, so the fast path only advances the
# stream through the 32-bit draws, testing each for Lemire's rare branch
# (low half of draw * range < range); if the branch fires anywhere, the job
# is redone from its saved state through the exact sampler. Indices are
# unsigned: numba compiles a signed index as ``i < 0 ? i + n : i``.

_U64 = np.uint64
_U32 = np.uint32
_LOW32 = np.uint64(0xFFFFFFFF)


@numba.njit(**_JIT_HELPER)
def _normal_tail(st, idx, rabs, x):
    """The ziggurat's rare branches (wedge or tail test, then retries), out of line so
    that the hot loop keeps its registers; continues exactly as
    :func:`~.distributions.standard_normal_s` after its first draw failed the fast test."""
    while True:
        if idx == 0:
            while True:
                st, u = next_double_s(st)
                xx = -ZIGGURAT_NOR_INV_R * math.log1p(-u)
                st, u = next_double_s(st)
                yy = -math.log1p(-u)
                if yy + yy > xx * xx:
                    if (rabs >> _U64(8)) & _U64(1):
                        return st, -(ZIGGURAT_NOR_R + xx)
                    return st, ZIGGURAT_NOR_R + xx
        else:
            st, u = next_double_s(st)
            if (FI_DOUBLE[idx - _U64(1)] - FI_DOUBLE[idx]) * u + FI_DOUBLE[idx] < math.exp(-0.5 * x * x):
                return st, x
        st, r = next_uint64_s(st)
        idx = r & _U64(0xFF)
        r >>= _U64(8)
        sign = r & _U64(1)
        rabs = (r >> _U64(1)) & _MASK52
        x = np.float64(rabs) * WI_DOUBLE[idx]
        if sign:
            x = -x
        if rabs < KI_DOUBLE[idx]:
            return st, x


@numba.njit(**_INLINE_HELPER)
def _normal_fast(st):
    """numpy's ziggurat standard normal: the common case inline, the rest in :func:`_normal_tail`."""
    st, r = next_uint64_s(st)
    idx = r & _U64(0xFF)
    r >>= _U64(8)
    sign = r & _U64(1)
    rabs = (r >> _U64(1)) & _MASK52
    x = np.float64(rabs) * WI_DOUBLE[idx]
    if sign:
        x = -x
    if rabs < KI_DOUBLE[idx]:
        return st, x
    return _normal_tail(st, idx, rabs, x)


@numba.njit(**_INLINE_HELPER)
def _lemire_flags(value, e0, e1):
    """Whether Lemire's rare branch fires for the low half of ``value`` bounded to ``e0``
    values or for its high half bounded to ``e1`` values (two consecutive 32-bit draws)."""
    lo = ((value & _LOW32) * e0) & _LOW32
    hi = ((value >> _U64(32)) * e1) & _LOW32
    return (lo < e0) | (hi < e1)


@numba.njit(**_INLINE_HELPER)
def _skip_choice(st, k):
    """Advance ``st`` past ``choice(k, k, replace=False)`` without computing the
    permutation: ``(state, False)``, or ``(anything, True)`` when Lemire's rare branch
    fires for one of the 2 (k - 1) draws (the caller then redoes the job exactly)."""
    if k < _U64(2):
        return st, False
    n32 = _U64(2) * (k - _U64(1))
    # The t-th 32-bit draw is bounded to min(t + 2, 2k - 1 - t) values (Floyd's
    # ranges 1 .. k-1, then the shuffle's k-1 .. 1, each plus one).
    top = _U64(2) * k - _U64(1)
    t = _U64(0)
    flag = False
    if st[4]:
        flag = ((_U64(st[5]) * _U64(2)) & _LOW32) < _U64(2)
        t = _U64(1)
    value = _U64(0)
    while t + _U64(1) < n32:
        st, value = next_uint64_s(st)
        a = t + _U64(2)
        b = top - t
        e0 = a if a < b else b
        a = a + _U64(1)
        b = b - _U64(1)
        e1 = a if a < b else b
        flag |= _lemire_flags(value, e0, e1)
        t += _U64(2)
    if t < n32:
        st, value = next_uint64_s(st)
        e0 = top - t
        flag |= ((value & _LOW32) * e0) & _LOW32 < e0
        return (st[0], st[1], st[2], st[3], np.uint8(1), _U32(value >> _U64(32))), flag
    # Even: the last output's high half was drawn too, and numpy leaves it in the buffer.
    return (st[0], st[1], st[2], st[3], np.uint8(0), _U32(value >> _U64(32))), flag


@numba.njit(**_INLINE_HELPER)
def _decide(row, arm_start, arm_count, arm_active, arm_value, observation_count, posterior_mean, posterior_precision, num_exploration, streams, active, order, taken):
    """One job's decision (its arm value); ``active``, ``order``, ``taken`` are scratch of
    at least the job's arm count (``taken`` all zero, left so)."""
    row = _U64(row)
    start = _U64(arm_start[row])
    count = _U64(arm_count[row])
    need = num_exploration[row]
    # Active slots, compacted without a branch; and whether any is under-explored.
    k = _U64(0)
    explore = False
    for a in range(count):
        slot = start + _U64(a)
        on = arm_active[slot] != 0
        active[k] = slot
        k += _U64(on)
        explore |= on & (observation_count[slot] < need)
    st = load_stream(streams, row)
    if explore:
        st = _choose_exact(st, k, active, order, taken)
        chosen = _U64(0)
        for p in range(k):
            slot = _U64(active[_U64(order[p])])
            if observation_count[slot] < need:
                chosen = slot
                break
        store_stream(streams, row, st)
        return arm_value[chosen]
    saved = st
    st, rare = _skip_choice(st, k)
    if rare:
        st = _choose_exact(saved, k, active, order, taken)
    # One normal per active arm in slot order; the first maximum wins.
    slot = _U64(active[0])
    st, z = _normal_fast(st)
    best = posterior_mean[slot] + math.sqrt(1.0 / posterior_precision[slot]) * z
    chosen = slot
    for p in range(_U64(1), k):
        slot = _U64(active[p])
        st, z = _normal_fast(st)
        draw = posterior_mean[slot] + math.sqrt(1.0 / posterior_precision[slot]) * z
        better = draw > best
        best = draw if better else best
        chosen = slot if better else chosen
    store_stream(streams, row, st)
    return arm_value[chosen]


@numba.njit(**_JIT_HELPER)
def _choose_exact(st, k, active, order, taken):
    """``choice(k, k, replace=False)`` into ``order`` (the exact sampler, out of line)."""
    return sample_without_replacement_s(st, np.int64(k), np.int64(k), order, taken)


@numba.njit(**_JIT_HELPER)
def _decide_rows(rows, lo, hi, arm_start, arm_count, arm_active, arm_value, observation_count, posterior_mean, posterior_precision, num_exploration, streams, active, order, taken, out):
    """:func:`_decide` for ``rows[lo:hi]`` into ``out[lo:hi]`` (NRT-free: one compiled call per batch)."""
    for i in range(_U64(lo), _U64(hi)):
        out[i] = _decide(
            rows[i], arm_start, arm_count, arm_active, arm_value, observation_count, posterior_mean,
            posterior_precision, num_exploration, streams, active, order, taken,
        )


@numba.njit(**_JIT_HELPER)
def _thompson_row(row, arm_start, arm_count, arm_active, arm_value, observation_count, posterior_mean, posterior_precision, num_exploration, streams, active, order, taken):
    """One job's decision as a compiled call (the scalar path)."""
    return _decide(
        row, arm_start, arm_count, arm_active, arm_value, observation_count, posterior_mean,
        posterior_precision, num_exploration, streams, active, order, taken,
    )


@numba.njit(**_JIT)
def thompson_predict(
    rows,
    arm_start,
    arm_count,
    arm_active,
    arm_value,
    observation_count,
    posterior_mean,
    posterior_precision,
    num_exploration,
    streams,
    out,
):
    """One Thompson-sampling decision per row, written to ``out`` (arm values).

    Per row, exactly the reference's draws: a random order of the bandit's arms
    (``choice(arms, k, replace=False)``); the first arm in that order with fewer
    than ``num_exploration[row]`` observations is chosen. Otherwise one normal per arm
    in arm order from N(mean, 1/precision), and the first maximum wins.
    """
    max_arms = 1
    for i in range(rows.shape[0]):
        c = arm_count[rows[i]]
        if c > max_arms:
            max_arms = c
    active = np.empty(max_arms, np.uint64)
    order = np.empty(max_arms, np.int64)
    taken = np.zeros(max_arms, np.uint8)
    _decide_rows(
        rows, 0, rows.shape[0], arm_start, arm_count, arm_active, arm_value, observation_count, posterior_mean,
        posterior_precision, num_exploration, streams, active, order, taken, out,
    )


@numba.njit(**_JIT)
def find_arm_slots(rows, values, arm_start, arm_count, arm_value, out):
    """Slot of ``values[i]`` among row ``rows[i]``'s arms; returns the first miss or -1."""
    for i in range(rows.shape[0]):
        row = rows[i]
        start = arm_start[row]
        found = -1
        for a in range(arm_count[row]):
            if arm_value[start + a] == values[i]:
                found = start + a
                break
        if found < 0:
            return i
        out[i] = found
    return -1


@numba.njit(**_INLINE_HELPER)
def _link_chunk(slot, n, chunk_next, slot_chunks, pool_used):
    # A new chunk at the end of the pool becomes the slot's last one (its first
    # when the history is empty); capacity is ensured by the caller.
    chunk = pool_used[0]
    pool_used[0] += 1
    chunk_next[chunk] = -1
    if n == 0:
        slot_chunks[slot, 0] = chunk
    else:
        chunk_next[slot_chunks[slot, 1]] = chunk
    slot_chunks[slot, 1] = chunk


@numba.njit(**_JIT_HELPER)
def append_history(slot, reward, window, offset, history_count, history_values, chunk_values, chunk_next, slot_chunks, pool_used):
    """Append one reward to ``slot``'s history: its ring of ``window`` places at ``offset``
    (``slot_window[slot]``, ``slot_offset[slot]``), or its chunk list when ``window`` is 0."""
    n = history_count[slot]
    if window > 0:
        history_values[offset + n % window] = reward
    else:
        pos = n % CHUNK
        if pos == 0:
            _link_chunk(slot, n, chunk_next, slot_chunks, pool_used)
        chunk_values[slot_chunks[slot, 1], pos] = reward
    history_count[slot] = n + 1


@numba.njit(**_JIT_HELPER)
def gather_history(slot, window, offset, history_count, history_values, chunk_values, chunk_next, slot_chunks, out):
    """Copy ``slot``'s windowed rewards, oldest first, into ``out``; return how many
    (``window``, ``offset``: the slot's ``slot_window`` and ``slot_offset``)."""
    n = history_count[slot]
    if window > 0:
        fill = n if n < window else window
        # One modulo, then wrap by comparison: a division per reward would
        # cost more than the statistics themselves.
        pos = (n - fill) % window
        base = offset
        for k in range(fill):
            out[k] = history_values[base + pos]
            pos += 1
            if pos == window:
                pos = 0
        return fill
    if n == 0:
        return 0
    chunk = slot_chunks[slot, 0]
    k = 0
    while k < n:
        take = n - k if n - k < CHUNK else CHUNK
        for j in range(take):
            out[k + j] = chunk_values[chunk, j]
        k += take
        chunk = chunk_next[chunk]
    return n


@numba.njit(**_JIT_HELPER)
def refit_slot(slot, rewards, n, scratch, frames, partial, prior_mean, prior_precision, reward_precision, posterior_mean, posterior_precision, observation_count):
    """Learn the slot's reward precision from its window and refit it from the prior.

    The reference's ``arm_reward_prec[bs] = 1/np.var(window)`` (infinite for
    zero variance) followed by ``fit_arm(bs, window, reset=True)``. ``scratch``
    holds ``n`` doubles; ``frames`` and ``partial`` are summation stack space
    (:func:`~banditfleet.kernels.stats.allocate_sum_stack`).
    """
    precision = precision_from_variance(variance_with(rewards, n, scratch, frames, partial))
    reward_precision[slot] = precision
    mean, prec = fit_reset_with(rewards, n, precision, prior_mean, prior_precision, frames, partial)
    posterior_mean[slot] = mean
    posterior_precision[slot] = prec
    observation_count[slot] = n


@numba.njit(**_INLINE)
def window_needs_copy(n, window):
    """Whether a slot's window of ``n`` appended rewards must be copied to be read in
    order: a ring whose oldest kept reward is not at its start (wrapped), or an
    unbounded history longer than one chunk. Otherwise it is read in place."""
    if window > 0:
        fill = n if n < window else window
        return (n - fill) % window + fill > window
    return n > CHUNK


@numba.njit(**_INLINE_HELPER)
def _refit_in_place(
    slot, window, offset, ring_pos, history_count, history_values, chunk_flat, chunk_next, slot_chunks, rewards,
    scratch, frames, partial, prior_mean, prior_precision, reward_precision, posterior_mean, posterior_precision,
    observation_count,
):
    # The body of refit_history, inlined into the observe range helpers.
    # ring_pos: where a ring's oldest kept reward is, when the caller knows
    # (it saves an integer division); -1 computes it.
    n = history_count[slot]
    src = rewards
    start = np.int64(0)
    if window > 0:
        fill = n if n < window else window
        pos = ring_pos if ring_pos >= 0 else (n - fill) % window
        if pos + fill <= window:
            src = history_values
            start = offset + pos
        else:
            first = window - pos
            for k in range(first):
                rewards[k] = history_values[offset + pos + k]
            for k in range(fill - first):
                rewards[first + k] = history_values[offset + k]
        n = fill
    elif n <= CHUNK:
        src = chunk_flat
        start = slot_chunks[slot, 0] * CHUNK
    else:
        chunk = slot_chunks[slot, 0]
        k = 0
        while k < n:
            take = n - k if n - k < CHUNK else CHUNK
            base = chunk * CHUNK
            for j in range(take):
                rewards[k + j] = chunk_flat[base + j]
            k += take
            chunk = chunk_next[chunk]
    precision, mean, prec = window_fit_with(src, start, n, scratch, frames, partial, prior_mean, prior_precision)
    reward_precision[slot] = precision
    posterior_mean[slot] = mean
    posterior_precision[slot] = prec
    observation_count[slot] = n
    return n


@numba.njit(**_JIT_HELPER)
def refit_history(
    slot, window, offset, history_count, history_values, chunk_flat, chunk_next, slot_chunks, rewards, scratch,
    frames, partial, prior_mean, prior_precision, reward_precision, posterior_mean, posterior_precision,
    observation_count,
):
    """:func:`gather_history` then :func:`refit_slot`, reading the window in place
    where it is contiguous and in order (a ring that has not wrapped, an unbounded
    history within its first chunk), copying it into ``rewards`` only otherwise.

    ``chunk_flat`` is ``chunk_values`` viewed as one row (chunk ``c``'s rewards at
    ``c * CHUNK``). ``rewards`` holds the window when :func:`window_needs_copy`;
    ``scratch`` holds it when it is over 128 rewards. Same bits as the copy and
    five passes it replaces (:func:`~.stats.window_fit_with`); returns ``n``.
    """
    return _refit_in_place(
        slot, window, offset, -1, history_count, history_values, chunk_flat, chunk_next, slot_chunks, rewards,
        scratch, frames, partial, prior_mean, prior_precision, reward_precision, posterior_mean, posterior_precision,
        observation_count,
    )


# ---------------------------------------------------------------------------
# The observe kernels (docs/kernels.md, "The observe kernels"). One NRT-free
# helper per kind walks a range of the batch, with the per-observation body
# inlined (no call per observation); the serial kernels call it on the whole
# batch, the parallel ones on each prange chunk, as predict's _decide_rows.


@numba.njit(**_JIT_HELPER)
def _observe_incremental_range(slots, costs, lo, hi, reward_precision, posterior_mean, posterior_precision, observation_count):
    """Known reward precision over ``slots[lo:hi]``: fold each reward (-cost) into its arm's posterior."""
    for i in range(lo, hi):
        slot = slots[i]
        mean, prec = fit_increment(posterior_mean[slot], posterior_precision[slot], -costs[i], reward_precision[slot])
        posterior_mean[slot] = mean
        posterior_precision[slot] = prec
        observation_count[slot] += 1


@numba.njit(**_JIT_HELPER)
def _observe_refit_range(
    rows, slots, costs, refit, lo, hi, linked, slot_window, slot_offset, prior_mean, prior_precision, history_count,
    history_values, chunk_flat, chunk_next, slot_chunks, pool_used, reward_precision, posterior_mean,
    posterior_precision, observation_count, rewards, scratch, frames, partial,
):
    """Learned reward precision over entries ``lo:hi`` of the batch: append -cost to the
    arm's history (its ring, or its last chunk), then refit the arm when ``refit[i]``.

    ``linked``: the chunks the range's unbounded appends need were already
    linked (the parallel kernel does that first, serially); otherwise a reward
    that starts a chunk links a new one here. ``rewards`` / ``scratch`` hold
    the longest window of the range (see :func:`refit_history`).
    """
    for i in range(lo, hi):
        slot = slots[i]
        window = slot_window[slot]
        offset = slot_offset[slot]
        n = history_count[slot]
        ring_pos = np.int64(-1)
        if window > 0:
            last = n % window
            history_values[offset + last] = -costs[i]
            # After this append the oldest kept reward is at the ring's start
            # until the ring is full, then just after the newest one.
            ring_pos = 0 if n < window else (last + 1 if last + 1 < window else 0)
        else:
            pos = n % CHUNK
            if pos == 0 and not linked:
                _link_chunk(slot, n, chunk_next, slot_chunks, pool_used)
            chunk_flat[slot_chunks[slot, 1] * CHUNK + pos] = -costs[i]
        history_count[slot] = n + 1
        if refit[i]:
            row = rows[i]
            _refit_in_place(
                slot, window, offset, ring_pos, history_count, history_values, chunk_flat, chunk_next, slot_chunks,
                rewards, scratch, frames, partial, prior_mean[row], prior_precision[row], reward_precision,
                posterior_mean, posterior_precision, observation_count,
            )


@numba.njit(**_JIT)
def _longest_window(slots, history_count, slot_window):
    """The longest window any entry of the batch can refit on (repeats included)."""
    max_n = 0
    for i in range(slots.shape[0]):
        slot = slots[i]
        c = history_count[slot] + 1
        w = slot_window[slot]
        if w > 0 and c > w:
            c = w
        if c > max_n:
            max_n = c
    # Repeated slots in the batch can grow past the pre-batch count.
    return max_n + slots.shape[0]


@numba.njit(**_JIT)
def observe_incremental(slots, costs, reward_precision, posterior_mean, posterior_precision, observation_count):
    """Known reward precision: fold each reward (-cost) into its arm's posterior, in order."""
    _observe_incremental_range(slots, costs, 0, slots.shape[0], reward_precision, posterior_mean, posterior_precision, observation_count)


@numba.njit(**_JIT)
def observe_refit(
    rows,
    slots,
    costs,
    refit,
    slot_window,
    slot_offset,
    prior_mean,
    prior_precision,
    history_count,
    history_values,
    chunk_values,
    chunk_next,
    slot_chunks,
    pool_used,
    reward_precision,
    posterior_mean,
    posterior_precision,
    observation_count,
):
    """Learned reward precision: append -cost to the arm's history, then refit it.

    ``slots[i]`` is an arm of job ``rows[i]``, whose prior is
    ``prior_mean[rows[i]]``, ``prior_precision[rows[i]]``. ``refit[i] == 0`` only records the reward (pruning stage, or an arm that is
    not in the bandit). Observations apply in array order, so repeated slots
    see each other's rewards exactly as sequential calls would.
    """
    max_n = _longest_window(slots, history_count, slot_window)
    rewards = np.empty(max_n, np.float64)
    scratch = np.empty(max_n, np.float64)
    frames = np.empty((3, SUM_STACK_DEPTH), np.int64)
    partial = np.empty(SUM_STACK_DEPTH, np.float64)
    _observe_refit_range(
        rows, slots, costs, refit, 0, slots.shape[0], False, slot_window, slot_offset, prior_mean, prior_precision,
        history_count, history_values, chunk_values.reshape(chunk_values.size), chunk_next, slot_chunks, pool_used,
        reward_precision, posterior_mean, posterior_precision, observation_count, rewards, scratch, frames, partial,
    )


@numba.njit(**_JIT_PARALLEL)
def thompson_predict_parallel(
    rows,
    arm_start,
    arm_count,
    arm_active,
    arm_value,
    observation_count,
    posterior_mean,
    posterior_precision,
    num_exploration,
    streams,
    out,
    max_arms,
    n_chunks,
):
    """:func:`thompson_predict` over ``n_chunks`` contiguous chunks of the batch in parallel.

    Only valid when no row repeats in ``rows`` (each job's stream is then
    touched by one thread), which the caller checks. Each chunk owns its
    scratch, so results equal the sequential kernel's.
    """
    n = rows.shape[0]
    for c in numba.prange(n_chunks):
        active = np.empty(max(max_arms, 1), np.uint64)
        order = np.empty(max(max_arms, 1), np.int64)
        taken = np.zeros(max(max_arms, 1), np.uint8)
        _decide_rows(
            rows, c * n // n_chunks, (c + 1) * n // n_chunks, arm_start, arm_count, arm_active, arm_value,
            observation_count, posterior_mean, posterior_precision, num_exploration, streams, active, order, taken, out,
        )


@numba.njit(**_JIT_PARALLEL)
def observe_incremental_parallel(slots, costs, reward_precision, posterior_mean, posterior_precision, observation_count, n_chunks):
    """:func:`observe_incremental` over ``n_chunks`` contiguous chunks of the batch in
    parallel. Only valid when no slot repeats (the caller checks that no job repeats)."""
    n = slots.shape[0]
    for c in numba.prange(n_chunks):
        _observe_incremental_range(
            slots, costs, c * n // n_chunks, (c + 1) * n // n_chunks, reward_precision, posterior_mean,
            posterior_precision, observation_count,
        )


@numba.njit(**_JIT)
def _link_batch_chunks(slots, slot_window, history_count, chunk_next, slot_chunks, pool_used):
    # The chunks a batch of distinct slots appends into, linked serially in
    # array order (what the sequential kernel would hand out).
    for i in range(slots.shape[0]):
        slot = slots[i]
        n = history_count[slot]
        if slot_window[slot] == 0 and n % CHUNK == 0:
            _link_chunk(slot, n, chunk_next, slot_chunks, pool_used)


@numba.njit(**_JIT_PARALLEL)
def observe_refit_parallel(
    rows,
    slots,
    costs,
    refit,
    slot_window,
    slot_offset,
    prior_mean,
    prior_precision,
    history_count,
    history_values,
    chunk_values,
    chunk_next,
    slot_chunks,
    pool_used,
    reward_precision,
    posterior_mean,
    posterior_precision,
    observation_count,
    n_chunks,
):
    """:func:`observe_refit` over ``n_chunks`` contiguous chunks of the batch in parallel.

    Only valid when no slot repeats in ``slots`` (the caller checks that no job
    repeats). New chunks of unbounded history are linked first, serially and in
    array order, so the pool holds exactly what the sequential kernel leaves;
    every other write touches only the entry's own slot, so the results do not
    depend on the number of threads.
    """
    n = slots.shape[0]
    max_n = _longest_window(slots, history_count, slot_window)
    _link_batch_chunks(slots, slot_window, history_count, chunk_next, slot_chunks, pool_used)
    chunk_flat = chunk_values.reshape(chunk_values.size)
    for c in numba.prange(n_chunks):
        rewards = np.empty(max_n, np.float64)
        scratch = np.empty(max_n, np.float64)
        frames = np.empty((3, SUM_STACK_DEPTH), np.int64)
        partial = np.empty(SUM_STACK_DEPTH, np.float64)
        _observe_refit_range(
            rows, slots, costs, refit, c * n // n_chunks, (c + 1) * n // n_chunks, True, slot_window, slot_offset,
            prior_mean, prior_precision, history_count, history_values, chunk_flat, chunk_next, slot_chunks, pool_used,
            reward_precision, posterior_mean, posterior_precision, observation_count, rewards, scratch, frames, partial,
        )


@numba.njit(**_JIT)
def rows_are_unique(rows, marks, generation):
    """True when no row repeats; ``marks`` is per-job scratch stamped with ``generation``."""
    for i in range(rows.shape[0]):
        if marks[rows[i]] == generation:
            return False
        marks[rows[i]] = generation
    return True


@numba.njit(**_JIT)
def check_history_chunks(slot_chunks, chunk_next, history_count, slot_window):
    """First arm slot whose unbounded-history chunk chain is inconsistent, or -1.

    Only slots with ``slot_window == 0`` keep chunks. A chain must have
    ceil(count / CHUNK) links inside the pool, share no chunk with another
    arm, and end at the slot's recorded last chunk.
    """
    n_pool = chunk_next.shape[0]
    owner = np.full(n_pool, -1, np.int64)
    for slot in range(history_count.shape[0]):
        need = (history_count[slot] + CHUNK - 1) // CHUNK
        if need == 0 or slot_window[slot] != 0:
            continue
        chunk = slot_chunks[slot, 0]
        last = -1
        for _ in range(need):
            if chunk < 0 or chunk >= n_pool or owner[chunk] != -1:
                return slot
            owner[chunk] = slot
            last = chunk
            chunk = chunk_next[chunk]
        if last != slot_chunks[slot, 1]:
            return slot
    return -1


@numba.njit(**_JIT)
def observe_one(
    row,
    value,
    cost,
    refit,
    slot_window,
    slot_offset,
    prior_mean,
    prior_precision,
    arm_start,
    arm_count,
    arm_value,
    history_count,
    history_values,
    chunk_values,
    chunk_next,
    slot_chunks,
    pool_used,
    reward_precision,
    posterior_mean,
    posterior_precision,
    observation_count,
):
    """One observation in one call (the scalar API's fast path); returns its slot, or -1
    without changing anything when ``value`` is not one of the row's arms.

    ``refit`` 0: known reward precision (incremental fit, no history kept);
    1: append to the slot's history (its own window) and refit from the job's
    prior (``prior_mean[row]``, ``prior_precision[row]``) with the learned precision.
    """
    start = arm_start[row]
    slot = -1
    for a in range(arm_count[row]):
        if arm_value[start + a] == value:
            slot = start + a
            break
    if slot < 0:
        return -1
    if refit == 0:
        mean, prec = fit_increment(posterior_mean[slot], posterior_precision[slot], -cost, reward_precision[slot])
        posterior_mean[slot] = mean
        posterior_precision[slot] = prec
        observation_count[slot] += 1
        return slot
    window = slot_window[slot]
    offset = slot_offset[slot]
    append_history(slot, -cost, window, offset, history_count, history_values, chunk_values, chunk_next, slot_chunks, pool_used)
    n = history_count[slot] if window == 0 or history_count[slot] < window else window
    rewards = np.empty(n, np.float64)
    scratch = np.empty(n, np.float64)
    frames = np.empty((3, SUM_STACK_DEPTH), np.int64)
    partial = np.empty(SUM_STACK_DEPTH, np.float64)
    refit_history(
        slot, window, offset, history_count, history_values, chunk_values.reshape(chunk_values.size), chunk_next,
        slot_chunks, rewards, scratch, frames, partial, prior_mean[row], prior_precision[row], reward_precision,
        posterior_mean, posterior_precision, observation_count,
    )
    return slot

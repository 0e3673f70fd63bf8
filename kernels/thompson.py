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

from .distributions import sample_without_replacement_s, standard_normal_s
from .streams import load_stream, store_stream
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

from ._config import INLINE as _INLINE, JIT as _JIT, JIT_HELPER as _JIT_HELPER, JIT_PARALLEL as _JIT_PARALLEL



class ThompsonCode(IntEnum):
    """Negative results of the scalar observe kernels (non-negative results are arm slots)."""

    UNKNOWN_BATCH_SIZE = -1  # not one of the job's batch sizes; nothing changed
    NEEDS_POOL = -2  # unbounded history has no free chunk: grow the pool, call again; nothing changed


# Rewards per chunk of unbounded history.
CHUNK = 16


@numba.njit(**_JIT_HELPER)
def _thompson_row(row, start, count, arm_active, arm_value, observation_count, posterior_mean, posterior_precision, num_exploration, streams, active, order, taken):
    k = 0
    for a in range(count):
        if arm_active[start + a]:
            active[k] = start + a
            k += 1
    st = load_stream(streams, row)
    st = sample_without_replacement_s(st, k, k, order, taken)
    chosen = -1
    for p in range(k):
        slot = active[order[p]]
        if observation_count[slot] < num_exploration:
            chosen = slot
            break
    if chosen < 0:
        best = 0.0
        for p in range(k):
            slot = active[p]
            scale = math.sqrt(1.0 / posterior_precision[slot])
            st, z = standard_normal_s(st)
            draw = posterior_mean[slot] + scale * z
            if p == 0 or draw > best:
                best = draw
                chosen = slot
    store_stream(streams, row, st)
    return arm_value[chosen]


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
    max_arms = 0
    for i in range(rows.shape[0]):
        c = arm_count[rows[i]]
        if c > max_arms:
            max_arms = c
    active = np.empty(max_arms, np.int64)
    order = np.empty(max_arms, np.int64)
    taken = np.zeros(max_arms, np.uint8)
    for i in range(rows.shape[0]):
        row = rows[i]
        out[i] = _thompson_row(
            row, arm_start[row], arm_count[row], arm_active, arm_value, observation_count,
            posterior_mean, posterior_precision, num_exploration[row], streams, active, order, taken,
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
            # Capacity for a new chunk per appended reward is ensured by the caller.
            chunk = pool_used[0]
            pool_used[0] += 1
            chunk_next[chunk] = -1
            if n == 0:
                slot_chunks[slot, 0] = chunk
            else:
                chunk_next[slot_chunks[slot, 1]] = chunk
            slot_chunks[slot, 1] = chunk
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
    n = history_count[slot]
    src = rewards
    start = np.int64(0)
    if window > 0:
        fill = n if n < window else window
        pos = (n - fill) % window
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


@numba.njit(**_JIT)
def observe_incremental(slots, costs, reward_precision, posterior_mean, posterior_precision, observation_count):
    """Known reward precision: fold each reward (-cost) into its arm's posterior, in order."""
    for i in range(slots.shape[0]):
        slot = slots[i]
        mean, prec = fit_increment(posterior_mean[slot], posterior_precision[slot], -costs[i], reward_precision[slot])
        posterior_mean[slot] = mean
        posterior_precision[slot] = prec
        observation_count[slot] += 1


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
    max_n += slots.shape[0]
    rewards = np.empty(max_n, np.float64)
    scratch = np.empty(max_n, np.float64)
    frames = np.empty((3, SUM_STACK_DEPTH), np.int64)
    partial = np.empty(SUM_STACK_DEPTH, np.float64)
    chunk_flat = chunk_values.reshape(chunk_values.size)
    for i in range(slots.shape[0]):
        slot = slots[i]
        window = slot_window[slot]
        offset = slot_offset[slot]
        append_history(slot, -costs[i], window, offset, history_count, history_values, chunk_values, chunk_next, slot_chunks, pool_used)
        if refit[i]:
            row = rows[i]
            refit_history(
                slot, window, offset, history_count, history_values, chunk_flat, chunk_next, slot_chunks, rewards,
                scratch, frames, partial, prior_mean[row], prior_precision[row], reward_precision, posterior_mean,
                posterior_precision, observation_count,
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
        active = np.empty(max_arms, np.int64)
        order = np.empty(max_arms, np.int64)
        taken = np.zeros(max_arms, np.uint8)
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        for i in range(lo, hi):
            row = rows[i]
            out[i] = _thompson_row(
                row, arm_start[row], arm_count[row], arm_active, arm_value, observation_count,
                posterior_mean, posterior_precision, num_exploration[row], streams, active, order, taken,
            )


@numba.njit(**_JIT_PARALLEL)
def observe_incremental_parallel(slots, costs, reward_precision, posterior_mean, posterior_precision, observation_count, n_chunks):
    """:func:`observe_incremental` over ``n_chunks`` contiguous chunks of the batch in
    parallel. Only valid when no slot repeats (the caller checks that no job repeats)."""
    n = slots.shape[0]
    for c in numba.prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        for i in range(lo, hi):
            slot = slots[i]
            mean, prec = fit_increment(posterior_mean[slot], posterior_precision[slot], -costs[i], reward_precision[slot])
            posterior_mean[slot] = mean
            posterior_precision[slot] = prec
            observation_count[slot] += 1


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
    max_n = 0
    for i in range(n):
        slot = slots[i]
        c = history_count[slot] + 1
        w = slot_window[slot]
        if w > 0 and c > w:
            c = w
        if c > max_n:
            max_n = c
        if w == 0 and history_count[slot] % CHUNK == 0:
            chunk = pool_used[0]
            pool_used[0] += 1
            chunk_next[chunk] = -1
            if history_count[slot] == 0:
                slot_chunks[slot, 0] = chunk
            else:
                chunk_next[slot_chunks[slot, 1]] = chunk
            slot_chunks[slot, 1] = chunk
    chunk_flat = chunk_values.reshape(chunk_values.size)
    for c in numba.prange(n_chunks):
        rewards = np.empty(max_n, np.float64)
        scratch = np.empty(max_n, np.float64)
        frames = np.empty((3, SUM_STACK_DEPTH), np.int64)
        partial = np.empty(SUM_STACK_DEPTH, np.float64)
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        for i in range(lo, hi):
            slot = slots[i]
            window = slot_window[slot]
            offset = slot_offset[slot]
            count = history_count[slot]
            if window > 0:
                history_values[offset + count % window] = -costs[i]
            else:
                chunk_flat[slot_chunks[slot, 1] * CHUNK + count % CHUNK] = -costs[i]
            history_count[slot] = count + 1
            if refit[i]:
                row = rows[i]
                refit_history(
                    slot, window, offset, history_count, history_values, chunk_flat, chunk_next, slot_chunks, rewards,
                    scratch, frames, partial, prior_mean[row], prior_precision[row], reward_precision, posterior_mean,
                    posterior_precision, observation_count,
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

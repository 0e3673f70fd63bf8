"""Top-level kernels over a fleet handle (:mod:`.handle`).

Each reads the handle's fields once and calls the array kernels and NRT-free
helpers of :mod:`.thompson` and :mod:`.pruning`, whose loops compile as they
do when called with arrays. The ``*_one`` kernels are the scalar API's entry
points: a job's row and Python scalars in, Python scalars out, so a call
unboxes one pointer and a few scalars.
"""

from __future__ import annotations

import numba
import numpy as np

from ._config import JIT as _JIT
from .pruning import (
    ERR_NEEDS_POOL,
    ERR_NONE,
    ERR_UNKNOWN_BATCH_SIZE,
    STAGE,
    STAGE_PRUNING,
    observe_batch,
    observe_control,
    predict_batch,
    validate_observe,
)
from .power import find_entry, observe_entries
from .stats import fit_increment
from .thompson import (
    ThompsonCode,
    _thompson_row,
    append_history,
    refit_history,
    find_arm_slots,
    observe_incremental,
    observe_incremental_parallel,
    observe_refit,
    observe_refit_parallel,
    thompson_predict,
)

__all__ = [
    "NEEDS_POOL",
    "predict_rows",
    "predict_one",
    "find_slots",
    "observe_rows_incremental",
    "observe_rows_refit",
    "observe_rows_parallel",
    "pruning_observe_rows_parallel",
    "observe_one_h",
    "observe_one_c",
    "find_slot_one",
    "pruning_predict_rows",
    "pruning_predict_one",
    "pruning_observe_rows",
    "pruning_observe_one",
    "power_best_one",
    "power_observe_one",
]

# observe_one_h: the unbounded-history pool is full (the caller grows it and calls again).
NEEDS_POOL = int(ThompsonCode.NEEDS_POOL)
UNKNOWN_BATCH_SIZE = int(ThompsonCode.UNKNOWN_BATCH_SIZE)


@numba.njit(**_JIT)
def predict_rows(h, rows, out):
    """:func:`~.thompson.thompson_predict` over the handle's fleet (each job's own
    ``num_exploration``)."""
    thompson_predict(
        rows, h.arm_start, h.arm_count, h.arm_active, h.arm_value, h.observation_count,
        h.posterior_mean, h.posterior_precision, h.num_exploration, h.streams, out,
    )


@numba.njit(**_JIT)
def predict_one(h, row):
    """One Thompson-sampling decision for ``row`` (its own ``num_exploration``); returns the arm value."""
    count = max(h.arm_count[row], 1)
    active = np.empty(count, np.uint64)
    order = np.empty(count, np.int64)
    taken = np.zeros(count, np.uint8)
    return _thompson_row(
        row, h.arm_start, h.arm_count, h.arm_active, h.arm_value, h.observation_count,
        h.posterior_mean, h.posterior_precision, h.num_exploration, h.streams, active, order, taken,
    )


@numba.njit(**_JIT)
def find_slots(h, rows, values, out):
    """:func:`~.thompson.find_arm_slots` over the handle's fleet."""
    return find_arm_slots(rows, values, h.arm_start, h.arm_count, h.arm_value, out)


@numba.njit(**_JIT)
def find_slot_one(h, row, value):
    """Arm slot of ``value`` among ``row``'s arms, or -1."""
    start = h.arm_start[row]
    for a in range(h.arm_count[row]):
        if h.arm_value[start + a] == value:
            return start + a
    return -1


@numba.njit(**_JIT)
def observe_rows_incremental(h, slots, costs):
    """:func:`~.thompson.observe_incremental` over the handle's fleet."""
    observe_incremental(slots, costs, h.reward_precision, h.posterior_mean, h.posterior_precision, h.observation_count)


@numba.njit(**_JIT)
def observe_rows_refit(h, rows, slots, costs, refit):
    """:func:`~.thompson.observe_refit` over the handle's fleet (each arm's own window,
    each job's own prior)."""
    observe_refit(
        rows, slots, costs, refit, h.slot_window, h.slot_offset, h.prior_mean, h.prior_precision,
        h.history_count, h.history_values,
        h.chunk_values, h.chunk_next, h.slot_chunks, h.pool_used, h.reward_precision, h.posterior_mean,
        h.posterior_precision, h.observation_count,
    )


@numba.njit(**_JIT)
def observe_rows_parallel(h, rows, slots, costs, refit, learned, n_chunks):
    """:func:`observe_rows_refit` (``learned``) or :func:`observe_rows_incremental` split
    over ``n_chunks`` chunks on numba's threads. Only for batches whose jobs are all
    distinct (the caller checks); the results equal the sequential kernels'."""
    if learned:
        observe_refit_parallel(
            rows, slots, costs, refit, h.slot_window, h.slot_offset, h.prior_mean, h.prior_precision,
            h.history_count, h.history_values, h.chunk_values, h.chunk_next, h.slot_chunks, h.pool_used,
            h.reward_precision, h.posterior_mean, h.posterior_precision, h.observation_count, n_chunks,
        )
    else:
        observe_incremental_parallel(
            slots, costs, h.reward_precision, h.posterior_mean, h.posterior_precision, h.observation_count, n_chunks,
        )


@numba.njit(**_JIT)
def observe_one_h(h, row, value, cost, refit):
    """:func:`~.thompson.observe_one` over the handle's fleet (the arm's own window, the
    job's own prior): the slot, or -1 (nothing changed) when ``value`` is not an arm of
    ``row``, or :data:`NEEDS_POOL` (nothing changed) when the arm keeps unbounded history
    and no free chunk is left: grow the pool and call again."""
    # Each field read of a structref is a new reference (incref, decref): read each once.
    arm_value = h.arm_value
    start = h.arm_start[row]
    slot = -1
    for a in range(h.arm_count[row]):
        if arm_value[start + a] == value:
            slot = start + a
            break
    if slot < 0:
        return UNKNOWN_BATCH_SIZE
    posterior_mean = h.posterior_mean
    posterior_precision = h.posterior_precision
    reward_precision = h.reward_precision
    observation_count = h.observation_count
    if refit == 0:
        mean, prec = fit_increment(posterior_mean[slot], posterior_precision[slot], -cost, reward_precision[slot])
        posterior_mean[slot] = mean
        posterior_precision[slot] = prec
        observation_count[slot] += 1
        return slot
    history_count = h.history_count
    history_values = h.history_values
    chunk_values = h.chunk_values
    chunk_next = h.chunk_next
    slot_chunks = h.slot_chunks
    pool_used = h.pool_used
    window = h.slot_window[slot]
    offset = h.slot_offset[slot]
    if window == 0 and pool_used[0] >= chunk_next.shape[0]:
        return NEEDS_POOL
    append_history(slot, -cost, window, offset, history_count, history_values, chunk_values, chunk_next, slot_chunks, pool_used)
    count = history_count[slot]
    n = count if window == 0 or count < window else window
    partial = h.sum_partial
    if n <= partial.shape[0]:
        # No allocation: a window of at most 128 rewards is summed without the
        # tree walk's stack, so ``sum_partial`` can hold its copy (if it needs one).
        refit_history(
            slot, window, offset, history_count, history_values, chunk_values.reshape(chunk_values.size), chunk_next,
            slot_chunks, partial, partial, h.sum_frames, partial, h.prior_mean[row], h.prior_precision[row],
            reward_precision, posterior_mean, posterior_precision, observation_count,
        )
        return slot
    # One allocation: the window's rewards, then the variance's scratch.
    work = np.empty(2 * n, np.float64)
    refit_history(
        slot, window, offset, history_count, history_values, chunk_values.reshape(chunk_values.size), chunk_next,
        slot_chunks, work[:n], work[n:], h.sum_frames, partial, h.prior_mean[row], h.prior_precision[row],
        reward_precision, posterior_mean, posterior_precision, observation_count,
    )
    return slot


@numba.njit(**_JIT)
def observe_one_c(h, row, value, cost):
    """:func:`observe_one_h` with the optimizer's refit setting from the handle
    (``config_i[0]``): one argument fewer to unbox."""
    return observe_one_h(h, row, value, cost, h.config_i[0])


@numba.njit(**_JIT)
def pruning_predict_rows(h, rows, concurrency, generation, out):
    """:func:`~.pruning.predict_batch` over the handle's fleet (each job's own rounds,
    prior, explorations; each arm's own window): ``(index, code)``."""
    return predict_batch(
        rows, h.pruning, h.num_rounds, concurrency, generation, h.arm_start, h.arm_count, h.arm_value,
        h.arm_active, h.slot_window, h.slot_offset, h.prior_mean, h.prior_precision, h.history_count,
        h.history_values, h.chunk_values, h.chunk_next, h.slot_chunks, h.reward_precision, h.posterior_mean,
        h.posterior_precision, h.observation_count, h.num_exploration, h.streams, out,
    )


@numba.njit(**_JIT)
def pruning_predict_one(h, row, concurrency, generation):
    """One pruning-optimizer decision for ``row``: ``(arm value, code)``; nothing
    changes unless the code is ``PruningCode.NONE``."""
    if h.pruning.record[row, STAGE] != STAGE_PRUNING:
        # Thompson-sampling stage: nothing to validate or advance, just sample.
        return predict_one(h, row), ERR_NONE
    h.one_row[0] = row
    index, code = pruning_predict_rows(h, h.one_row, concurrency, generation, h.one_out)
    return h.one_out[0], code


@numba.njit(**_JIT)
def pruning_observe_rows(h, rows, slots, values, costs, converged, has_converged, concurrency, generation):
    """:func:`~.pruning.observe_batch` over the handle's fleet (each arm's own window,
    each job's own prior): ``(index, code)``."""
    return observe_batch(
        rows, slots, values, h.arm_value, costs, converged, has_converged, h.pruning, concurrency,
        generation, h.slot_window, h.slot_offset, h.prior_mean, h.prior_precision, h.history_count, h.history_values, h.chunk_values,
        h.chunk_next, h.slot_chunks, h.pool_used, h.reward_precision, h.posterior_mean, h.posterior_precision,
        h.observation_count,
    )


@numba.njit(**_JIT)
def pruning_observe_rows_parallel(h, rows, slots, values, costs, converged, has_converged, concurrency, generation, n_chunks):
    """:func:`pruning_observe_rows` for a batch of distinct jobs (the caller checks):
    validation and the pruning control pass run sequentially, then the history
    appends and refits on numba's threads. Same ``(index, code)`` and state."""
    st = h.pruning
    index, code = validate_observe(rows, values, has_converged, concurrency, st, generation)
    if code != ERR_NONE:
        return index, code
    refit = np.empty(rows.shape[0], np.uint8)
    observe_control(rows, slots, h.arm_value, costs, converged, st, refit)
    observe_refit_parallel(
        rows, slots, costs, refit, h.slot_window, h.slot_offset, h.prior_mean, h.prior_precision,
        h.history_count, h.history_values, h.chunk_values, h.chunk_next, h.slot_chunks, h.pool_used,
        h.reward_precision, h.posterior_mean, h.posterior_precision, h.observation_count, n_chunks,
    )
    return np.int64(-1), ERR_NONE


@numba.njit(**_JIT)
def pruning_observe_one(h, row, value, cost, flag, has_converged, concurrency, generation):
    """One observation of a pruning optimizer: its ``PruningCode``. Nothing changes unless
    it is ``NONE``; ``UNKNOWN_BATCH_SIZE`` and ``NEEDS_POOL`` (grow the history pool,
    then call again) are checked first."""
    slot = find_slot_one(h, row, value)
    if slot < 0:
        return ERR_UNKNOWN_BATCH_SIZE
    if h.slot_window[slot] == 0 and h.pool_used[0] >= h.chunk_next.shape[0]:
        return ERR_NEEDS_POOL
    if h.pruning.record[row, STAGE] != STAGE_PRUNING:
        # Thompson-sampling stage: record the reward and refit its arm, nothing else.
        observe_one_h(h, row, value, cost, 1)
        return ERR_NONE
    h.one_row[0] = row
    h.one_slot[0] = slot
    h.one_value[0] = value
    h.one_cost[0] = cost
    h.one_flag[0] = flag
    index, code = pruning_observe_rows(
        h, h.one_row, h.one_slot, h.one_value, h.one_cost, h.one_flag, has_converged, concurrency, generation,
    )
    return code


@numba.njit(**_JIT)
def power_best_one(h, row, batch_size, missing):
    """Best power limit of (row, batch size) in a power handle's table, or ``missing``."""
    e = find_entry(row, batch_size, h.table, h.entry_row, h.entry_batch_size)
    if e < 0:
        return missing
    return h.best_power_limit[e]


@numba.njit(**_JIT)
def power_observe_one(h, row, batch_size, power_limit, cost):
    """One observation into a power handle's table (room for one new entry reserved)."""
    one = h.one_int
    one[0] = row
    one[1] = batch_size
    one[2] = power_limit
    h.one_cost[0] = cost
    observe_entries(
        one[0:1], one[1:2], one[2:3], h.one_cost, h.table, h.entry_row, h.entry_batch_size, h.best_power_limit,
        h.best_cost, h.observe_count, h.n_entries,
    )

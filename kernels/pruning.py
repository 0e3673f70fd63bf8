"""The pruning-exploration state machine, one row per job, as plain arrays.

Pruning runs ``num_rounds`` rounds over a job's batch sizes. A round has a
round-start default ``d`` and a set of member arms; its schedule is the
*down* list (members on d's side, descending by value) followed by the *up*
list (the other members, ascending). In round 0 the sides are split by slot
position (slots up to d's slot are "down", which matters only when the arms
were given unsorted, as :class:`~banditfleet.pruning.PruningExploreManager`
allows); in later rounds by value. Each scheduled arm is handed out once and
its result (cost, reached) reported back. An arm that does not reach the
target ends its direction. Arms that reached become the next round's members
and the cheapest of them (first one on equal costs) its default. After the
last round the members left are the survivors.

A reported result is *settled* (folded into the round's best, the reached
flags or the direction break) only at the next advance, as in the reference,
whose generator resumes there. Everything lives in a :class:`PruningArrays`
tuple (per-job and per-arm-slot arrays of the fleet store):

=================  =======  ===================================================
field              dtype    meaning
=================  =======  ===================================================
stage              uint8    ``STAGE_PRUNING`` or ``STAGE_THOMPSON`` (pruning over)
round              int64    0-based round; ``num_rounds`` once pruning is over
pos                int64    schedule position of the arm handed out last (-1: none)
n_down, n_up       int64    lengths of the round's down and up lists
current            int64    slot of the arm handed out last this round (-1: none)
expecting          int64    arm value whose result is awaited (0: none)
pending            uint8    1 while a reported result awaits settling
pending_reached    uint8    that result's flag
pending_cost       float64  that result's cost
round_default      int64    slot of the round-start default
best_slot          int64    cheapest arm that reached this round (-1: none)
best_cost          float64  its cost (inf: none)
n_good             int64    how many arms reached this round
conv_slot          int64    cheapest converged observation in pruning (-1: none)
conv_cost          float64  its cost (inf: none)
member             uint8    per slot: a member of the current round (survivor after)
good               uint8    per slot: reached the target this round
=================  =======  ===================================================

Validation kernels replay a batch against per-row scratch (generation marks)
without writing any state, so a bad batch is refused whole.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numba
import numpy as np

from .stats import SUM_STACK_DEPTH
from .thompson import observe_refit, refit_history, thompson_predict

__all__ = [
    "PruningArrays",
    "ScratchArrays",
    "PRUNING_FIELDS",
    "SCRATCH_FIELDS",
    "STAGE_PRUNING",
    "STAGE_THOMPSON",
    "ADVANCE_NEXT",
    "ADVANCE_FINAL",
    "ADVANCE_EXHAUSTED",
    "PruningCode",
    "ERR_NONE",
    "ERR_UNKNOWN_BATCH_SIZE",
    "ERR_NEEDS_POOL",
    "ERR_AWAITING",
    "ERR_EXHAUSTED",
    "ERR_UNEXPECTED",
    "ERR_NO_CONVERGED",
    "TS_NUM_EXPLORATION",
    "init_rows",
    "validate_predict",
    "validate_observe",
    "advance_rows",
    "observe_control",
    "predict_batch",
    "observe_batch",
    "best_known",
    "exhausted_rows",
]

from ._config import INLINE_HELPER as _INLINE_HELPER, JIT as _JIT, JIT_HELPER as _JIT_HELPER

STAGE_PRUNING = 0
STAGE_THOMPSON = 1

ADVANCE_NEXT = 0  # an arm was handed out
ADVANCE_FINAL = 1  # pruning is over; the members are the survivors
ADVANCE_EXHAUSTED = 2  # the round ended with no arm reaching the target



class PruningCode(IntEnum):
    """What the pruning kernels return as ``code`` (the family's one namespace).

    Python turns them into errors in one place, :mod:`banditfleet._codes`. The
    kernels compare and return the plain-int aliases ``ERR_*`` below (numba also
    types the members themselves, as ``IntEnumMember``, but returning one makes
    every scalar call box an enum member in Python).
    """

    NONE = 0
    AWAITING = 1  # predict while a result is awaited (no concurrency)
    EXHAUSTED = 2  # predict that needs a round after one where nothing reached
    UNEXPECTED = 3  # a pruning-stage result for a batch size that was not asked for
    NO_CONVERGED = 4  # a pruning-stage result without its converged flag
    UNKNOWN_BATCH_SIZE = 5  # scalar entry points: not one of the job's batch sizes (nothing changed)
    NEEDS_POOL = 6  # scalar entry points: the history pool is full; grow it and call again (nothing changed)


ERR_NONE = int(PruningCode.NONE)
ERR_AWAITING = int(PruningCode.AWAITING)
ERR_EXHAUSTED = int(PruningCode.EXHAUSTED)
ERR_UNEXPECTED = int(PruningCode.UNEXPECTED)
ERR_NO_CONVERGED = int(PruningCode.NO_CONVERGED)
ERR_UNKNOWN_BATCH_SIZE = int(PruningCode.UNKNOWN_BATCH_SIZE)
ERR_NEEDS_POOL = int(PruningCode.NEEDS_POOL)

# The survivors' bandit explores each arm this often before sampling (the reference's 2;
# the default of the per-job ``num_exploration``).
TS_NUM_EXPLORATION = 2


class PruningArrays(NamedTuple):
    """Pruning state: per-job arrays (by row), then per-arm arrays (by slot)."""

    stage: np.ndarray
    round: np.ndarray
    pos: np.ndarray
    n_down: np.ndarray
    n_up: np.ndarray
    current: np.ndarray
    expecting: np.ndarray
    pending: np.ndarray
    pending_reached: np.ndarray
    pending_cost: np.ndarray
    round_default: np.ndarray
    best_slot: np.ndarray
    best_cost: np.ndarray
    n_good: np.ndarray
    conv_slot: np.ndarray
    conv_cost: np.ndarray
    member: np.ndarray
    good: np.ndarray


# (field, dtype, fill, per-arm?, holds slots of the job?) -- the store allocates these.
PRUNING_FIELDS = (
    ("stage", np.uint8, STAGE_PRUNING, False, False),
    ("round", np.int64, 0, False, False),
    ("pos", np.int64, -1, False, False),
    ("n_down", np.int64, 0, False, False),
    ("n_up", np.int64, 0, False, False),
    ("current", np.int64, -1, False, True),
    ("expecting", np.int64, 0, False, False),
    ("pending", np.uint8, 0, False, False),
    ("pending_reached", np.uint8, 0, False, False),
    ("pending_cost", np.float64, 0.0, False, False),
    ("round_default", np.int64, -1, False, True),
    ("best_slot", np.int64, -1, False, True),
    ("best_cost", np.float64, np.inf, False, False),
    ("n_good", np.int64, 0, False, False),
    ("conv_slot", np.int64, -1, False, True),
    ("conv_cost", np.float64, np.inf, False, False),
    ("member", np.uint8, 0, True, False),
    ("good", np.uint8, 0, True, False),
)


class ScratchArrays(NamedTuple):
    """Per-row scratch of the validation kernels (not state)."""

    mark: np.ndarray  # int64 generation of the call that last loaded the row
    stage: np.ndarray  # uint8 simulated stage
    expecting: np.ndarray  # int64 simulated awaited value


SCRATCH_FIELDS = (
    ("mark", np.int64, 0),
    ("stage", np.uint8, 0),
    ("expecting", np.int64, 0),
)


# ---------------------------------------------------------------- schedule
@numba.njit(**_INLINE_HELPER)
def _on_down_side(st, row, slot, arm_value):
    d = st.round_default[row]
    if st.round[row] == 0:
        return slot <= d
    return arm_value[slot] <= arm_value[d]


@numba.njit(**_JIT_HELPER)
def _count_sides(st, row, arm_start, arm_count, arm_value):
    n_down = np.int64(0)
    n_up = np.int64(0)
    start = arm_start[row]
    for slot in range(start, start + arm_count[row]):
        if st.member[slot]:
            if _on_down_side(st, row, slot, arm_value):
                n_down += 1
            else:
                n_up += 1
    st.n_down[row] = n_down
    st.n_up[row] = n_up


@numba.njit(**_INLINE_HELPER)
def _scheduled_slot(st, row, position, arm_start, arm_count, arm_value):
    """Slot at schedule ``position``; its predecessor (if in the same list) is ``current``.

    Down list: the largest down-side member below the predecessor's value;
    up list: the smallest up-side member above it.
    """
    n_down = st.n_down[row]
    down = position < n_down
    bounded = position > 0 if down else position > n_down
    bound = arm_value[st.current[row]] if bounded else np.int64(0)
    chosen = np.int64(-1)
    start = arm_start[row]
    for slot in range(start, start + arm_count[row]):
        if not st.member[slot] or _on_down_side(st, row, slot, arm_value) != down:
            continue
        v = arm_value[slot]
        if down:
            if (not bounded or v < bound) and (chosen < 0 or v > arm_value[chosen]):
                chosen = slot
        else:
            if (not bounded or v > bound) and (chosen < 0 or v < arm_value[chosen]):
                chosen = slot
    return chosen


@numba.njit(**_INLINE_HELPER)
def _walked_slot(st, row, position, arm_start, arm_count):
    """:func:`_scheduled_slot` for a job whose arm values ascend with the slot (the
    optimizer keeps them sorted): the sides split at the default's slot in every
    round, so the next arm is the nearest member slot below (down list) or above
    (up list) the predecessor, or the default itself, found by a walk instead of a
    scan over every arm."""
    n_down = st.n_down[row]
    start = arm_start[row]
    if position < n_down:
        slot = st.current[row] - 1 if position > 0 else st.round_default[row]
        while slot >= start and not st.member[slot]:
            slot -= 1
        return slot if slot >= start else np.int64(-1)
    end = start + arm_count[row]
    slot = st.current[row] + 1 if position > n_down else st.round_default[row] + 1
    while slot < end and not st.member[slot]:
        slot += 1
    return slot if slot < end else np.int64(-1)


@numba.njit(**_INLINE_HELPER)
def _after_settling(st, row):
    """(position, n_good) once the pending result, if any, is settled -- read-only."""
    pos = st.pos[row]
    n_good = st.n_good[row]
    if st.pending[row]:
        if st.pending_reached[row]:
            n_good += 1
        elif pos < st.n_down[row]:
            pos = st.n_down[row] - 1  # skip the rest of the down list
        else:
            pos = st.n_down[row] + st.n_up[row] - 1  # the round is over
    return pos, n_good


@numba.njit(**_JIT_HELPER)
def _peek(st, row, num_rounds, allow_empty_final):
    """What an advance of ``row`` would do (``ADVANCE_*``), without writing."""
    pos, n_good = _after_settling(st, row)
    if pos + 1 < st.n_down[row] + st.n_up[row]:
        return ADVANCE_NEXT
    last = st.round[row] + 1 >= num_rounds
    if n_good == 0 and not (allow_empty_final and last):
        return ADVANCE_EXHAUSTED
    return ADVANCE_FINAL if last else ADVANCE_NEXT


@numba.njit(**_INLINE_HELPER)
def _settle(st, row):
    if not st.pending[row]:
        return
    cur = st.current[row]
    if st.pending_reached[row]:
        # Strict comparison: the first of equally cheap arms stays best.
        if st.best_cost[row] > st.pending_cost[row]:
            st.best_cost[row] = st.pending_cost[row]
            st.best_slot[row] = cur
        st.good[cur] = 1
        st.n_good[row] += 1
    pos, _ = _after_settling(st, row)
    st.pos[row] = pos
    st.pending[row] = 0


@numba.njit(**_JIT_HELPER)
def _advance(st, row, num_rounds, allow_empty_final, arm_start, arm_count, arm_value, sorted_arms):
    """Settle, then hand out the next arm (returns ``(ADVANCE_NEXT, slot)``), or end the
    round; ``(ADVANCE_FINAL, -1)`` when pruning is over. The caller has checked with
    :func:`_peek` that the advance is not ``ADVANCE_EXHAUSTED``. ``sorted_arms``: the
    job's arm values ascend with the slot (the schedule is then walked, not scanned)."""
    _settle(st, row)
    nxt = st.pos[row] + 1
    if nxt >= st.n_down[row] + st.n_up[row]:
        # Round over: the arms that reached are the next round's members, the best its default.
        start = arm_start[row]
        for slot in range(start, start + arm_count[row]):
            st.member[slot] = st.good[slot]
            st.good[slot] = 0
        if st.best_slot[row] >= 0:
            st.round_default[row] = st.best_slot[row]
        st.best_slot[row] = -1
        st.best_cost[row] = np.inf
        st.n_good[row] = 0
        st.round[row] += 1
        st.pos[row] = -1
        st.current[row] = -1
        st.expecting[row] = 0
        _count_sides(st, row, arm_start, arm_count, arm_value)
        if st.round[row] >= num_rounds:
            st.stage[row] = STAGE_THOMPSON
            return ADVANCE_FINAL, np.int64(-1)
        nxt = np.int64(0)
    if sorted_arms:
        slot = _walked_slot(st, row, nxt, arm_start, arm_count)
    else:
        slot = _scheduled_slot(st, row, nxt, arm_start, arm_count, arm_value)
    st.pos[row] = nxt
    st.current[row] = slot
    st.expecting[row] = arm_value[slot]
    return ADVANCE_NEXT, slot


@numba.njit(**_JIT_HELPER)
def best_known(st, row, arm_value):
    """The batch size to launch while a pruning result is awaited (concurrency).

    The cheapest converged observation of the job so far in pruning; else the
    round's best arm; else the round-start default.
    """
    if st.conv_slot[row] >= 0:
        return arm_value[st.conv_slot[row]]
    if st.best_slot[row] >= 0:
        return arm_value[st.best_slot[row]]
    return arm_value[st.round_default[row]]


# ------------------------------------------------------------ registration
@numba.njit(**_JIT)
def init_rows(rows, defaults, arm_start, arm_count, arm_value, arm_active, st):
    """Start pruning for new rows from their default values (present: checked by the caller).

    Every arm is a member of round 0; none is an arm of the bandit yet.
    """
    for i in range(rows.shape[0]):
        row = rows[i]
        start = arm_start[row]
        d = np.int64(-1)
        for slot in range(start, start + arm_count[row]):
            st.member[slot] = 1
            st.good[slot] = 0
            arm_active[slot] = 0
            if arm_value[slot] == defaults[i]:
                d = slot
        st.stage[row] = STAGE_PRUNING
        st.round[row] = 0
        st.pos[row] = -1
        st.current[row] = -1
        st.expecting[row] = 0
        st.pending[row] = 0
        st.pending_reached[row] = 0
        st.pending_cost[row] = 0.0
        st.round_default[row] = d
        st.best_slot[row] = -1
        st.best_cost[row] = np.inf
        st.n_good[row] = 0
        st.conv_slot[row] = -1
        st.conv_cost[row] = np.inf
        _count_sides(st, row, arm_start, arm_count, arm_value)


# -------------------------------------------------------------- validation
@numba.njit(**_JIT_HELPER)
def _load(scratch, row, generation, st):
    if scratch.mark[row] != generation:
        scratch.mark[row] = generation
        scratch.stage[row] = st.stage[row]
        scratch.expecting[row] = st.expecting[row]


@numba.njit(**_JIT)
def validate_predict(rows, st, num_rounds, concurrency, allow_empty_final, scratch, generation):
    """First ``(index, ERR_*)`` at which a predict batch would fail, or ``(-1, ERR_NONE)``.

    ``num_rounds[row]`` is each job's number of pruning rounds.
    Writes only ``scratch`` (rows seen this ``generation`` keep their simulated
    stage and awaited value, so repeated rows see the batch's earlier entries).
    """
    for i in range(rows.shape[0]):
        row = rows[i]
        _load(scratch, row, generation, st)
        if scratch.stage[row] != STAGE_PRUNING:
            continue
        if scratch.expecting[row] != 0:
            if not concurrency:
                return i, ERR_AWAITING
            continue
        # Nothing awaited: this entry advances the state machine. A row advances
        # at most once per predict batch (afterwards it awaits or is in Thompson
        # sampling), so the real state is the state to peek at.
        outcome = _peek(st, row, num_rounds[row], allow_empty_final)
        if outcome == ADVANCE_EXHAUSTED:
            return i, ERR_EXHAUSTED
        if outcome == ADVANCE_FINAL:
            scratch.stage[row] = STAGE_THOMPSON
        else:
            scratch.expecting[row] = 1  # some arm (values are positive)
    return -1, ERR_NONE


@numba.njit(**_JIT)
def validate_observe(rows, values, has_converged, concurrency, st, scratch, generation):
    """First ``(index, ERR_*)`` at which an observe batch would fail, or ``(-1, ERR_NONE)``.

    After a failure ``scratch.expecting[rows[index]]`` is the value that entry
    found awaited (0: none).
    """
    for i in range(rows.shape[0]):
        row = rows[i]
        _load(scratch, row, generation, st)
        if st.stage[row] != STAGE_PRUNING:
            continue
        if not has_converged:
            return i, ERR_NO_CONVERGED
        awaited = scratch.expecting[row]
        if awaited != 0 and awaited == values[i]:
            scratch.expecting[row] = 0
        elif not concurrency:
            return i, ERR_UNEXPECTED
    return -1, ERR_NONE


@numba.njit(**_JIT)
def exhausted_rows(rows, st, num_rounds, out):
    """``out[i]`` = 1 where the next predict of ``rows[i]`` would find pruning exhausted."""
    for i in range(rows.shape[0]):
        row = rows[i]
        out[i] = (
            st.stage[row] == STAGE_PRUNING
            and st.expecting[row] == 0
            and _peek(st, row, num_rounds[row], False) == ADVANCE_EXHAUSTED
        )


# ----------------------------------------------------------------- batches
@numba.njit(**_JIT)
def advance_rows(rows, st, num_rounds, allow_empty_final, arm_start, arm_count, arm_value, sorted_arms, codes, out):
    """Advance each (validated) row once: ``codes[i]`` is ``ADVANCE_*``, ``out[i]`` the arm value
    (``sorted_arms``: every row's arm values ascend with the slot)."""
    for i in range(rows.shape[0]):
        code, slot = _advance(
            st, rows[i], num_rounds[rows[i]], allow_empty_final, arm_start, arm_count, arm_value, sorted_arms,
        )
        codes[i] = code
        out[i] = arm_value[slot] if slot >= 0 else np.int64(0)


@numba.njit(**_JIT)
def observe_control(rows, slots, arm_value, costs, converged, st, refit):
    """Fold (validated) observations into the pruning state, in array order.

    A pruning-stage observation of the awaited arm becomes the pending result;
    any other (concurrency) only counts towards the best converged cost.
    ``refit[i]`` is set to 1 for rows past pruning (their arm is refitted).
    """
    for i in range(rows.shape[0]):
        row = rows[i]
        if st.stage[row] != STAGE_PRUNING:
            refit[i] = 1
            continue
        refit[i] = 0
        slot = slots[i]
        if converged[i] and costs[i] < st.conv_cost[row]:
            st.conv_cost[row] = costs[i]
            st.conv_slot[row] = slot
        v = arm_value[slot]
        if st.expecting[row] != 0 and st.expecting[row] == v:
            st.pending[row] = 1
            st.pending_cost[row] = costs[i]
            st.pending_reached[row] = 1 if converged[i] else 0
            st.expecting[row] = 0


@numba.njit(**_JIT)
def predict_batch(
    rows,
    st,
    num_rounds,
    concurrency,
    scratch,
    generation,
    arm_start,
    arm_count,
    arm_value,
    arm_active,
    slot_window,
    slot_offset,
    prior_mean,
    prior_precision,
    history_count,
    history_values,
    chunk_values,
    chunk_next,
    slot_chunks,
    reward_precision,
    posterior_mean,
    posterior_precision,
    observation_count,
    num_exploration,
    streams,
    out,
):
    """One decision per row of a pruning optimizer, in array order.

    First the whole batch is checked with :func:`validate_predict`; if it
    would fail, its ``(index, ERR_*)`` is returned and nothing is written.
    Otherwise pruning rows hand out their next arm, or -- while a result is
    awaited, which validation allows only with concurrency -- the best known
    one. A row whose pruning ends here gets its bandit: the survivors become
    the active arms, each refitted from the prior on its windowed history
    with reward precision 1/var. Rows past pruning then take one
    Thompson-sampling decision each, in array order. Returns ``(-1, ERR_NONE)``.

    Per-job settings are arrays by row: ``num_rounds``, ``prior_mean``,
    ``prior_precision`` and ``num_exploration`` (the bandit's explorations per
    arm, the reference's 2); each arm keeps its job's window (``slot_window``,
    ``slot_offset``).
    """
    index, code = validate_predict(rows, st, num_rounds, concurrency, False, scratch, generation)
    if code != ERR_NONE:
        return index, code
    n = rows.shape[0]
    ts_rows = np.empty(n, np.int64)
    ts_index = np.empty(n, np.int64)
    finals = np.empty(n, np.int64)
    n_ts = 0
    n_finals = 0
    for i in range(n):
        row = rows[i]
        if st.stage[row] == STAGE_PRUNING:
            if st.expecting[row] != 0:
                out[i] = best_known(st, row, arm_value)
                continue
            # The optimizer keeps every job's arms sorted ascending.
            code, slot = _advance(st, row, num_rounds[row], False, arm_start, arm_count, arm_value, True)
            if code == ADVANCE_NEXT:
                out[i] = arm_value[slot]
                continue
            finals[n_finals] = row
            n_finals += 1
        ts_rows[n_ts] = row
        ts_index[n_ts] = i
        n_ts += 1
    if n_finals:
        # Pruning ended for these rows: their survivors become the bandit's arms, each
        # refitted on its history (the advance pass above reads no posterior, and the
        # decisions below come after every refit, so deferring the refits changes nothing).
        longest = np.int64(1)
        for f in range(n_finals):
            row = finals[f]
            start = arm_start[row]
            for slot in range(start, start + arm_count[row]):
                if st.member[slot]:
                    c = history_count[slot]
                    w = slot_window[slot]
                    if w > 0 and c > w:
                        c = w
                    if c > longest:
                        longest = c
        rewards = np.empty(longest, np.float64)
        scratch = np.empty(longest, np.float64)
        frames = np.empty((3, SUM_STACK_DEPTH), np.int64)
        partial = np.empty(SUM_STACK_DEPTH, np.float64)
        chunk_flat = chunk_values.reshape(chunk_values.size)
        for f in range(n_finals):
            row = finals[f]
            start = arm_start[row]
            for s in range(start, start + arm_count[row]):
                arm_active[s] = st.member[s]
                if st.member[s]:
                    refit_history(
                        s, slot_window[s], slot_offset[s], history_count, history_values, chunk_flat, chunk_next,
                        slot_chunks, rewards, scratch, frames, partial, prior_mean[row], prior_precision[row],
                        reward_precision, posterior_mean, posterior_precision, observation_count,
                    )
    if n_ts:
        ts_out = np.empty(n_ts, np.int64)
        thompson_predict(
            ts_rows[:n_ts],
            arm_start,
            arm_count,
            arm_active,
            arm_value,
            observation_count,
            posterior_mean,
            posterior_precision,
            num_exploration,
            streams,
            ts_out,
        )
        for k in range(n_ts):
            out[ts_index[k]] = ts_out[k]
    return np.int64(-1), ERR_NONE


@numba.njit(**_JIT)
def observe_batch(
    rows,
    slots,
    values,
    arm_value,
    costs,
    converged,
    has_converged,
    st,
    concurrency,
    scratch,
    generation,
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
    """Observations of a pruning optimizer, in array order.

    First the whole batch is checked with :func:`validate_observe`; if it
    would fail, its ``(index, ERR_*)`` is returned and nothing is written.
    Otherwise every reward (-cost) goes to its arm's history, pruning-stage
    observations drive the state machine and, past pruning, the observed arm
    is refitted on its windowed history (the control state never reads
    history, nor the refit the control state, so the two passes equal one
    interleaved pass). Returns ``(-1, ERR_NONE)``.
    """
    index, code = validate_observe(rows, values, has_converged, concurrency, st, scratch, generation)
    if code != ERR_NONE:
        return index, code
    refit = np.empty(rows.shape[0], np.uint8)
    observe_control(rows, slots, arm_value, costs, converged, st, refit)
    observe_refit(
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
    )
    return np.int64(-1), ERR_NONE

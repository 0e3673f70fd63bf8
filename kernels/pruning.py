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
tuple: one int64 *record* row per job (the fields below, columns indexed by the
constants ``STAGE`` ... ``CONV_COST``; float fields hold their float64 bits and
are read through ``frecord``, the block's float64 view), the per-slot flags, and
the validation scratch ``sim``. The dtype column is the field's dtype in
checkpoints, which keep one array per field:

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

Validation kernels replay a batch against the per-row scratch ``sim``
(generation marks) without writing any state, so a bad batch is refused whole.
Every per-batch row loop is an NRT-free helper (``_JIT_HELPER``) with the state
machine's steps inlined into it; the public kernels unpack the tuple and call it.
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
    "RECORD_COLUMNS",
    "RECORD_WIDTH",
    "ARM_FIELDS",
    "SIM_WIDTH",
    "all_past_pruning",
    "SIM_EXPECTING",
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


# The per-job record: one row of an int64 block per job, one column per field
# (float fields hold their float64 bits: the block's float64 view reads them).
# Hot fields first: validation and a mid-round advance read the first 64 bytes.
STAGE = 0
EXPECTING = 1
POS = 2
N_DOWN = 3
N_UP = 4
CURRENT = 5
PENDING = 6
PENDING_REACHED = 7
PENDING_COST = 8  # float
ROUND = 9
ROUND_DEFAULT = 10
BEST_SLOT = 11
BEST_COST = 12  # float
N_GOOD = 13
CONV_SLOT = 14
CONV_COST = 15  # float
RECORD_WIDTH = 16

# The validation scratch (not state): one int64 row of SIM_WIDTH columns per job.
MARK = 0  # generation of the validation call that last loaded the row
SIM_STAGE = 1  # that call's simulated stage
SIM_EXPECTING = 2  # that call's simulated awaited value
SIM_WIDTH = 3


class PruningArrays(NamedTuple):
    """Pruning state: the per-job record block (by row) and its float64 view, then the
    per-arm flags (by slot)."""

    record: np.ndarray  # int64 (jobs, RECORD_WIDTH)
    frecord: np.ndarray  # float64 view of ``record`` (the float columns)
    member: np.ndarray  # uint8 per slot
    good: np.ndarray  # uint8 per slot
    sim: np.ndarray  # int64 (jobs, SIM_WIDTH): the validation scratch (not state)


# The record's columns: (field, dtype in checkpoints, fill, holds slots of the job?, scratch?),
# in column order. Checkpoints keep one array per field (``job.pr_<field>``, the layout
# before the record), so files of either layout load.
RECORD_COLUMNS = (
    ("stage", np.uint8, STAGE_PRUNING, False, False),
    ("expecting", np.int64, 0, False, False),
    ("pos", np.int64, -1, False, False),
    ("n_down", np.int64, 0, False, False),
    ("n_up", np.int64, 0, False, False),
    ("current", np.int64, -1, True, False),
    ("pending", np.uint8, 0, False, False),
    ("pending_reached", np.uint8, 0, False, False),
    ("pending_cost", np.float64, 0.0, False, False),
    ("round", np.int64, 0, False, False),
    ("round_default", np.int64, -1, True, False),
    ("best_slot", np.int64, -1, True, False),
    ("best_cost", np.float64, np.inf, False, False),
    ("n_good", np.int64, 0, False, False),
    ("conv_slot", np.int64, -1, True, False),
    ("conv_cost", np.float64, np.inf, False, False),
)

# Per-arm arrays: (field, dtype, fill).
ARM_FIELDS = (
    ("member", np.uint8, 0),
    ("good", np.uint8, 0),
)


# ---------------------------------------------------------------- schedule
@numba.njit(**_INLINE_HELPER)
def _on_down_side(rec, row, slot, arm_value):
    d = rec[row, ROUND_DEFAULT]
    if rec[row, ROUND] == 0:
        return slot <= d
    return arm_value[slot] <= arm_value[d]


@numba.njit(**_JIT_HELPER)
def _count_sides(rec, member, row, arm_start, arm_count, arm_value):
    n_down = np.int64(0)
    n_up = np.int64(0)
    start = arm_start[row]
    for slot in range(start, start + arm_count[row]):
        if member[slot]:
            if _on_down_side(rec, row, slot, arm_value):
                n_down += 1
            else:
                n_up += 1
    rec[row, N_DOWN] = n_down
    rec[row, N_UP] = n_up


@numba.njit(**_JIT_HELPER)
def _scheduled_slot(rec, member, row, position, arm_start, arm_count, arm_value):
    """Slot at schedule ``position``; its predecessor (if in the same list) is ``current``.

    Down list: the largest down-side member below the predecessor's value;
    up list: the smallest up-side member above it.
    """
    n_down = rec[row, N_DOWN]
    down = position < n_down
    bounded = position > 0 if down else position > n_down
    bound = arm_value[rec[row, CURRENT]] if bounded else np.int64(0)
    chosen = np.int64(-1)
    start = arm_start[row]
    for slot in range(start, start + arm_count[row]):
        if not member[slot] or _on_down_side(rec, row, slot, arm_value) != down:
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
def _walked_slot(rec, member, row, position, arm_start, arm_count):
    """:func:`_scheduled_slot` for a job whose arm values ascend with the slot (the
    optimizer keeps them sorted): the sides split at the default's slot in every
    round, so the next arm is the nearest member slot below (down list) or above
    (up list) the predecessor, or the default itself, found by a walk instead of a
    scan over every arm."""
    n_down = rec[row, N_DOWN]
    start = arm_start[row]
    if position < n_down:
        slot = rec[row, CURRENT] - 1 if position > 0 else rec[row, ROUND_DEFAULT]
        while slot >= start and not member[slot]:
            slot -= 1
        return slot if slot >= start else np.int64(-1)
    end = start + arm_count[row]
    slot = rec[row, CURRENT] + 1 if position > n_down else rec[row, ROUND_DEFAULT] + 1
    while slot < end and not member[slot]:
        slot += 1
    return slot if slot < end else np.int64(-1)


@numba.njit(**_INLINE_HELPER)
def _after_settling(rec, row):
    """(position, n_good) once the pending result, if any, is settled -- read-only."""
    pos = rec[row, POS]
    n_good = rec[row, N_GOOD]
    if rec[row, PENDING]:
        if rec[row, PENDING_REACHED]:
            n_good += 1
        elif pos < rec[row, N_DOWN]:
            pos = rec[row, N_DOWN] - 1  # skip the rest of the down list
        else:
            pos = rec[row, N_DOWN] + rec[row, N_UP] - 1  # the round is over
    return pos, n_good


@numba.njit(**_INLINE_HELPER)
def _peek(rec, row, num_rounds, allow_empty_final):
    """What an advance of ``row`` would do (``ADVANCE_*``), without writing."""
    pos, n_good = _after_settling(rec, row)
    if pos + 1 < rec[row, N_DOWN] + rec[row, N_UP]:
        return ADVANCE_NEXT
    last = rec[row, ROUND] + 1 >= num_rounds
    if n_good == 0 and not (allow_empty_final and last):
        return ADVANCE_EXHAUSTED
    return ADVANCE_FINAL if last else ADVANCE_NEXT


@numba.njit(**_INLINE_HELPER)
def _settle(rec, frec, good, row):
    if not rec[row, PENDING]:
        return
    cur = rec[row, CURRENT]
    if rec[row, PENDING_REACHED]:
        # Strict comparison: the first of equally cheap arms stays best.
        if frec[row, BEST_COST] > frec[row, PENDING_COST]:
            frec[row, BEST_COST] = frec[row, PENDING_COST]
            rec[row, BEST_SLOT] = cur
        good[cur] = 1
        rec[row, N_GOOD] += 1
    pos, _ = _after_settling(rec, row)
    rec[row, POS] = pos
    rec[row, PENDING] = 0


@numba.njit(**_JIT_HELPER)
def _end_round(rec, frec, member, good, row, num_rounds, arm_start, arm_count, arm_value):
    """The round is over: the arms that reached are the next round's members, the best its
    default. Returns True when that was the last round (pruning is over)."""
    start = arm_start[row]
    for slot in range(start, start + arm_count[row]):
        member[slot] = good[slot]
        good[slot] = 0
    if rec[row, BEST_SLOT] >= 0:
        rec[row, ROUND_DEFAULT] = rec[row, BEST_SLOT]
    rec[row, BEST_SLOT] = -1
    frec[row, BEST_COST] = np.inf
    rec[row, N_GOOD] = 0
    rec[row, ROUND] += 1
    rec[row, POS] = -1
    rec[row, CURRENT] = -1
    rec[row, EXPECTING] = 0
    _count_sides(rec, member, row, arm_start, arm_count, arm_value)
    if rec[row, ROUND] >= num_rounds:
        rec[row, STAGE] = STAGE_THOMPSON
        return True
    return False


@numba.njit(**_INLINE_HELPER)
def _advance(rec, frec, member, good, row, num_rounds, allow_empty_final, arm_start, arm_count, arm_value, sorted_arms):
    """Settle, then hand out the next arm (returns ``(ADVANCE_NEXT, slot)``), or end the
    round; ``(ADVANCE_FINAL, -1)`` when pruning is over. The caller has checked with
    :func:`_peek` that the advance is not ``ADVANCE_EXHAUSTED``. ``sorted_arms``: the
    job's arm values ascend with the slot (the schedule is then walked, not scanned)."""
    _settle(rec, frec, good, row)
    nxt = rec[row, POS] + 1
    if nxt >= rec[row, N_DOWN] + rec[row, N_UP]:
        if _end_round(rec, frec, member, good, row, num_rounds, arm_start, arm_count, arm_value):
            return ADVANCE_FINAL, np.int64(-1)
        nxt = np.int64(0)
    if sorted_arms:
        slot = _walked_slot(rec, member, row, nxt, arm_start, arm_count)
    else:
        slot = _scheduled_slot(rec, member, row, nxt, arm_start, arm_count, arm_value)
    rec[row, POS] = nxt
    rec[row, CURRENT] = slot
    rec[row, EXPECTING] = arm_value[slot]
    return ADVANCE_NEXT, slot


@numba.njit(**_INLINE_HELPER)
def _best_known(rec, row, arm_value):
    if rec[row, CONV_SLOT] >= 0:
        return arm_value[rec[row, CONV_SLOT]]
    if rec[row, BEST_SLOT] >= 0:
        return arm_value[rec[row, BEST_SLOT]]
    return arm_value[rec[row, ROUND_DEFAULT]]


@numba.njit(**_JIT)
def best_known(st, row, arm_value):
    """The batch size to launch while a pruning result is awaited (concurrency).

    The cheapest converged observation of the job so far in pruning; else the
    round's best arm; else the round-start default.
    """
    return _best_known(st.record, row, arm_value)


# ------------------------------------------------------------ registration
@numba.njit(**_JIT_HELPER)
def _init_loop(rec, frec, member, good, rows, defaults, arm_start, arm_count, arm_value, arm_active):
    for i in range(rows.shape[0]):
        row = rows[i]
        start = arm_start[row]
        d = np.int64(-1)
        for slot in range(start, start + arm_count[row]):
            member[slot] = 1
            good[slot] = 0
            arm_active[slot] = 0
            if arm_value[slot] == defaults[i]:
                d = slot
        rec[row, STAGE] = STAGE_PRUNING
        rec[row, EXPECTING] = 0
        rec[row, POS] = -1
        rec[row, CURRENT] = -1
        rec[row, PENDING] = 0
        rec[row, PENDING_REACHED] = 0
        frec[row, PENDING_COST] = 0.0
        rec[row, ROUND] = 0
        rec[row, ROUND_DEFAULT] = d
        rec[row, BEST_SLOT] = -1
        frec[row, BEST_COST] = np.inf
        rec[row, N_GOOD] = 0
        rec[row, CONV_SLOT] = -1
        frec[row, CONV_COST] = np.inf
        _count_sides(rec, member, row, arm_start, arm_count, arm_value)


@numba.njit(**_JIT)
def init_rows(rows, defaults, arm_start, arm_count, arm_value, arm_active, st):
    """Start pruning for new rows from their default values (present: checked by the caller).

    Every arm is a member of round 0; none is an arm of the bandit yet.
    """
    _init_loop(st.record, st.frecord, st.member, st.good, rows, defaults, arm_start, arm_count, arm_value, arm_active)


# -------------------------------------------------------------- validation
@numba.njit(**_INLINE_HELPER)
def _load(rec, sim, row, generation):
    if sim[row, MARK] != generation:
        sim[row, MARK] = generation
        sim[row, SIM_STAGE] = rec[row, STAGE]
        sim[row, SIM_EXPECTING] = rec[row, EXPECTING]


@numba.njit(**_JIT_HELPER)
def _validate_predict(rec, sim, rows, num_rounds, concurrency, allow_empty_final, generation):
    for i in range(rows.shape[0]):
        row = rows[i]
        _load(rec, sim, row, generation)
        if sim[row, SIM_STAGE] != STAGE_PRUNING:
            continue
        if sim[row, SIM_EXPECTING] != 0:
            if not concurrency:
                return i, ERR_AWAITING
            continue
        # Nothing awaited: this entry advances the state machine. A row advances
        # at most once per predict batch (afterwards it awaits or is in Thompson
        # sampling), so the real state is the state to peek at.
        outcome = _peek(rec, row, num_rounds[row], allow_empty_final)
        if outcome == ADVANCE_EXHAUSTED:
            return i, ERR_EXHAUSTED
        if outcome == ADVANCE_FINAL:
            sim[row, SIM_STAGE] = STAGE_THOMPSON
        else:
            sim[row, SIM_EXPECTING] = 1  # some arm (values are positive)
    return np.int64(-1), ERR_NONE


@numba.njit(**_JIT)
def validate_predict(rows, st, num_rounds, concurrency, allow_empty_final, generation):
    """First ``(index, ERR_*)`` at which a predict batch would fail, or ``(-1, ERR_NONE)``.

    ``num_rounds[row]`` is each job's number of pruning rounds.
    Writes only the scratch ``st.sim`` (rows seen this ``generation`` keep their
    simulated stage and awaited value, so repeated rows see the batch's earlier
    entries).
    """
    return _validate_predict(st.record, st.sim, rows, num_rounds, concurrency, allow_empty_final, generation)


@numba.njit(**_JIT_HELPER)
def _validate_observe(rec, sim, rows, values, has_converged, concurrency, generation):
    for i in range(rows.shape[0]):
        row = rows[i]
        if rec[row, STAGE] != STAGE_PRUNING:
            continue
        _load(rec, sim, row, generation)
        if not has_converged:
            return i, ERR_NO_CONVERGED
        awaited = sim[row, SIM_EXPECTING]
        if awaited != 0 and awaited == values[i]:
            sim[row, SIM_EXPECTING] = 0
        elif not concurrency:
            return i, ERR_UNEXPECTED
    return np.int64(-1), ERR_NONE


@numba.njit(**_JIT)
def validate_observe(rows, values, has_converged, concurrency, st, generation):
    """First ``(index, ERR_*)`` at which an observe batch would fail, or ``(-1, ERR_NONE)``.

    After a failure ``st.sim[rows[index], SIM_EXPECTING]`` is the value that entry
    found awaited (0: none).
    """
    return _validate_observe(st.record, st.sim, rows, values, has_converged, concurrency, generation)


@numba.njit(**_JIT_HELPER)
def _exhausted_loop(rec, rows, num_rounds, out):
    for i in range(rows.shape[0]):
        row = rows[i]
        out[i] = (
            rec[row, STAGE] == STAGE_PRUNING
            and rec[row, EXPECTING] == 0
            and _peek(rec, row, num_rounds[row], False) == ADVANCE_EXHAUSTED
        )


@numba.njit(**_JIT)
def exhausted_rows(rows, st, num_rounds, out):
    """``out[i]`` = 1 where the next predict of ``rows[i]`` would find pruning exhausted."""
    _exhausted_loop(st.record, rows, num_rounds, out)


@numba.njit(**_JIT_HELPER)
def _past_pruning_loop(rec, rows):
    for i in range(rows.shape[0]):
        if rec[rows[i], STAGE] == STAGE_PRUNING:
            return False
    return True


@numba.njit(**_JIT)
def all_past_pruning(rows, st):
    """Whether every row of ``rows`` is past pruning (Thompson sampling)."""
    return _past_pruning_loop(st.record, rows)


# ----------------------------------------------------------------- batches
@numba.njit(**_JIT_HELPER)
def _advance_loop(rec, frec, member, good, rows, num_rounds, allow_empty_final, arm_start, arm_count, arm_value, sorted_arms, codes, out):
    # NRT-free: the inlined helpers below take the arrays with no reference counting
    # (inlined into a kernel compiled with NRT, every helper call increfs and decrefs
    # each array it is given: most of the cost of an advance).
    for i in range(rows.shape[0]):
        row = rows[i]
        code, slot = _advance(
            rec, frec, member, good, row, num_rounds[row], allow_empty_final, arm_start, arm_count, arm_value,
            sorted_arms,
        )
        codes[i] = code
        out[i] = arm_value[slot] if slot >= 0 else np.int64(0)


@numba.njit(**_JIT)
def advance_rows(rows, st, num_rounds, allow_empty_final, arm_start, arm_count, arm_value, sorted_arms, codes, out):
    """Advance each (validated) row once: ``codes[i]`` is ``ADVANCE_*``, ``out[i]`` the arm value
    (``sorted_arms``: every row's arm values ascend with the slot)."""
    _advance_loop(
        st.record, st.frecord, st.member, st.good, rows, num_rounds, allow_empty_final, arm_start, arm_count,
        arm_value, sorted_arms, codes, out,
    )


@numba.njit(**_JIT_HELPER)
def _predict_pass(rec, frec, member, good, rows, num_rounds, arm_start, arm_count, arm_value, out, ts_rows, ts_index, finals):
    """The pruning pass of :func:`predict_batch` (NRT-free, see :func:`_advance_loop`):
    pruning rows hand out their next arm or, while a result is awaited, the best known
    one; rows past pruning (or whose pruning ends here, listed in ``finals``) are listed
    in ``ts_rows``/``ts_index`` for the Thompson-sampling pass. Returns
    ``(n_ts, n_finals)``."""
    n_ts = np.int64(0)
    n_finals = np.int64(0)
    for i in range(rows.shape[0]):
        row = rows[i]
        if rec[row, STAGE] == STAGE_PRUNING:
            if rec[row, EXPECTING] != 0:
                out[i] = _best_known(rec, row, arm_value)
                continue
            # The optimizer keeps every job's arms sorted ascending.
            code, slot = _advance(
                rec, frec, member, good, row, num_rounds[row], False, arm_start, arm_count, arm_value, True,
            )
            if code == ADVANCE_NEXT:
                out[i] = arm_value[slot]
                continue
            finals[n_finals] = row
            n_finals += 1
        ts_rows[n_ts] = row
        ts_index[n_ts] = i
        n_ts += 1
    return n_ts, n_finals


@numba.njit(**_JIT_HELPER)
def _observe_control(rec, frec, rows, slots, arm_value, costs, converged, refit):
    n_refit = np.int64(0)
    for i in range(rows.shape[0]):
        row = rows[i]
        if rec[row, STAGE] != STAGE_PRUNING:
            refit[i] = 1
            n_refit += 1
            continue
        refit[i] = 0
        slot = slots[i]
        cost = costs[i]
        if converged[i] and cost < frec[row, CONV_COST]:
            frec[row, CONV_COST] = cost
            rec[row, CONV_SLOT] = slot
        expecting = rec[row, EXPECTING]
        if expecting != 0 and expecting == arm_value[slot]:
            rec[row, PENDING] = 1
            frec[row, PENDING_COST] = cost
            rec[row, PENDING_REACHED] = 1 if converged[i] else 0
            rec[row, EXPECTING] = 0
    return n_refit


@numba.njit(**_JIT)
def observe_control(rows, slots, arm_value, costs, converged, st, refit):
    """Fold (validated) observations into the pruning state, in array order.

    A pruning-stage observation of the awaited arm becomes the pending result;
    any other (concurrency) only counts towards the best converged cost.
    ``refit[i]`` is set to 1 for rows past pruning (their arm is refitted).
    Returns how many rows are past pruning.
    """
    return _observe_control(st.record, st.frecord, rows, slots, arm_value, costs, converged, refit)


@numba.njit(**_JIT_HELPER)
def _longest_window(finals, member, arm_start, arm_count, history_count, slot_window):
    """The most rewards any survivor of ``finals`` is refitted on (at least 1)."""
    longest = np.int64(1)
    for f in range(finals.shape[0]):
        row = finals[f]
        start = arm_start[row]
        for slot in range(start, start + arm_count[row]):
            if member[slot]:
                c = history_count[slot]
                w = slot_window[slot]
                if w > 0 and c > w:
                    c = w
                if c > longest:
                    longest = c
    return longest


@numba.njit(**_JIT_HELPER)
def _refit_survivors(
    finals, member, arm_start, arm_count, arm_active, slot_window, slot_offset, prior_mean, prior_precision,
    history_count, history_values, chunk_flat, chunk_next, slot_chunks, rewards, scratch, frames, partial,
    reward_precision, posterior_mean, posterior_precision, observation_count,
):
    """The survivors of ``finals`` (rows whose pruning just ended) become their bandit's
    active arms, each refitted from the prior on its windowed history (NRT-free)."""
    for f in range(finals.shape[0]):
        row = finals[f]
        start = arm_start[row]
        for slot in range(start, start + arm_count[row]):
            arm_active[slot] = member[slot]
            if member[slot]:
                refit_history(
                    slot, slot_window[slot], slot_offset[slot], history_count, history_values, chunk_flat, chunk_next,
                    slot_chunks, rewards, scratch, frames, partial, prior_mean[row], prior_precision[row],
                    reward_precision, posterior_mean, posterior_precision, observation_count,
                )


@numba.njit(**_JIT)
def predict_batch(
    rows,
    st,
    num_rounds,
    concurrency,
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
    rec = st.record
    frec = st.frecord
    member = st.member
    good = st.good
    index, code = _validate_predict(rec, st.sim, rows, num_rounds, concurrency, False, generation)
    if code != ERR_NONE:
        return index, code
    n = rows.shape[0]
    ts_rows = np.empty(n, np.int64)
    ts_index = np.empty(n, np.int64)
    finals = np.empty(n, np.int64)
    n_ts, n_finals = _predict_pass(
        rec, frec, member, good, rows, num_rounds, arm_start, arm_count, arm_value, out, ts_rows, ts_index, finals,
    )
    if n_finals:
        # Pruning ended for these rows: their survivors become the bandit's arms, each
        # refitted on its history (the advance pass above reads no posterior, and the
        # decisions below come after every refit, so deferring the refits changes nothing).
        longest = _longest_window(finals[:n_finals], member, arm_start, arm_count, history_count, slot_window)
        rewards = np.empty(longest, np.float64)
        scratch = np.empty(longest, np.float64)
        frames = np.empty((3, SUM_STACK_DEPTH), np.int64)
        partial = np.empty(SUM_STACK_DEPTH, np.float64)
        _refit_survivors(
            finals[:n_finals], member, arm_start, arm_count, arm_active, slot_window, slot_offset, prior_mean,
            prior_precision, history_count, history_values, chunk_values.reshape(chunk_values.size), chunk_next,
            slot_chunks, rewards, scratch, frames, partial, reward_precision, posterior_mean, posterior_precision,
            observation_count,
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
    index, code = _validate_observe(st.record, st.sim, rows, values, has_converged, concurrency, generation)
    if code != ERR_NONE:
        return index, code
    refit = np.empty(rows.shape[0], np.uint8)
    _observe_control(st.record, st.frecord, rows, slots, arm_value, costs, converged, refit)
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

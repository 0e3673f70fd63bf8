"""The trace-driven replay of recurring-job groups as a resumable state machine.

Each *unit* (one job group under one setting) replays either a sequentially
recurring job (``MODE_SEQUENTIAL``, the reference's ``simulate_one_job``) or
a group of timed submissions with concurrency (``MODE_GROUP``, the
reference's ``simulate_one_alibaba_group``). :func:`advance` walks a list of
ready units and runs each one until it needs a decision from an optimizer:

* ``NEED_BSO``: the batch-size optimizer must predict the unit's next batch
  size (after the observations the unit queued so far are applied);
* ``NEED_PL``: a concurrent launch with the best known batch size needs that
  batch size's power limit, which the unit has not seen yet.

The driver (``banditfleet.replay.engine``) applies the queued observations
with the optimizers' batch APIs, answers every waiting unit at once, writes
``dec_arm``/``dec_pl``/``dec_prof`` and calls :func:`advance` again. A unit
also stops, resumably, when the observation queue or the history buffer is
full; :func:`advance` then returns the index of that unit in the ready list.

Static trace data lives in a :class:`ReplayTables` tuple (arms = batch sizes
of a workload, cells = (arm, power limit) pairs in descending power-limit
order, paths = the training paths of a cell in trace order), per-unit inputs
in :class:`ReplayUnits`, the mutable state in :class:`ReplayState` and the
outputs in :class:`ReplayOut`. Arm indices are global (into ``arm_bs``).

Float expressions keep the reference's operation order so that energies,
times and costs are bit-identical to ``zeus._legacy.simulate``:
``cost = eta*E + ((1-eta)*max_power)*T``, the epoch cost
``eta*epe + ((1-eta)*max_pl)*tpe``, Python's float floor division for
``cost_ub // cost_per_epoch`` (:func:`py_floordiv`) and Python's ``min``.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .distributions import bounded_uint64_s

__all__ = [
    "ReplayTables",
    "ReplayUnits",
    "ReplayState",
    "ReplayOut",
    "MODE_SEQUENTIAL",
    "MODE_GROUP",
    "STATUS_READY",
    "STATUS_WAIT",
    "STATUS_DONE",
    "STATUS_ERROR",
    "NEED_BSO",
    "NEED_PL",
    "ERR_NONE",
    "ERR_DEFAULT_FAILED",
    "ERR_TRIES",
    "ERR_NOT_PROFILED",
    "ERR_NO_PATHS",
    "ERR_UNKNOWN_PL",
    "ERR_RETRY_LIMIT",
    "ERR_EXHAUSTED",
    "ERR_UNKNOWN_BS",
    "MAX_TRIES",
    "advance",
    "py_floordiv",
    "run_job_s",
    "arms_of_values",
    "profile_requests",
]

_JIT = dict(cache=True, nogil=True, error_model="numpy")

MODE_SEQUENTIAL = 0
MODE_GROUP = 1

STATUS_READY = 0
STATUS_WAIT = 1
STATUS_DONE = 2
STATUS_ERROR = 3

NEED_BSO = 1
NEED_PL = 2

ERR_NONE = 0
ERR_DEFAULT_FAILED = 1  # sequential: the first recurrence's run did not reach the target
ERR_TRIES = 2  # sequential: no run reached the target in MAX_TRIES tries
ERR_NOT_PROFILED = 3  # concurrent launch with a batch size never profiled
ERR_NO_PATHS = 4  # a (batch size, power limit) with no training path at the target metric
ERR_UNKNOWN_PL = 5  # the power-limit optimizer answered a limit the trace does not have
ERR_RETRY_LIMIT = 6  # group: more retries than the safety cap
ERR_EXHAUSTED = 7  # pruning left no batch size (set by the driver)
ERR_UNKNOWN_BS = 8  # the batch-size optimizer answered a batch size the trace does not have

MAX_TRIES = 20

# phases of the state machine
PH_SEQ_REC = 0
PH_SEQ_TRY = 1
PH_SEQ_RUN = 2
PH_GRP_SUB = 3
PH_GRP_REAP = 4
PH_GRP_LAUNCH = 5
PH_GRP_SUB_RUN = 6
PH_GRP_RETRY_RUN = 7
PH_END = 8


class ReplayTables(NamedTuple):
    """Static trace data of every workload (read-only for the kernels)."""

    arm_bs: np.ndarray  # int64 per arm: the batch size
    arm_cell_start: np.ndarray  # int64 per arm: first cell
    arm_cell_count: np.ndarray  # int64 per arm: cells (power limits), descending power limit
    arm_max_pl: np.ndarray  # float64 per arm: largest power limit at the target metric
    arm_mean_epe: np.ndarray  # float64 per arm: mean energy per epoch over all its rows (profiling epoch)
    arm_mean_tpe: np.ndarray  # float64 per arm: mean time per epoch over all its rows
    cell_pl: np.ndarray  # int64 per cell: the power limit
    cell_path_start: np.ndarray  # int64 per cell: first path
    cell_path_count: np.ndarray  # int64 per cell: number of paths
    cell_avg_power: np.ndarray  # float64 per cell: groupby-mean average power (profiling)
    cell_tpe: np.ndarray  # float64 per cell: groupby-mean time per epoch (profiling)
    path_target_epoch: np.ndarray  # float64 per path (NaN: never reached)
    path_epe: np.ndarray  # float64 per path: energy per epoch
    path_tpe: np.ndarray  # float64 per path: time per epoch
    wl_arm_start: np.ndarray  # int64 per workload: first arm
    wl_arm_count: np.ndarray  # int64 per workload
    wl_default_arm: np.ndarray  # int64 per workload: global arm of the default batch size
    wl_max_epochs: np.ndarray  # float64 per workload
    wl_max_power: np.ndarray  # float64 per workload: the trace's largest power limit


class ReplayUnits(NamedTuple):
    """Per-unit inputs (read-only for the kernels)."""

    wl: np.ndarray  # int64 workload
    mode: np.ndarray  # int64 MODE_*
    eta: np.ndarray  # float64 eta_knob
    beta: np.ndarray  # float64 beta_knob (inf: no early stopping)
    n_rec: np.ndarray  # int64 recurrences (sequential) or submissions (group)
    sub_start: np.ndarray  # int64 first submission (group)
    sub_t0: np.ndarray  # float64 per submission: start time
    sub_t1: np.ndarray  # float64 per submission: end time
    sub_ratio: np.ndarray  # float64 per submission: runtime ratio
    run_start: np.ndarray  # int64 first running-job slot (capacity n_rec for groups)
    plc_start: np.ndarray  # int64 first power-limit cache slot (one per arm of the workload)
    retry_cap: np.ndarray  # int64 group: most retries before ERR_RETRY_LIMIT


class ReplayState(NamedTuple):
    """Mutable per-unit state; the running jobs of a group are a list in launch order."""

    phase: np.ndarray  # int64
    status: np.ndarray  # int64 STATUS_*
    need: np.ndarray  # int64 NEED_* while waiting
    error: np.ndarray  # int64 ERR_*
    rec: np.ndarray  # int64 recurrence / next submission
    tries: np.ndarray  # int64 tries in this recurrence (sequential)
    retries: np.ndarray  # int64 retries so far (group)
    runs: np.ndarray  # int64 runs simulated so far
    cost_acc: np.ndarray  # float64 cost of this recurrence's tries (sequential)
    min_cost: np.ndarray  # float64 lowest cost that reached the target (inf: none)
    best_arm: np.ndarray  # int64 arm of min_cost (group), starts at the default
    now: np.ndarray  # float64 the group's clock
    dec_arm: np.ndarray  # int64 the decided arm
    dec_pl: np.ndarray  # int64 the decided power limit
    dec_prof: np.ndarray  # int64 1 when this run profiles power in its first epoch
    par_start: np.ndarray  # float64 retry context: the failed run's start
    par_end: np.ndarray  # float64 its end
    par_ratio: np.ndarray  # float64 its runtime ratio
    par_sub: np.ndarray  # int64 its submission
    run_n: np.ndarray  # int64 running jobs
    r_start: np.ndarray  # float64 per running slot
    r_end: np.ndarray
    r_ratio: np.ndarray
    r_arm: np.ndarray  # int64
    r_pl: np.ndarray  # int64
    r_reached: np.ndarray  # uint8
    r_time: np.ndarray  # float64 (unscaled)
    r_energy: np.ndarray  # float64 (unscaled)
    r_cost: np.ndarray  # float64
    r_sub: np.ndarray  # int64 submission the run belongs to
    pl_cache: np.ndarray  # int64 per (unit, arm): the power limit the optimizer gave (-1: not asked)
    streams_hi: np.ndarray  # the simulator's stream per unit (Streams fields)
    streams_lo: np.ndarray
    streams_inc_hi: np.ndarray
    streams_inc_lo: np.ndarray
    streams_has32: np.ndarray
    streams_u32: np.ndarray


class ReplayOut(NamedTuple):
    """Queues the driver drains: observations for the batch-size optimizer and history."""

    q_unit: np.ndarray  # int64
    q_arm: np.ndarray  # int64
    q_cost: np.ndarray  # float64
    q_reached: np.ndarray  # uint8
    q_n: np.ndarray  # int64 (1,)
    h_unit: np.ndarray  # int64
    h_sub: np.ndarray  # int64 recurrence (sequential) or submission (group)
    h_bs: np.ndarray  # int64 batch size
    h_pl: np.ndarray  # int64
    h_energy: np.ndarray  # float64
    h_time: np.ndarray  # float64
    h_reached: np.ndarray  # uint8
    h_n: np.ndarray  # int64 (1,)
    need_unit: np.ndarray  # int64 units that wait for a decision, in this call
    need_n: np.ndarray  # int64 (1,)


@numba.njit(**_JIT)
def py_floordiv(vx, wx):
    """``vx // wx`` for floats exactly as CPython computes it (``float_floor_div``)."""
    mod = np.fmod(vx, wx)
    div = (vx - mod) / wx
    if mod != 0.0:
        if (wx < 0.0) != (mod < 0.0):
            mod += wx
            div -= 1.0
    if div != 0.0:
        floordiv = np.floor(div)
        if div - floordiv > 0.5:
            floordiv += 1.0
    else:
        floordiv = np.copysign(0.0, vx / wx)
    return floordiv


@numba.njit(**_JIT)
def _find_cell(t, arm, pl):
    start = t.arm_cell_start[arm]
    for c in range(start, start + t.arm_cell_count[arm]):
        if t.cell_pl[c] == pl:
            return c
    return -1


@numba.njit(**_JIT)
def run_job_s(st, t, wl, arm, pl, profiled, cost_ub, eta):
    """One simulated run: ``(state, energy, time, reached, error)``, as the reference's ``_run_job``.

    Draws one training path of the (arm, power limit) cell uniformly (one
    bounded draw over ``[0, n-1]``, as ``DataFrame.sample(n=1)`` with a
    Generator), bounds the epochs by ``cost_ub`` and the job's max epochs,
    and charges the profiling epoch at the arm's mean when ``profiled``.
    """
    c = _find_cell(t, arm, pl)
    if c < 0:
        return st, 0.0, 0.0, False, ERR_UNKNOWN_PL
    n = t.cell_path_count[c]
    if n == 0:
        return st, 0.0, 0.0, False, ERR_NO_PATHS
    st, k = bounded_uint64_s(st, np.uint64(n - 1))
    p = t.cell_path_start[c] + np.int64(k)
    epe = t.path_epe[p]
    tpe = t.path_tpe[p]
    job_max = t.wl_max_epochs[wl]
    if cost_ub == np.inf:
        max_epochs = job_max
    else:
        cost_per_epoch = eta * epe + (1.0 - eta) * t.arm_max_pl[arm] * tpe
        q = py_floordiv(cost_ub, cost_per_epoch)
        # Python's min(q, job_max): q unless job_max < q
        max_epochs = job_max if job_max < q else q
    if max_epochs == 0.0:
        return st, 0.0, 0.0, False, ERR_NONE
    te = t.path_target_epoch[p]
    reached = (not np.isnan(te)) and te <= max_epochs
    num = te if reached else max_epochs
    if profiled:
        energy = t.arm_mean_epe[arm] + epe * (num - 1.0)
        time = t.arm_mean_tpe[arm] + tpe * (num - 1.0)
    else:
        energy = epe * num
        time = tpe * num
    return st, energy, time, reached, ERR_NONE


@numba.njit(**_JIT)
def _zeus_cost(energy, time, eta, max_power):
    return eta * energy + (1.0 - eta) * max_power * time


@numba.njit(**_JIT)
def _load(s, u):
    return (s.streams_hi[u], s.streams_lo[u], s.streams_inc_hi[u], s.streams_inc_lo[u], s.streams_has32[u], s.streams_u32[u])


@numba.njit(**_JIT)
def _store(s, u, st):
    s.streams_hi[u] = st[0]
    s.streams_lo[u] = st[1]
    s.streams_inc_hi[u] = st[2]
    s.streams_inc_lo[u] = st[3]
    s.streams_has32[u] = st[4]
    s.streams_u32[u] = st[5]


@numba.njit(**_JIT)
def _run(t, un, s, u, arm, pl, profiled, cost_ub):
    st = _load(s, u)
    st, energy, time, reached, err = run_job_s(st, t, un.wl[u], arm, pl, profiled, cost_ub, un.eta[u])
    _store(s, u, st)
    s.runs[u] += 1
    return energy, time, reached, err


@numba.njit(**_JIT)
def _push_obs(o, u, arm, cost, reached):
    i = o.q_n[0]
    o.q_unit[i] = u
    o.q_arm[i] = arm
    o.q_cost[i] = cost
    o.q_reached[i] = 1 if reached else 0
    o.q_n[0] = i + 1


@numba.njit(**_JIT)
def _push_hist(o, u, sub, bs, pl, energy, time, reached):
    i = o.h_n[0]
    o.h_unit[i] = u
    o.h_sub[i] = sub
    o.h_bs[i] = bs
    o.h_pl[i] = pl
    o.h_energy[i] = energy
    o.h_time[i] = time
    o.h_reached[i] = 1 if reached else 0
    o.h_n[0] = i + 1


@numba.njit(**_JIT)
def _room(o):
    return o.q_n[0] < o.q_unit.shape[0] and o.h_n[0] < o.h_unit.shape[0]


@numba.njit(**_JIT)
def _wait(s, o, u, need):
    s.status[u] = STATUS_WAIT
    s.need[u] = need
    i = o.need_n[0]
    o.need_unit[i] = u
    o.need_n[0] = i + 1


@numba.njit(**_JIT)
def _fail(s, u, code):
    s.status[u] = STATUS_ERROR
    s.error[u] = code
    s.phase[u] = PH_END


@numba.njit(**_JIT)
def _decide(t, un, s, o, u, next_phase):
    """Set up a launch: concurrent ones use the best known arm, others wait for the BSO.

    Returns True when the unit can go on at once (a cached power limit).
    """
    s.phase[u] = next_phase
    if s.run_n[u] > 0:
        arm = s.best_arm[u]
        s.dec_arm[u] = arm
        s.dec_prof[u] = 0
        pl = s.pl_cache[un.plc_start[u] + arm - t.wl_arm_start[un.wl[u]]]
        if pl >= 0:
            s.dec_pl[u] = pl
            return True
        _wait(s, o, u, NEED_PL)
        return False
    _wait(s, o, u, NEED_BSO)
    return False


@numba.njit(**_JIT)
def _append_running(s, u, base, start, end, ratio, arm, pl, reached, time, energy, cost, sub):
    k = base + s.run_n[u]
    s.r_start[k] = start
    s.r_end[k] = end
    s.r_ratio[k] = ratio
    s.r_arm[k] = arm
    s.r_pl[k] = pl
    s.r_reached[k] = 1 if reached else 0
    s.r_time[k] = time
    s.r_energy[k] = energy
    s.r_cost[k] = cost
    s.r_sub[k] = sub
    s.run_n[u] += 1


@numba.njit(**_JIT)
def _advance_unit(t, un, s, o, u):
    """Run unit ``u`` until it waits, ends or the buffers are full (then False)."""
    wl = un.wl[u]
    max_power = t.wl_max_power[wl]
    eta = un.eta[u]
    beta = un.beta[u]
    while True:
        ph = s.phase[u]
        # ------------------------------------------------------ sequential
        if ph == PH_SEQ_REC:
            if s.rec[u] >= un.n_rec[u]:
                s.phase[u] = PH_END
                s.status[u] = STATUS_DONE
                return True
            s.cost_acc[u] = 0.0
            s.tries[u] = 0
            s.phase[u] = PH_SEQ_TRY
        elif ph == PH_SEQ_TRY:
            s.tries[u] += 1
            if s.tries[u] > MAX_TRIES:
                _fail(s, u, ERR_TRIES)
                return True
            s.phase[u] = PH_SEQ_RUN
            _wait(s, o, u, NEED_BSO)
            return True
        elif ph == PH_SEQ_RUN:
            if not _room(o):
                return False
            arm = s.dec_arm[u]
            pl = s.dec_pl[u]
            min_cost = s.min_cost[u]
            energy, time, reached, err = _run(t, un, s, u, arm, pl, s.dec_prof[u] != 0, beta * min_cost)
            if err != ERR_NONE:
                _fail(s, u, err)
                return True
            if energy == 0.0 and time == 0.0 and not reached:
                # never started: one epoch already exceeds the bound
                _push_obs(o, u, arm, 100.0 * beta * min_cost, False)
                s.phase[u] = PH_SEQ_TRY
                continue
            cost = _zeus_cost(energy, time, eta, max_power)
            s.cost_acc[u] += cost
            _push_obs(o, u, arm, cost, reached)
            _push_hist(o, u, s.rec[u], t.arm_bs[arm], pl, energy, time, reached)
            if reached:
                if min_cost > s.cost_acc[u]:
                    s.min_cost[u] = s.cost_acc[u]
                s.rec[u] += 1
                s.phase[u] = PH_SEQ_REC
            elif s.rec[u] == 0:
                _fail(s, u, ERR_DEFAULT_FAILED)
                return True
            else:
                s.phase[u] = PH_SEQ_TRY
        # ----------------------------------------------------------- group
        elif ph == PH_GRP_SUB:
            if s.rec[u] < un.n_rec[u]:
                s.now[u] = un.sub_t0[un.sub_start[u] + s.rec[u]]
            else:
                s.now[u] = np.inf
            s.phase[u] = PH_GRP_REAP
        elif ph == PH_GRP_REAP:
            base = un.run_start[u]
            n = s.run_n[u]
            now = s.now[u]
            best = -1
            for k in range(n):
                e = s.r_end[base + k]
                if e <= now and (best < 0 or e < s.r_end[base + best]):
                    best = k
            if best < 0:
                if s.rec[u] < un.n_rec[u]:
                    s.phase[u] = PH_GRP_LAUNCH
                    continue
                s.phase[u] = PH_END
                s.status[u] = STATUS_DONE
                return True
            if not _room(o):
                return False
            j = base + best
            start = s.r_start[j]
            end = s.r_end[j]
            ratio = s.r_ratio[j]
            arm = s.r_arm[j]
            pl = s.r_pl[j]
            reached = s.r_reached[j] != 0
            time = s.r_time[j]
            energy = s.r_energy[j]
            cost = s.r_cost[j]
            sub = s.r_sub[j]
            for k in range(j, base + n - 1):
                s.r_start[k] = s.r_start[k + 1]
                s.r_end[k] = s.r_end[k + 1]
                s.r_ratio[k] = s.r_ratio[k + 1]
                s.r_arm[k] = s.r_arm[k + 1]
                s.r_pl[k] = s.r_pl[k + 1]
                s.r_reached[k] = s.r_reached[k + 1]
                s.r_time[k] = s.r_time[k + 1]
                s.r_energy[k] = s.r_energy[k + 1]
                s.r_cost[k] = s.r_cost[k + 1]
                s.r_sub[k] = s.r_sub[k + 1]
            s.run_n[u] = n - 1
            _push_obs(o, u, arm, cost, reached)
            if energy != 0.0 or time != 0.0 or reached:
                _push_hist(o, u, sub, t.arm_bs[arm], pl, energy * ratio, time * ratio, reached)
            if reached:
                if s.min_cost[u] > cost:
                    s.min_cost[u] = cost
                    s.best_arm[u] = arm
                continue
            s.retries[u] += 1
            if s.retries[u] > un.retry_cap[u]:
                _fail(s, u, ERR_RETRY_LIMIT)
                return True
            s.par_start[u] = start
            s.par_end[u] = end
            s.par_ratio[u] = ratio
            s.par_sub[u] = sub
            if not _decide(t, un, s, o, u, PH_GRP_RETRY_RUN):
                return True
        elif ph == PH_GRP_LAUNCH:
            if not _decide(t, un, s, o, u, PH_GRP_SUB_RUN):
                return True
        elif ph == PH_GRP_SUB_RUN or ph == PH_GRP_RETRY_RUN:
            arm = s.dec_arm[u]
            pl = s.dec_pl[u]
            energy, time, reached, err = _run(t, un, s, u, arm, pl, s.dec_prof[u] != 0, beta * s.min_cost[u])
            if err != ERR_NONE:
                _fail(s, u, err)
                return True
            cost = _zeus_cost(energy, time, eta, max_power)
            if ph == PH_GRP_SUB_RUN:
                i = un.sub_start[u] + s.rec[u]
                _append_running(
                    s, u, un.run_start[u], un.sub_t0[i], un.sub_t1[i], un.sub_ratio[i],
                    arm, pl, reached, time, energy, cost, s.rec[u],
                )
                s.rec[u] += 1
                s.phase[u] = PH_GRP_SUB
            else:
                end = s.par_end[u]
                _append_running(
                    s, u, un.run_start[u], end, end + (end - s.par_start[u]), s.par_ratio[u],
                    arm, pl, reached, time, energy, cost, s.par_sub[u],
                )
                s.phase[u] = PH_GRP_REAP
        else:
            return True


@numba.njit(**_JIT)
def advance(ready, t, un, s, o):
    """Advance every unit of ``ready`` (each READY) until it waits or ends.

    Units that wait are listed in ``o.need_unit``. Returns ``len(ready)``, or
    the index of the first unit that could not finish its step because the
    observation queue or the history buffer is full (it and the units after
    it are still READY and resume where they stopped).
    """
    for i in range(ready.shape[0]):
        u = ready[i]
        if not _advance_unit(t, un, s, o, u):
            return i
    return ready.shape[0]


@numba.njit(**_JIT)
def arms_of_values(units, values, wl_of_unit, t, out):
    """Global arm of each (unit, batch size); -1 when the workload has no such batch size."""
    for i in range(units.shape[0]):
        w = wl_of_unit[units[i]]
        start = t.wl_arm_start[w]
        out[i] = -1
        for a in range(start, start + t.wl_arm_count[w]):
            if t.arm_bs[a] == values[i]:
                out[i] = a
                break


@numba.njit(**_JIT)
def profile_requests(units, arms, eta, t, out_pos, out_pl, out_cost):
    """The power-limit observations of JIT profiling, in the reference's order.

    For unit ``units[i]`` at ``arms[i]``: one observation per power limit of
    the arm, from the highest to the lowest, costing the epoch cost
    ``(eta*avg_power + (1-eta)*max_pl) * time_per_epoch`` (the reference's
    Equation 7 over the groupby means). ``out_pos[i]`` .. ``out_pos[i+1]``
    are request ``i``'s observations; returns their total.
    """
    n = 0
    for i in range(units.shape[0]):
        a = arms[i]
        e = eta[units[i]]
        out_pos[i] = n
        start = t.arm_cell_start[a]
        for c in range(start, start + t.arm_cell_count[a]):
            out_pl[n] = t.cell_pl[c]
            out_cost[n] = (e * t.cell_avg_power[c] + (1.0 - e) * t.arm_max_pl[a]) * t.cell_tpe[c]
            n += 1
    out_pos[units.shape[0]] = n
    return n

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

from enum import IntEnum
from typing import NamedTuple

import numba
import numpy as np

from .distributions import bounded_uint64_s
from .fleet import find_slots, predict_rows, pruning_observe_rows, pruning_predict_rows
from .pruning import ERR_NONE as PRUNING_OK, STAGE, STAGE_PRUNING, exhausted_rows

__all__ = [
    "ReplayCode",
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
    "drive_pruning",
    "DRIVE_DONE",
    "DRIVE_POOL",
    "DRIVE_DRAIN",
    "DRIVE_YIELD",
    "DRIVE_OBSERVE_ERROR",
    "DRIVE_PREDICT_ERROR",
]

from ._config import JIT as _JIT

MODE_SEQUENTIAL = 0
MODE_GROUP = 1

STATUS_READY = 0
STATUS_WAIT = 1
STATUS_DONE = 2
STATUS_ERROR = 3

NEED_BSO = 1
NEED_PL = 2



class ReplayCode(IntEnum):
    """Why a replay unit stopped (``ReplayOut.error``): the family's one namespace.

    Python turns them into errors in one place, :mod:`banditfleet._codes`; the
    kernels use the plain-int aliases ``ERR_*`` below.
    """

    NONE = 0
    DEFAULT_FAILED = 1  # sequential: the first recurrence's run did not reach the target
    TRIES = 2  # sequential: no run reached the target in MAX_TRIES tries
    NOT_PROFILED = 3  # concurrent launch with a batch size never profiled
    NO_PATHS = 4  # a (batch size, power limit) with no training path at the target metric
    UNKNOWN_PL = 5  # the power-limit optimizer answered a limit the trace does not have
    RETRY_LIMIT = 6  # group: more retries than the safety cap
    EXHAUSTED = 7  # pruning left no batch size (set by the driver)
    UNKNOWN_BS = 8  # the batch-size optimizer answered a batch size the trace does not have


ERR_NONE = int(ReplayCode.NONE)
ERR_DEFAULT_FAILED = int(ReplayCode.DEFAULT_FAILED)
ERR_TRIES = int(ReplayCode.TRIES)
ERR_NOT_PROFILED = int(ReplayCode.NOT_PROFILED)
ERR_NO_PATHS = int(ReplayCode.NO_PATHS)
ERR_UNKNOWN_PL = int(ReplayCode.UNKNOWN_PL)
ERR_RETRY_LIMIT = int(ReplayCode.RETRY_LIMIT)
ERR_EXHAUSTED = int(ReplayCode.EXHAUSTED)
ERR_UNKNOWN_BS = int(ReplayCode.UNKNOWN_BS)

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
PH_GRP_LAUNCH_RETRY = 9


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
def run_job_s(st, t, wl, arm, pl, profiled, cost_ub, eta):
    """One simulated run: ``(state, energy, time, reached, error)``, as the reference's ``_run_job``.

    Draws one training path of the (arm, power limit) cell uniformly (one
    bounded draw over ``[0, n-1]``, as ``DataFrame.sample(n=1)`` with a
    Generator), bounds the epochs by ``cost_ub`` and the job's max epochs,
    and charges the profiling epoch at the arm's mean when ``profiled``.
    """
    return _run_job_arrays(
        st, t.arm_cell_start, t.arm_cell_count, t.cell_pl, t.cell_path_start, t.cell_path_count,
        t.path_target_epoch, t.path_epe, t.path_tpe, t.arm_max_pl, t.arm_mean_epe, t.arm_mean_tpe,
        t.wl_max_epochs[wl], arm, pl, profiled, cost_ub, eta,
    )


@numba.njit(**_JIT)
def _run_job_arrays(
    st, arm_cell_start, arm_cell_count, cell_pl, cell_path_start, cell_path_count,
    path_target_epoch, path_epe, path_tpe, arm_max_pl, arm_mean_epe, arm_mean_tpe,
    job_max, arm, pl, profiled, cost_ub, eta,
):
    c = -1
    start = arm_cell_start[arm]
    for k in range(start, start + arm_cell_count[arm]):
        if cell_pl[k] == pl:
            c = k
            break
    if c < 0:
        return st, 0.0, 0.0, False, ERR_UNKNOWN_PL
    n = cell_path_count[c]
    if n == 0:
        return st, 0.0, 0.0, False, ERR_NO_PATHS
    st, k = bounded_uint64_s(st, np.uint64(n - 1))
    p = cell_path_start[c] + np.int64(k)
    epe = path_epe[p]
    tpe = path_tpe[p]
    if cost_ub == np.inf:
        max_epochs = job_max
    else:
        cost_per_epoch = eta * epe + (1.0 - eta) * arm_max_pl[arm] * tpe
        q = py_floordiv(cost_ub, cost_per_epoch)
        # Python's min(q, job_max): q unless job_max < q
        max_epochs = job_max if job_max < q else q
    if max_epochs == 0.0:
        return st, 0.0, 0.0, False, ERR_NONE
    te = path_target_epoch[p]
    reached = (not np.isnan(te)) and te <= max_epochs
    num = te if reached else max_epochs
    if profiled:
        energy = arm_mean_epe[arm] + epe * (num - 1.0)
        time = arm_mean_tpe[arm] + tpe * (num - 1.0)
    else:
        energy = epe * num
        time = tpe * num
    return st, energy, time, reached, ERR_NONE


@numba.njit(**_JIT)
def advance(ready, t, un, s, o):
    """Advance every unit of ``ready`` (each READY) until it waits or ends.

    Units that wait are listed in ``o.need_unit``. Returns ``len(ready)``, or
    the index of the first unit that could not finish its step because the
    observation queue or the history buffer is full (it and the units after
    it are still READY and resume where they stopped).

    Every array is taken out of its tuple once, here: attribute access on a
    tuple inside the loop would cost reference counting on every event.
    """
    # tables
    arm_bs = t.arm_bs
    arm_cell_start = t.arm_cell_start
    arm_cell_count = t.arm_cell_count
    arm_max_pl = t.arm_max_pl
    arm_mean_epe = t.arm_mean_epe
    arm_mean_tpe = t.arm_mean_tpe
    cell_pl = t.cell_pl
    cell_path_start = t.cell_path_start
    cell_path_count = t.cell_path_count
    path_target_epoch = t.path_target_epoch
    path_epe = t.path_epe
    path_tpe = t.path_tpe
    wl_arm_start = t.wl_arm_start
    wl_max_epochs = t.wl_max_epochs
    wl_max_power = t.wl_max_power
    # units
    u_wl = un.wl
    u_eta = un.eta
    u_beta = un.beta
    u_n_rec = un.n_rec
    u_sub_start = un.sub_start
    sub_t0 = un.sub_t0
    sub_t1 = un.sub_t1
    sub_ratio = un.sub_ratio
    u_run_start = un.run_start
    u_plc_start = un.plc_start
    u_retry_cap = un.retry_cap
    # state
    phase = s.phase
    status = s.status
    need = s.need
    error = s.error
    rec = s.rec
    tries = s.tries
    retries = s.retries
    runs = s.runs
    cost_acc = s.cost_acc
    min_cost = s.min_cost
    best_arm = s.best_arm
    now = s.now
    dec_arm = s.dec_arm
    dec_pl = s.dec_pl
    dec_prof = s.dec_prof
    par_start = s.par_start
    par_end = s.par_end
    par_ratio = s.par_ratio
    par_sub = s.par_sub
    run_n = s.run_n
    r_start = s.r_start
    r_end = s.r_end
    r_ratio = s.r_ratio
    r_arm = s.r_arm
    r_pl = s.r_pl
    r_reached = s.r_reached
    r_time = s.r_time
    r_energy = s.r_energy
    r_cost = s.r_cost
    r_sub = s.r_sub
    pl_cache = s.pl_cache
    s_hi = s.streams_hi
    s_lo = s.streams_lo
    s_inc_hi = s.streams_inc_hi
    s_inc_lo = s.streams_inc_lo
    s_has32 = s.streams_has32
    s_u32 = s.streams_u32
    # outputs
    q_unit = o.q_unit
    q_arm = o.q_arm
    q_cost = o.q_cost
    q_reached = o.q_reached
    h_unit = o.h_unit
    h_sub = o.h_sub
    h_bs = o.h_bs
    h_pl = o.h_pl
    h_energy = o.h_energy
    h_time = o.h_time
    h_reached = o.h_reached
    need_unit = o.need_unit
    qn = o.q_n[0]
    hn = o.h_n[0]
    nn = o.need_n[0]
    q_cap = q_unit.shape[0]
    h_cap = h_unit.shape[0]

    stopped = ready.shape[0]
    for i in range(ready.shape[0]):
        u = ready[i]
        wl = u_wl[u]
        max_power = wl_max_power[wl]
        job_max = wl_max_epochs[wl]
        eta = u_eta[u]
        beta = u_beta[u]
        base = u_run_start[u]
        paused = False
        while True:
            ph = phase[u]
            # -------------------------------------------------- sequential
            if ph == PH_SEQ_REC:
                if rec[u] >= u_n_rec[u]:
                    phase[u] = PH_END
                    status[u] = STATUS_DONE
                    break
                cost_acc[u] = 0.0
                tries[u] = 0
                phase[u] = PH_SEQ_TRY
            elif ph == PH_SEQ_TRY:
                tries[u] += 1
                if tries[u] > MAX_TRIES:
                    status[u] = STATUS_ERROR
                    error[u] = ERR_TRIES
                    phase[u] = PH_END
                    break
                phase[u] = PH_SEQ_RUN
                status[u] = STATUS_WAIT
                need[u] = NEED_BSO
                need_unit[nn] = u
                nn += 1
                break
            elif ph == PH_SEQ_RUN:
                if qn >= q_cap or hn >= h_cap:
                    paused = True
                    break
                arm = dec_arm[u]
                pl = dec_pl[u]
                mc = min_cost[u]
                st = (s_hi[u], s_lo[u], s_inc_hi[u], s_inc_lo[u], s_has32[u], s_u32[u])
                st, energy, time, reached, err = _run_job_arrays(
                    st, arm_cell_start, arm_cell_count, cell_pl, cell_path_start, cell_path_count,
                    path_target_epoch, path_epe, path_tpe, arm_max_pl, arm_mean_epe, arm_mean_tpe,
                    job_max, arm, pl, dec_prof[u] != 0, beta * mc, eta,
                )
                s_hi[u], s_lo[u], s_inc_hi[u], s_inc_lo[u], s_has32[u], s_u32[u] = st
                runs[u] += 1
                if err != ERR_NONE:
                    status[u] = STATUS_ERROR
                    error[u] = err
                    phase[u] = PH_END
                    break
                if energy == 0.0 and time == 0.0 and not reached:
                    # never started: one epoch already exceeds the bound
                    q_unit[qn] = u
                    q_arm[qn] = arm
                    q_cost[qn] = 100.0 * beta * mc
                    q_reached[qn] = 0
                    qn += 1
                    phase[u] = PH_SEQ_TRY
                    continue
                cost = eta * energy + (1.0 - eta) * max_power * time
                cost_acc[u] += cost
                q_unit[qn] = u
                q_arm[qn] = arm
                q_cost[qn] = cost
                q_reached[qn] = 1 if reached else 0
                qn += 1
                h_unit[hn] = u
                h_sub[hn] = rec[u]
                h_bs[hn] = arm_bs[arm]
                h_pl[hn] = pl
                h_energy[hn] = energy
                h_time[hn] = time
                h_reached[hn] = 1 if reached else 0
                hn += 1
                if reached:
                    if mc > cost_acc[u]:
                        min_cost[u] = cost_acc[u]
                    rec[u] += 1
                    phase[u] = PH_SEQ_REC
                elif rec[u] == 0:
                    status[u] = STATUS_ERROR
                    error[u] = ERR_DEFAULT_FAILED
                    phase[u] = PH_END
                    break
                else:
                    phase[u] = PH_SEQ_TRY
            # ------------------------------------------------------- group
            elif ph == PH_GRP_SUB:
                if rec[u] < u_n_rec[u]:
                    now[u] = sub_t0[u_sub_start[u] + rec[u]]
                else:
                    now[u] = np.inf
                phase[u] = PH_GRP_REAP
            elif ph == PH_GRP_REAP:
                n = run_n[u]
                t_now = now[u]
                best = -1
                best_end = 0.0
                for k in range(n):
                    e = r_end[base + k]
                    if e <= t_now and (best < 0 or e < best_end):
                        best = k
                        best_end = e
                if best < 0:
                    if rec[u] < u_n_rec[u]:
                        phase[u] = PH_GRP_LAUNCH
                        continue
                    phase[u] = PH_END
                    status[u] = STATUS_DONE
                    break
                if qn >= q_cap or hn >= h_cap:
                    paused = True
                    break
                j = base + best
                start = r_start[j]
                end = r_end[j]
                ratio = r_ratio[j]
                arm = r_arm[j]
                pl = r_pl[j]
                reached = r_reached[j] != 0
                time = r_time[j]
                energy = r_energy[j]
                cost = r_cost[j]
                sub = r_sub[j]
                for k in range(j, base + n - 1):
                    r_start[k] = r_start[k + 1]
                    r_end[k] = r_end[k + 1]
                    r_ratio[k] = r_ratio[k + 1]
                    r_arm[k] = r_arm[k + 1]
                    r_pl[k] = r_pl[k + 1]
                    r_reached[k] = r_reached[k + 1]
                    r_time[k] = r_time[k + 1]
                    r_energy[k] = r_energy[k + 1]
                    r_cost[k] = r_cost[k + 1]
                    r_sub[k] = r_sub[k + 1]
                n -= 1
                run_n[u] = n
                q_unit[qn] = u
                q_arm[qn] = arm
                q_cost[qn] = cost
                q_reached[qn] = 1 if reached else 0
                qn += 1
                if energy != 0.0 or time != 0.0 or reached:
                    h_unit[hn] = u
                    h_sub[hn] = sub
                    h_bs[hn] = arm_bs[arm]
                    h_pl[hn] = pl
                    h_energy[hn] = energy * ratio
                    h_time[hn] = time * ratio
                    h_reached[hn] = 1 if reached else 0
                    hn += 1
                if reached:
                    if min_cost[u] > cost:
                        min_cost[u] = cost
                        best_arm[u] = arm
                    continue
                retries[u] += 1
                if retries[u] > u_retry_cap[u]:
                    status[u] = STATUS_ERROR
                    error[u] = ERR_RETRY_LIMIT
                    phase[u] = PH_END
                    break
                par_start[u] = start
                par_end[u] = end
                par_ratio[u] = ratio
                par_sub[u] = sub
                phase[u] = PH_GRP_LAUNCH_RETRY
            elif ph == PH_GRP_LAUNCH or ph == PH_GRP_LAUNCH_RETRY:
                # Concurrent launches use the best known arm; others wait for the BSO.
                phase[u] = PH_GRP_SUB_RUN if ph == PH_GRP_LAUNCH else PH_GRP_RETRY_RUN
                if run_n[u] > 0:
                    arm = best_arm[u]
                    dec_arm[u] = arm
                    dec_prof[u] = 0
                    pl = pl_cache[u_plc_start[u] + arm - wl_arm_start[wl]]
                    if pl >= 0:
                        dec_pl[u] = pl
                        continue
                    need[u] = NEED_PL
                else:
                    need[u] = NEED_BSO
                status[u] = STATUS_WAIT
                need_unit[nn] = u
                nn += 1
                break
            elif ph == PH_GRP_SUB_RUN or ph == PH_GRP_RETRY_RUN:
                arm = dec_arm[u]
                pl = dec_pl[u]
                st = (s_hi[u], s_lo[u], s_inc_hi[u], s_inc_lo[u], s_has32[u], s_u32[u])
                st, energy, time, reached, err = _run_job_arrays(
                    st, arm_cell_start, arm_cell_count, cell_pl, cell_path_start, cell_path_count,
                    path_target_epoch, path_epe, path_tpe, arm_max_pl, arm_mean_epe, arm_mean_tpe,
                    job_max, arm, pl, dec_prof[u] != 0, beta * min_cost[u], eta,
                )
                s_hi[u], s_lo[u], s_inc_hi[u], s_inc_lo[u], s_has32[u], s_u32[u] = st
                runs[u] += 1
                if err != ERR_NONE:
                    status[u] = STATUS_ERROR
                    error[u] = err
                    phase[u] = PH_END
                    break
                cost = eta * energy + (1.0 - eta) * max_power * time
                k = base + run_n[u]
                if ph == PH_GRP_SUB_RUN:
                    si = u_sub_start[u] + rec[u]
                    r_start[k] = sub_t0[si]
                    r_end[k] = sub_t1[si]
                    r_ratio[k] = sub_ratio[si]
                    r_sub[k] = rec[u]
                    rec[u] += 1
                    phase[u] = PH_GRP_SUB
                else:
                    end = par_end[u]
                    r_start[k] = end
                    r_end[k] = end + (end - par_start[u])
                    r_ratio[k] = par_ratio[u]
                    r_sub[k] = par_sub[u]
                    phase[u] = PH_GRP_REAP
                r_arm[k] = arm
                r_pl[k] = pl
                r_reached[k] = 1 if reached else 0
                r_time[k] = time
                r_energy[k] = energy
                r_cost[k] = cost
                run_n[u] += 1
            else:
                break
        if paused:
            stopped = i
            break
    o.q_n[0] = qn
    o.h_n[0] = hn
    o.need_n[0] = nn
    return stopped


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


# ------------------------------------------------------------ compiled driver
# What drive_pruning returns (ctl[...] says more).
DRIVE_DONE = 0  # every unit ended
DRIVE_POOL = 1  # the history pool needs room for ctl[CTL_ARG] more chunks: grow it, rebuild the handle, call again
DRIVE_DRAIN = 2  # the history buffer is half full: copy out o.h_*[:o.h_n[0]], set o.h_n[0] = 0, call again
DRIVE_YIELD = 3  # ctl[CTL_BUDGET] rounds done (progress): call again
DRIVE_OBSERVE_ERROR = 4  # the pending observations (o.q_*[:o.q_n[0]]) were refused (nothing changed)
DRIVE_PREDICT_ERROR = 5  # the predict of ctl[CTL_ARG] waiting units (units in work_i[:n]) was refused

# ctl fields
CTL_NEXT = 0  # units in the next ready list
CTL_WHICH = 1  # which row of ``ready`` is the next list
CTL_GENERATION = 2  # the optimizer's last validation generation (increased per call)
CTL_ROUNDS = 3  # decision rounds so far
CTL_BUDGET = 4  # rounds per call before DRIVE_YIELD (0: no limit)
CTL_ARG = 5  # detail of the last non-DONE return
CTL_POS = 6  # units of ``todo`` started so far
CTL_ACTIVE = 7  # most units in flight at once (0: all)


@numba.njit(**_JIT)
def _profile_best(arm, eta, arm_cell_start, arm_cell_count, arm_max_pl, cell_pl, cell_avg_power, cell_tpe):
    """JIT profiling of ``arm`` as the power-limit optimizer folds it in: the power limit of
    the cheapest epoch cost over its power limits, highest first (a later one replaces
    the best only when strictly cheaper, as ``power.observe_entries``); -1 without any."""
    c0 = arm_cell_start[arm]
    nc = arm_cell_count[arm]
    if nc == 0:
        return np.int64(-1)
    max_pl = arm_max_pl[arm]
    best_pl = cell_pl[c0]
    best = (eta * cell_avg_power[c0] + (1.0 - eta) * max_pl) * cell_tpe[c0]
    for c in range(c0 + 1, c0 + nc):
        cost = (eta * cell_avg_power[c] + (1.0 - eta) * max_pl) * cell_tpe[c]
        if best > cost:
            best = cost
            best_pl = cell_pl[c]
    return best_pl


@numba.njit(**_JIT)
def drive_pruning(t, un, s, o, h, bso_row, todo, ready, ctl, work_i, work_j, work_k, work_u8, concurrency, unbounded):
    """The fleet driver's rounds (``banditfleet.replay.engine``) for one pruning
    batch-size optimizer (its fleet handle ``h``, the unit's row ``bso_row[u]``) with
    JIT power limits, in one compiled loop:

    1. the queued observations go to :func:`~.fleet.pruning_observe_rows` in queue order;
    2. the units waiting for a batch size: those whose pruning is exhausted
       (:func:`~.pruning.exhausted_rows`) stop with ``ERR_EXHAUSTED``, the others get
       it from :func:`~.fleet.pruning_predict_rows` (:func:`~.fleet.predict_rows` when
       every one is past pruning, as ``predict_many``); every waiting unit gets its
       power limit from its cache, else by JIT profiling (:func:`_profile_best`, what
       the power-limit optimizer answers after observing the profiling epochs);
    3. :func:`advance` runs the resumed units (and those it paused) until they wait.

    ``todo`` lists the units to replay; at most ``ctl[CTL_ACTIVE]`` of them are in
    flight at once (a new one starts as one ends), so that the state of the
    units in flight stays in the caches: each round touches every unit in
    flight, and one unit's state is spread over some forty arrays.
    ``ready`` is (2, ``ctl[CTL_ACTIVE]`` or more) int64: ``ready[ctl[CTL_WHICH],
    :ctl[CTL_NEXT]]`` are the units to advance next (none on the first call).
    ``work_*`` are scratch of at least max(units, queue capacity) entries. The loop
    returns (``DRIVE_*``) whenever Python has to act; calling it again resumes it.
    Every unit sees only its own rows and stream, so the results equal the
    Python driver's.
    """
    arm_bs = t.arm_bs
    wl_arm_start = t.wl_arm_start
    wl_arm_count = t.wl_arm_count
    arm_cell_start = t.arm_cell_start
    arm_cell_count = t.arm_cell_count
    arm_max_pl = t.arm_max_pl
    cell_pl = t.cell_pl
    cell_avg_power = t.cell_avg_power
    cell_tpe = t.cell_tpe
    u_wl = un.wl
    u_eta = un.eta
    u_plc_start = un.plc_start
    status = s.status
    need = s.need
    error = s.error
    dec_arm = s.dec_arm
    dec_pl = s.dec_pl
    dec_prof = s.dec_prof
    pl_cache = s.pl_cache
    q_unit = o.q_unit
    q_arm = o.q_arm
    q_cost = o.q_cost
    q_reached = o.q_reached
    need_unit = o.need_unit
    h_cap = o.h_unit.shape[0]
    record = h.pruning.record
    chunk_cap = h.chunk_next.shape[0]
    pool_used = h.pool_used
    generation = ctl[CTL_GENERATION]
    rounds_here = 0
    while True:
        # 1. the queued observations, in order
        qn = o.q_n[0]
        if qn > 0:
            if unbounded and pool_used[0] + qn > chunk_cap:
                ctl[CTL_GENERATION] = generation
                ctl[CTL_ARG] = qn
                return DRIVE_POOL
            rows = work_i[:qn]
            values = work_j[:qn]
            slots = work_k[:qn]
            for i in range(qn):
                cost = q_cost[i]
                if not np.isfinite(cost):
                    ctl[CTL_GENERATION] = generation
                    return DRIVE_OBSERVE_ERROR
                rows[i] = bso_row[q_unit[i]]
                values[i] = arm_bs[q_arm[i]]
            if find_slots(h, rows, values, slots) >= 0:
                ctl[CTL_GENERATION] = generation
                return DRIVE_OBSERVE_ERROR
            generation += 1
            # has_converged as a plain bool (qn > 0 here), not the literal True: the callees then
            # compile for the types the optimizer's Python calls use, and share their cache entries.
            index, code = pruning_observe_rows(h, rows, slots, values, q_cost[:qn], q_reached[:qn], qn > 0, concurrency, generation)
            if code != PRUNING_OK:
                ctl[CTL_GENERATION] = generation
                return DRIVE_OBSERVE_ERROR
            o.q_n[0] = 0
        # 2. decisions for the waiting units
        nxt = ready[ctl[CTL_WHICH]]
        n_next = ctl[CTL_NEXT]
        nn = o.need_n[0]
        if nn > 0:
            # batch sizes, in need order
            all_sampling = True
            m = 0
            for i in range(nn):
                u = need_unit[i]
                if need[u] == NEED_BSO:
                    work_i[m] = u
                    work_j[m] = bso_row[u]
                    m += 1
            if m > 0:
                ex = work_u8[:m]
                exhausted_rows(work_j[:m], h.pruning, h.num_rounds, ex)
                k = 0
                for i in range(m):
                    u = work_i[i]
                    if ex[i] != 0:
                        status[u] = STATUS_ERROR
                        error[u] = ERR_EXHAUSTED
                    else:
                        work_i[k] = u
                        work_j[k] = work_j[i]
                        if record[work_j[i], STAGE] == STAGE_PRUNING:
                            all_sampling = False
                        k += 1
                m = k
            if m > 0:
                rows = work_j[:m]
                out = work_k[:m]
                if m > 1 and all_sampling:
                    predict_rows(h, rows, out)
                else:
                    generation += 1
                    index, code = pruning_predict_rows(h, rows, concurrency, generation, out)
                    if code != PRUNING_OK:
                        ctl[CTL_GENERATION] = generation
                        ctl[CTL_ARG] = m
                        return DRIVE_PREDICT_ERROR
                for i in range(m):
                    u = work_i[i]
                    w = u_wl[u]
                    a0 = wl_arm_start[w]
                    arm = -1
                    for a in range(a0, a0 + wl_arm_count[w]):
                        if arm_bs[a] == out[i]:
                            arm = a
                            break
                    if arm < 0:
                        status[u] = STATUS_ERROR
                        error[u] = ERR_UNKNOWN_BS
                    else:
                        dec_arm[u] = arm
            # power limits: the waiting units that have not failed
            for i in range(nn):
                u = need_unit[i]
                if status[u] == STATUS_ERROR:
                    continue
                arm = dec_arm[u]
                dec_prof[u] = 0
                w = u_wl[u]
                slot = u_plc_start[u] + arm - wl_arm_start[w]
                pl = pl_cache[slot]
                if pl < 0:
                    if need[u] == NEED_PL:
                        status[u] = STATUS_ERROR
                        error[u] = ERR_NOT_PROFILED
                        continue
                    pl = _profile_best(arm, u_eta[u], arm_cell_start, arm_cell_count, arm_max_pl, cell_pl, cell_avg_power, cell_tpe)
                    dec_prof[u] = 1
                    if pl < 0:
                        status[u] = STATUS_ERROR
                        error[u] = ERR_NO_PATHS
                        continue
                    pl_cache[slot] = pl
                dec_pl[u] = pl
                status[u] = STATUS_READY
                nxt[n_next] = u
                n_next += 1
            o.need_n[0] = 0
        pos = ctl[CTL_POS]
        active = ctl[CTL_ACTIVE]
        while pos < todo.shape[0] and (active == 0 or n_next < active):
            nxt[n_next] = todo[pos]
            n_next += 1
            pos += 1
        ctl[CTL_POS] = pos
        ctl[CTL_NEXT] = n_next
        if n_next == 0:
            ctl[CTL_GENERATION] = generation
            return DRIVE_DONE
        if o.h_n[0] * 2 >= h_cap:
            ctl[CTL_GENERATION] = generation
            return DRIVE_DRAIN
        if ctl[CTL_BUDGET] > 0 and rounds_here >= ctl[CTL_BUDGET]:
            ctl[CTL_GENERATION] = generation
            return DRIVE_YIELD
        # 3. advance the ready units; the ones it paused stay ready
        cur = nxt[:n_next]
        which = 1 - ctl[CTL_WHICH]
        stop = advance(cur, t, un, s, o)
        other = ready[which]
        left = n_next - stop
        for i in range(left):
            other[i] = cur[stop + i]
        ctl[CTL_WHICH] = which
        ctl[CTL_NEXT] = left
        ctl[CTL_ROUNDS] += 1
        rounds_here += 1

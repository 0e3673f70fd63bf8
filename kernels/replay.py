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

"""The fleet replay driver: every unit's events advance in compiled code, learning goes
through the optimizers' batch APIs.

A *unit* is one replayed job: a sequentially recurring job (the reference's
``simulate_one_job``) or a group of timed submissions (``simulate_one_alibaba_group``)
under one setting. Units that share optimizer settings share a *partition*:
one batch-size optimizer and one power-limit optimizer, a row in each per unit.

:func:`run_units` loops until every unit has ended:

1. :func:`banditfleet.kernels.replay.advance` runs every ready unit until it
   needs a decision, queueing the observations it made in order;
2. the queued observations go to each partition's ``observe_many``;
3. the units waiting for a batch size get it from ``predict_many`` (after
   ``exhausted_many`` drops those whose pruning left nothing), and their
   power limit from the power-limit optimizer's ``predict_many``, after JIT
   profiling through its ``observe_many`` where it answers
   ``NEEDS_PROFILING``;
4. they resume.

A unit only ever sees its own optimizer rows and its own simulator stream,
so its result does not depend on which other units share the replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditfleet.kernels.replay import (
    ERR_EXHAUSTED,
    PH_GRP_SUB,
    PH_SEQ_REC,
    ERR_NO_PATHS,
    ERR_NOT_PROFILED,
    ERR_UNKNOWN_BS,
    MODE_GROUP,
    NEED_BSO,
    NEED_PL,
    STATUS_DONE,
    STATUS_ERROR,
    STATUS_READY,
    ReplayOut,
    ReplayState,
    ReplayTables,
    ReplayUnits,
    CTL_ACTIVE as _CTL_ACTIVE,
    CTL_ARG as _CTL_ARG,
    CTL_BUDGET as _CTL_BUDGET,
    CTL_GENERATION as _CTL_GENERATION,
    CTL_NEXT as _CTL_NEXT,
    CTL_ROUNDS as _CTL_ROUNDS,
    DRIVE_DONE,
    DRIVE_DRAIN,
    DRIVE_OBSERVE_ERROR,
    DRIVE_POOL,
    DRIVE_PREDICT_ERROR,
    advance,
    arms_of_values,
    drive_pruning,
    profile_requests,
)
from banditfleet.kernels.streams import allocate_streams, seed_streams
from banditfleet.power import NEEDS_PROFILING

from banditfleet.rows import Rows

__all__ = ["Partition", "UnitsResult", "make_units", "merge_shards", "run_units"]

logger = logging.getLogger("banditfleet")

_QUEUE = 1 << 16
# Units in flight at once in the compiled driver (their state stays in the caches).
_ACTIVE = 64


@dataclass
class Partition:
    """Optimizers shared by some units, and each unit's rows in them."""

    bso: Any  # a batch-size optimizer with predict_many / observe_many
    plo: Any  # a JITPowerLimitOptimizer
    units: np.ndarray  # int64 unit indices
    bso_rows: Rows  # the bso's tagged rows, one per unit of ``units``
    plo_rows: Rows | None  # the plo's tagged rows, one per unit of ``units`` (None: see run_units(compiled=True))


@dataclass
class UnitsResult:
    """What :func:`run_units` returns: per-unit status and the history, sorted by unit."""

    status: np.ndarray  # int64 STATUS_DONE or STATUS_ERROR per unit
    error: np.ndarray  # int64 ERR_* per unit
    runs: np.ndarray  # int64 simulated runs per unit (never-started runs included)
    min_cost: np.ndarray  # float64 per unit
    unit: np.ndarray  # history: int64 unit
    sub: np.ndarray  # int64 recurrence or submission index
    bs: np.ndarray  # int64 batch size
    pl: np.ndarray  # int64 power limit
    energy: np.ndarray  # float64
    time: np.ndarray  # float64
    reached: np.ndarray  # bool
    offsets: np.ndarray  # int64 per unit + 1: unit u's entries are offsets[u]:offsets[u+1]
    seconds: float = 0.0
    rounds: int = 0


def _own(a: Any, dtype: Any) -> np.ndarray:
    """``a`` as a writeable, aligned, C-contiguous array of ``dtype`` (copied only if needed).

    The kernels are compiled for exactly these array types: a read-only array
    (what pandas' ``to_numpy`` returns under copy-on-write) is another numba
    type and would compile ``advance`` a second time.
    """
    return np.require(a, dtype, ["C", "W", "A"])


def make_units(
    tables: ReplayTables,
    wl: np.ndarray,
    mode: np.ndarray,
    eta: np.ndarray,
    beta: np.ndarray,
    n_rec: np.ndarray,
    sub_start: np.ndarray | None = None,
    sub_t0: np.ndarray | None = None,
    sub_t1: np.ndarray | None = None,
    sub_ratio: np.ndarray | None = None,
    retry_cap: np.ndarray | None = None,
) -> ReplayUnits:
    """Per-unit inputs with the running-job and power-limit cache offsets filled in."""
    wl = _own(wl, np.int64)
    n = wl.shape[0]
    mode = _own(mode, np.int64)
    n_rec = _own(n_rec, np.int64)
    run_cap = np.where(mode == MODE_GROUP, n_rec, 0)
    arm_counts = tables.wl_arm_count[wl]
    run_start = np.zeros(n, np.int64)
    plc_start = np.zeros(n, np.int64)
    if n:
        np.cumsum(run_cap[:-1], out=run_start[1:])
        np.cumsum(arm_counts[:-1], out=plc_start[1:])
    if sub_start is None:
        sub_start = np.zeros(n, np.int64)
        sub_t0 = sub_t1 = sub_ratio = np.zeros(0, np.float64)
    if retry_cap is None:
        retry_cap = 100 * n_rec + 1000
    return ReplayUnits(
        wl=wl,
        mode=mode,
        eta=_own(eta, np.float64),
        beta=_own(beta, np.float64),
        n_rec=n_rec,
        sub_start=_own(sub_start, np.int64),
        sub_t0=_own(sub_t0, np.float64),
        sub_t1=_own(sub_t1, np.float64),
        sub_ratio=_own(sub_ratio, np.float64),
        run_start=run_start,
        plc_start=plc_start,
        retry_cap=_own(retry_cap, np.int64),
    )


def _init_state(tables: ReplayTables, units: ReplayUnits, seeds: np.ndarray, first_arm: np.ndarray | None = None) -> ReplayState:
    n = units.wl.shape[0]
    n_run = int(np.where(units.mode == MODE_GROUP, units.n_rec, 0).sum())
    n_plc = int(tables.wl_arm_count[units.wl].sum())
    streams = allocate_streams(n)
    seed_streams(streams, np.arange(n, dtype=np.int64), np.ascontiguousarray(seeds, np.uint64))

    def i64(fill: int = 0, size: int = n) -> np.ndarray:
        return np.full(size, fill, np.int64)

    def f64(fill: float = 0.0, size: int = n) -> np.ndarray:
        return np.full(size, fill, np.float64)

    # A group's running-job slots are written at launch before any read (run_n counts
    # them): left uninitialized, only the pages of slots ever used are touched.
    def slots(dtype: Any) -> np.ndarray:
        return np.empty(n_run, dtype)

    return ReplayState(
        phase=np.where(units.mode == MODE_GROUP, PH_GRP_SUB, PH_SEQ_REC).astype(np.int64),
        status=i64(STATUS_READY),
        need=i64(),
        error=i64(),
        rec=i64(),
        tries=i64(),
        retries=i64(),
        runs=i64(),
        cost_acc=f64(),
        min_cost=f64(np.inf),
        best_arm=(tables.wl_default_arm[units.wl] if first_arm is None else first_arm).astype(np.int64),
        now=f64(),
        dec_arm=i64(-1),
        dec_pl=i64(-1),
        dec_prof=i64(),
        par_start=f64(),
        par_end=f64(),
        par_ratio=f64(),
        par_sub=i64(),
        run_n=i64(),
        r_start=slots(np.float64),
        r_end=slots(np.float64),
        r_ratio=slots(np.float64),
        r_arm=slots(np.int64),
        r_pl=slots(np.int64),
        r_reached=slots(np.uint8),
        r_time=slots(np.float64),
        r_energy=slots(np.float64),
        r_cost=slots(np.float64),
        r_sub=slots(np.int64),
        pl_cache=i64(-1, n_plc),
        streams_hi=streams.state_hi,
        streams_lo=streams.state_lo,
        streams_inc_hi=streams.inc_hi,
        streams_inc_lo=streams.inc_lo,
        streams_has32=streams.has_uint32,
        streams_u32=streams.uinteger,
    )


def _make_out(n_units: int, capacity: int) -> ReplayOut:
    return ReplayOut(
        q_unit=np.zeros(capacity, np.int64),
        q_arm=np.zeros(capacity, np.int64),
        q_cost=np.zeros(capacity, np.float64),
        q_reached=np.zeros(capacity, np.uint8),
        q_n=np.zeros(1, np.int64),
        h_unit=np.zeros(capacity, np.int64),
        h_sub=np.zeros(capacity, np.int64),
        h_bs=np.zeros(capacity, np.int64),
        h_pl=np.zeros(capacity, np.int64),
        h_energy=np.zeros(capacity, np.float64),
        h_time=np.zeros(capacity, np.float64),
        h_reached=np.zeros(capacity, np.uint8),
        h_n=np.zeros(1, np.int64),
        need_unit=np.zeros(max(n_units, 1), np.int64),
        need_n=np.zeros(1, np.int64),
    )


class _Driver:
    def __init__(self, tables: ReplayTables, units: ReplayUnits, state: ReplayState, partitions: Sequence[Partition]) -> None:
        n = units.wl.shape[0]
        self.t = tables
        self.un = units
        self.s = state
        self.parts = list(partitions)
        self.part_of = np.full(n, -1, np.int64)
        self.bso_row = np.full(n, -1, np.int64)
        self.plo_row = np.full(n, -1, np.int64)
        for p, part in enumerate(self.parts):
            u = np.asarray(part.units, np.int64)
            if (self.part_of[u] >= 0).any():
                raise ValueError("a unit belongs to two partitions")
            self.part_of[u] = p
            if not isinstance(part.bso_rows, Rows) or not isinstance(part.plo_rows, (Rows, type(None))):
                raise ValueError("a partition's rows must be the optimizers' own Rows (from rows() or register_jobs())")
            self.bso_row[u] = part.bso_rows.array
            if part.plo_rows is not None:  # None: a compiled partition (its power limits come from the trace)
                self.plo_row[u] = part.plo_rows.array
        if (self.part_of < 0).any():
            raise ValueError("every unit needs a partition")

    def flush_observations(self, o: ReplayOut) -> None:
        n = int(o.q_n[0])
        if not n:
            return
        unit = o.q_unit[:n]
        bs = self.t.arm_bs[o.q_arm[:n]]
        cost = o.q_cost[:n]
        reached = o.q_reached[:n].astype(bool)
        if len(self.parts) == 1:
            part = self.parts[0]
            part.bso.observe_many(part.bso_rows._retag(self.bso_row[unit]), bs, cost, reached)
        else:
            part = self.part_of[unit]
            for p in np.unique(part).tolist():
                m = part == p
                pp = self.parts[p]
                pp.bso.observe_many(pp.bso_rows._retag(self.bso_row[unit[m]]), bs[m], cost[m], reached[m])
        o.q_n[0] = 0

    def _fail(self, units: np.ndarray, code: int) -> None:
        s = self.s
        s.status[units] = STATUS_ERROR
        s.error[units] = code

    def decide(self, need: np.ndarray) -> np.ndarray:
        """Answer every waiting unit; returns the units that can resume."""
        s, t, un = self.s, self.t, self.un
        kinds = s.need[need]
        bso_units = need[kinds == NEED_BSO]
        pl_units = need[kinds == NEED_PL]
        resumed: list[np.ndarray] = [pl_units]
        part = self.part_of[bso_units]
        for p in (np.unique(part).tolist() if len(self.parts) > 1 else ([0] if bso_units.size else [])):
            pu = bso_units if len(self.parts) == 1 else bso_units[part == p]
            bso = self.parts[p].bso
            rows = self.parts[p].bso_rows._retag(self.bso_row[pu])
            exhausted_many = getattr(bso, "exhausted_many", None)
            if exhausted_many is not None:
                ex = exhausted_many(rows)
                if ex.any():
                    self._fail(pu[ex], ERR_EXHAUSTED)
                    pu = pu[~ex]
                    rows = rows[~ex]
            if not pu.size:
                continue
            bs = bso.predict_many(rows)
            arms = np.empty(pu.shape[0], np.int64)
            arms_of_values(pu, bs, un.wl, t, arms)
            bad = arms < 0
            if bad.any():
                self._fail(pu[bad], ERR_UNKNOWN_BS)
                pu, arms = pu[~bad], arms[~bad]
            s.dec_arm[pu] = arms
            resumed.append(pu)
        go = np.concatenate(resumed) if len(resumed) > 1 else pl_units
        if not go.size:
            return go
        s.dec_prof[go] = 0
        arms = s.dec_arm[go]
        slot = un.plc_start[go] + arms - t.wl_arm_start[un.wl[go]]
        pl = s.pl_cache[slot]
        miss = np.flatnonzero(pl < 0)
        if miss.size:
            mu = go[miss]
            part = self.part_of[mu]
            for p in np.unique(part).tolist():
                m = miss[part == p]
                self._ask_power_limits(p, go[m], slot[m], pl, m)
        s.dec_pl[go] = pl
        ok = s.status[go] != STATUS_ERROR
        go = go[ok]
        s.status[go] = STATUS_READY
        return go

    def _ask_power_limits(self, p: int, units: np.ndarray, slots: np.ndarray, pl: np.ndarray, where: np.ndarray) -> None:
        s, t, un = self.s, self.t, self.un
        plo = self.parts[p].plo
        tagged = self.parts[p].plo_rows
        rows = self.plo_row[units]
        arms = s.dec_arm[units]
        bs = t.arm_bs[arms]
        answer = plo.predict_many(tagged._retag(rows), bs)
        prof = answer == NEEDS_PROFILING
        if prof.any():
            fixed = prof & (s.need[units] == NEED_PL)
            if fixed.any():
                self._fail(units[fixed], ERR_NOT_PROFILED)
            prof &= ~fixed
            if prof.any():
                pu = units[prof]
                pa = arms[prof]
                counts = t.arm_cell_count[pa]
                total = int(counts.sum())
                pos = np.empty(pu.shape[0] + 1, np.int64)
                obs_pl = np.empty(total, np.int64)
                obs_cost = np.empty(total, np.float64)
                profile_requests(pu, pa, un.eta, t, pos, obs_pl, obs_cost)
                if total:
                    plo.observe_many(tagged._retag(np.repeat(rows[prof], counts)), np.repeat(bs[prof], counts), obs_pl, obs_cost)
                again = plo.predict_many(tagged._retag(rows[prof]), bs[prof])
                answer[prof] = again
                s.dec_prof[pu] = 1
                empty = again == NEEDS_PROFILING
                if empty.any():
                    self._fail(pu[empty], ERR_NO_PATHS)
        good = answer != NEEDS_PROFILING
        s.pl_cache[slots[good]] = answer[good]
        pl[where] = answer


def run_units(
    tables: ReplayTables,
    units: ReplayUnits,
    seeds: np.ndarray,
    partitions: Sequence[Partition],
    progress: Callable[[int, int], None] | None = None,
    queue_capacity: int = _QUEUE,
    first_arm: np.ndarray | None = None,
    compiled: bool = False,
) -> UnitsResult:
    """Replay every unit to its end; see the module docstring.

    ``first_arm`` (global arm per unit) is the best batch size a group starts
    with, which concurrent launches use before any run has reached the target;
    by default the workload's default batch size, as the reference.

    ``compiled=True`` runs the partitions whose optimizers are a
    ``PruningGTSBatchSizeOptimizer`` and a ``JITPowerLimitOptimizer`` (neither
    journaling) in one compiled loop, :func:`banditfleet.kernels.replay.drive_pruning`,
    which releases the GIL for the whole replay: the same histories, but such a
    partition's power-limit optimizer is not updated (the loop answers from the
    trace exactly what it would answer after profiling). The other partitions
    go through the Python driver.
    """
    import time as _time

    n = units.wl.shape[0]
    t0 = _time.perf_counter()
    state = _init_state(tables, units, seeds, first_arm)
    driver = _Driver(tables, units, state, partitions)
    out = _make_out(n, max(int(queue_capacity), 16))
    chunks: list[tuple[np.ndarray, ...]] = []
    ready = np.arange(n, dtype=np.int64)
    rounds = 0
    done_before = -1
    for p in driver.parts:
        if p.plo_rows is None and not (compiled and _compilable(p)):
            raise ValueError("a partition without power-limit rows needs compiled=True and a PruningGTS/JIT pair")
    if compiled:
        fast = [p for p in driver.parts if _compilable(p)]
        if fast:
            rounds = _run_compiled(tables, units, state, out, driver, fast, chunks, progress)
            done_before = int(np.count_nonzero(state.status >= STATUS_DONE))
            ready = ready[state.status[ready] == STATUS_READY] if len(fast) < len(driver.parts) else ready[:0]
    while ready.size:
        rounds += 1
        out.need_n[0] = 0
        stop = advance(ready, tables, units, state, out)
        leftover = ready[stop:]
        driver.flush_observations(out)
        h = int(out.h_n[0])
        if h:
            chunks.append(
                tuple(a[:h].copy() for a in (out.h_unit, out.h_sub, out.h_bs, out.h_pl, out.h_energy, out.h_time, out.h_reached))
            )
            out.h_n[0] = 0
        need = out.need_unit[: int(out.need_n[0])].copy()
        resumed = driver.decide(need) if need.size else need
        ready = np.concatenate([leftover, resumed]) if leftover.size else resumed
        if progress is not None:
            done = int(np.count_nonzero(state.status >= STATUS_DONE))
            if done != done_before:
                progress(done, n)
                done_before = done
    if chunks:
        cols = [np.concatenate([c[i] for c in chunks]) for i in range(7)]
    else:
        cols = [np.zeros(0, np.int64)] * 4 + [np.zeros(0, np.float64)] * 2 + [np.zeros(0, np.uint8)]
    order = np.argsort(cols[0], kind="stable")
    cols = [c[order] for c in cols]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(cols[0], minlength=n), out=offsets[1:])
    return UnitsResult(
        status=state.status.copy(),
        error=state.error.copy(),
        runs=state.runs.copy(),
        min_cost=state.min_cost.copy(),
        unit=cols[0],
        sub=cols[1],
        bs=cols[2],
        pl=cols[3],
        energy=cols[4],
        time=cols[5],
        reached=cols[6].astype(bool),
        offsets=offsets,
        seconds=_time.perf_counter() - t0,
        rounds=rounds,
    )


def _compilable(part: Partition) -> bool:
    """Whether :func:`_run_compiled` can drive this partition."""
    from banditfleet.power import JITPowerLimitOptimizer
    from banditfleet.pruning import PruningGTSBatchSizeOptimizer

    return (
        type(part.bso) is PruningGTSBatchSizeOptimizer
        and type(part.plo) is JITPowerLimitOptimizer
        and getattr(part.bso, "_folder", None) is None
        and getattr(part.plo, "_folder", None) is None
    )


def _run_compiled(
    tables: ReplayTables,
    units: ReplayUnits,
    state: ReplayState,
    out: ReplayOut,
    driver: _Driver,
    parts: Sequence[Partition],
    chunks: list[tuple[np.ndarray, ...]],
    progress: Callable[[int, int], None] | None,
) -> int:
    """Each partition's units to their end with :func:`drive_pruning`; returns the rounds.

    The units of one partition never meet those of another (own rows, own
    streams), so partitions run one after the other. Python acts only when
    the loop asks: the history pool grows, the history buffer is drained, a
    refused call raises the optimizer's own error, progress is reported.
    """
    n = units.wl.shape[0]
    cap = max(n, out.q_unit.shape[0], 1)
    work_i = np.empty(cap, np.int64)
    work_j = np.empty(cap, np.int64)
    work_k = np.empty(cap, np.int64)
    work_u8 = np.empty(cap, np.uint8)
    rounds = 0
    for part in parts:
        bso = part.bso
        store = bso._store
        mine = np.asarray(part.units, np.int64)
        active = min(_ACTIVE, mine.shape[0])
        ready = np.empty((2, max(active, 1)), np.int64)
        ctl = np.zeros(8, np.int64)
        ctl[_CTL_ACTIVE] = active
        ctl[_CTL_BUDGET] = 16 if progress is not None else 0
        unbounded = bool(store.keeps_history and store.n_unbounded_arms > 0)
        concurrency = bool(bso.concurrency)
        done_before = -1
        while True:
            ctl[_CTL_GENERATION] = bso._generation
            code = drive_pruning(
                tables, units, state, out, bso._handle(), driver.bso_row, mine, ready, ctl,
                work_i, work_j, work_k, work_u8, concurrency, unbounded,
            )
            bso._generation = int(ctl[_CTL_GENERATION])
            if progress is not None:
                done = int(np.count_nonzero(state.status >= STATUS_DONE))
                if done != done_before:
                    progress(done, n)
                    done_before = done
            if code == DRIVE_POOL:
                store.reserve_history_chunks(int(ctl[_CTL_ARG]))
            elif code == DRIVE_DRAIN or code == DRIVE_DONE:
                _drain(out, chunks)
                if code == DRIVE_DONE:
                    break
            elif code == DRIVE_OBSERVE_ERROR:
                driver.flush_observations(out)  # raises the optimizer's error
                raise RuntimeError("the compiled replay driver refused observations the optimizer accepts")
            elif code == DRIVE_PREDICT_ERROR:
                m = int(ctl[_CTL_ARG])
                bso.predict_many(part.bso_rows._retag(driver.bso_row[work_i[:m]]))  # raises the optimizer's error
                raise RuntimeError("the compiled replay driver refused a predict the optimizer accepts")
        rounds = max(rounds, int(ctl[_CTL_ROUNDS]))
    return rounds


def _drain(o: ReplayOut, chunks: list[tuple[np.ndarray, ...]]) -> None:
    h = int(o.h_n[0])
    if h:
        chunks.append(tuple(a[:h].copy() for a in (o.h_unit, o.h_sub, o.h_bs, o.h_pl, o.h_energy, o.h_time, o.h_reached)))
        o.h_n[0] = 0


_PER_UNIT = ("status", "error", "runs", "min_cost")
_HISTORY = ("sub", "bs", "pl", "energy", "time", "reached")


def merge_shards(parts: Sequence[UnitsResult], bounds: Sequence[tuple[int, int]], n_groups: int, n_settings: int) -> UnitsResult:
    """Results of shards of groups (``bounds``: each shard's ``[start, stop)``) in global unit order.

    A shard's unit ``s * gs + j`` (``gs`` groups) is the global unit
    ``s * n_groups + start + j``. Each unit's runs come from one shard in their
    original order, so a stable sort by global unit restores the layout of a
    single replay of all groups exactly.
    """
    n = n_settings * n_groups
    per_unit: dict[str, np.ndarray] = {}
    units: list[np.ndarray] = []
    history: dict[str, list[np.ndarray]] = {name: [] for name in _HISTORY}
    for part, (a, b) in zip(parts, bounds):
        gs = max(b - a, 1)
        local = np.arange(n_settings * (b - a), dtype=np.int64)
        global_units = (local // gs) * n_groups + a + local % gs
        for name in _PER_UNIT:
            arr = np.asarray(getattr(part, name))
            if name not in per_unit:
                per_unit[name] = np.empty(n, arr.dtype)
            per_unit[name][global_units] = arr
        units.append(global_units[part.unit] if part.unit.size else np.asarray(part.unit, np.int64))
        for name in _HISTORY:
            history[name].append(np.asarray(getattr(part, name)))
    unit = np.concatenate(units) if units else np.zeros(0, np.int64)
    order = np.argsort(unit, kind="stable")
    cols = {name: np.concatenate(chunks)[order] for name, chunks in history.items()}
    unit = unit[order]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(unit, minlength=n), out=offsets[1:])
    return UnitsResult(
        status=per_unit["status"], error=per_unit["error"], runs=per_unit["runs"], min_cost=per_unit["min_cost"],
        unit=unit, offsets=offsets, rounds=max((int(p.rounds) for p in parts), default=0), **cols,
    )


_ADVANCE_ENTRY: dict[Any, Callable[..., Any]] = {}
_TABLES_SIG: dict[int, tuple[ReplayTables, Any]] = {}


def _signature(x: Any) -> Any:
    """What numba's type of ``x`` depends on (dtype, dimensions, layout, writability), cheaply."""
    if isinstance(x, np.ndarray):
        return (x.dtype.char, x.ndim, x.flags.c_contiguous, x.flags.writeable)
    return (type(x), tuple(_signature(a) for a in x))


def run_one(
    tables: ReplayTables,
    units: ReplayUnits,
    seed: int,
    bso: Any,
    plo: Any,
    key: Any,
    queue_capacity: int = 512,
    first_arm: np.ndarray | None = None,
) -> UnitsResult:
    """Replay a single unit with the optimizers' scalar calls; equal to :func:`run_units`.

    ``bso`` needs ``predict(key)`` and ``observe(key, batch_size, cost, reached)``,
    ``plo`` needs ``predict(key, batch_size)`` (None until profiled) and
    ``observe(key, batch_size, power_limit, cost)``: banditfleet's optimizers
    (their scalar calls skip the batch machinery) and the reference's alike.
    The events advance in the same compiled kernel as a fleet's; the decisions
    of one unit need no vector work, so this path costs a few microseconds per
    decision instead of a fleet round's fixed overhead. A banditfleet pruning
    optimizer whose pruning left nothing raises
    :class:`~banditfleet.errors.PruningExhaustedError` from ``predict``; the unit
    then stops with ``ERR_EXHAUSTED`` as in :func:`run_units`.
    """
    import time as _time

    from banditfleet._fastcall import entry_point
    from banditfleet.errors import PruningExhaustedError

    t0 = _time.perf_counter()
    if units.wl.shape[0] != 1:
        raise ValueError("run_one replays exactly one unit")
    state = _init_state(tables, units, np.array([seed], np.uint64), first_arm)
    out = _make_out(1, max(int(queue_capacity), 16))
    ready = np.zeros(1, np.int64)
    # State and output arrays are always made here (fixed types); the tables' and the units'
    # types are what may vary (read-only arrays type apart). The tables' signature is cached.
    cached = _TABLES_SIG.get(id(tables))
    if cached is None or cached[0] is not tables:
        if len(_TABLES_SIG) > 64:
            _TABLES_SIG.clear()
        cached = _TABLES_SIG[id(tables)] = (tables, _signature(tables))
    sig = (cached[1], _signature(units))
    adv = _ADVANCE_ENTRY.get(sig)
    if adv is None:
        adv = _ADVANCE_ENTRY[sig] = entry_point(advance, (ready, tables, units, state, out))
    wl = int(units.wl[0])
    a0, na = int(tables.wl_arm_start[wl]), int(tables.wl_arm_count[wl])
    arm_bs = tables.arm_bs.tolist()
    arm_of = {arm_bs[a]: a for a in range(a0, a0 + na)}
    eta = float(units.eta[0])
    plc0 = int(units.plc_start[0]) - a0
    s, o = state, out
    chunks: list[tuple[np.ndarray, ...]] = []
    rounds = 0

    def drain() -> None:
        h = int(o.h_n[0])
        if h:
            chunks.append(tuple(a[:h].copy() for a in (o.h_unit, o.h_sub, o.h_bs, o.h_pl, o.h_energy, o.h_time, o.h_reached)))
            o.h_n[0] = 0

    def fail(code: int) -> None:
        s.status[0] = STATUS_ERROR
        s.error[0] = code

    while True:
        rounds += 1
        o.need_n[0] = 0
        stop = adv(ready, tables, units, state, out)
        qn = int(o.q_n[0])
        if qn:
            for arm, cost, reached in zip(o.q_arm[:qn].tolist(), o.q_cost[:qn].tolist(), o.q_reached[:qn].tolist()):
                bso.observe(key, arm_bs[arm], cost, reached != 0)
            o.q_n[0] = 0
        if stop == 0:
            drain()
            continue
        if not o.need_n[0]:
            break
        if s.need[0] == NEED_BSO:
            try:
                bs = int(bso.predict(key))
            except PruningExhaustedError:
                fail(ERR_EXHAUSTED)
                break
            arm = arm_of.get(bs, -1)
            if arm < 0:
                fail(ERR_UNKNOWN_BS)
                break
            s.dec_arm[0] = arm
        else:
            arm = int(s.dec_arm[0])
            bs = arm_bs[arm]
        s.dec_prof[0] = 0
        pl = int(s.pl_cache[plc0 + arm])
        if pl < 0:
            answer = plo.predict(key, bs)
            if answer is None:
                if s.need[0] == NEED_PL:
                    fail(ERR_NOT_PROFILED)
                    break
                c0, nc = int(tables.arm_cell_start[arm]), int(tables.arm_cell_count[arm])
                max_pl = float(tables.arm_max_pl[arm])
                for c in range(c0, c0 + nc):
                    cost = (eta * float(tables.cell_avg_power[c]) + (1.0 - eta) * max_pl) * float(tables.cell_tpe[c])
                    plo.observe(key, bs, int(tables.cell_pl[c]), cost)
                answer = plo.predict(key, bs)
                s.dec_prof[0] = 1
                if answer is None:
                    fail(ERR_NO_PATHS)
                    break
            pl = int(answer)
            s.pl_cache[plc0 + arm] = pl
        s.dec_pl[0] = pl
        s.status[0] = STATUS_READY
    drain()
    if chunks:
        cols = [np.concatenate([c[i] for c in chunks]) for i in range(7)]
    else:
        cols = [np.zeros(0, np.int64)] * 4 + [np.zeros(0, np.float64)] * 2 + [np.zeros(0, np.uint8)]
    return UnitsResult(
        status=state.status.copy(),
        error=state.error.copy(),
        runs=state.runs.copy(),
        min_cost=state.min_cost.copy(),
        unit=cols[0],
        sub=cols[1],
        bs=cols[2],
        pl=cols[3],
        energy=cols[4],
        time=cols[5],
        reached=cols[6].astype(bool),
        offsets=np.array([0, cols[0].shape[0]], np.int64),
        seconds=_time.perf_counter() - t0,
        rounds=rounds,
    )

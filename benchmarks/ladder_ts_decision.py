"""The Thompson-sampling decision kernel one step at a time (docs/performance.md, the ladder).

Run as a script: ``python benchmarks/ladder_ts_decision.py [--jobs N] [--arms K] [--repeats R]``.
It builds a GTS fleet (learned precision, warmed into Thompson sampling as the
bench fleets are) and times, in the same run and in alternating rounds, each
step from the kernel before this change (step 0) to the current one (the
last), each on its own copy of the fleet's streams, plus our streams drawing
the same numbers and deciding nothing (the floor of ``ts.predict:draws``).
Every step's decisions are checked equal to the current kernel's. Printed: the
median ns per decision (wall and process CPU time) and each step's ratio to
the floor. Two fleets: the bench's (every job seeded alike) and one with
independent per-job streams, own cost bowls and ragged arm counts.

Not collected by pytest (the name does not start with ``bench_``); the
variants compile without a cache (about a minute).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numba
import numpy as np

from banditfleet.bench import draws
from banditfleet.bench.fleets import gts_fleet, random_gts_fleet
from banditfleet.kernels.distributions import sample_without_replacement_s, standard_normal_s
from banditfleet.kernels.streams import Streams, load_stream, store_stream
from banditfleet.kernels.thompson import _decide_rows, _normal_fast, _skip_choice

HELPER = dict(nogil=True, error_model="numpy", _nrt=False)
INLINE = dict(HELPER, inline="always")
_U64 = np.uint64


# step 0: the kernel before this change -- a compiled per-row call with 13 arguments
@numba.njit(**HELPER)
def _row0(row, start, count, arm_active, arm_value, obs, mean, prec, need, streams, active, order, taken):
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
        if obs[slot] < need:
            chosen = slot
            break
    if chosen < 0:
        best = 0.0
        for p in range(k):
            slot = active[p]
            scale = math.sqrt(1.0 / prec[slot])
            st, z = standard_normal_s(st)
            draw = mean[slot] + scale * z
            if p == 0 or draw > best:
                best = draw
                chosen = slot
    store_stream(streams, row, st)
    return arm_value[chosen]


@numba.njit(nogil=True, error_model="numpy")
def step0(rows, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need, streams, out):
    m = 1
    for i in range(rows.shape[0]):
        m = max(m, arm_count[rows[i]])
    active = np.empty(m, np.int64)
    order = np.empty(m, np.int64)
    taken = np.zeros(m, np.uint8)
    for i in range(rows.shape[0]):
        row = rows[i]
        out[i] = _row0(row, arm_start[row], arm_count[row], arm_active, arm_value, obs, mean, prec, need[row], streams,
                       active, order, taken)


# step 1: one function -- the row body inlined into one NRT-free batch loop (signed indices)
@numba.njit(**INLINE)
def _row1(row, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need_a, streams, active, order, taken):
    start = arm_start[row]
    need = need_a[row]
    k = 0
    for a in range(arm_count[row]):
        if arm_active[start + a]:
            active[k] = start + a
            k += 1
    st = load_stream(streams, row)
    st = sample_without_replacement_s(st, k, k, order, taken)
    chosen = -1
    for p in range(k):
        slot = active[order[p]]
        if obs[slot] < need:
            chosen = slot
            break
    if chosen < 0:
        best = 0.0
        for p in range(k):
            slot = active[p]
            scale = math.sqrt(1.0 / prec[slot])
            st, z = standard_normal_s(st)
            draw = mean[slot] + scale * z
            if p == 0 or draw > best:
                best = draw
                chosen = slot
    store_stream(streams, row, st)
    return arm_value[chosen]


# step 2: + unsigned indices (no ``i < 0 ? i + n : i`` per index)
@numba.njit(**INLINE)
def _row2(row, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need_a, streams, active, order, taken):
    row = _U64(row)
    start = _U64(arm_start[row])
    need = need_a[row]
    k = _U64(0)
    for a in range(_U64(arm_count[row])):
        slot = start + _U64(a)
        if arm_active[slot]:
            active[k] = slot
            k += _U64(1)
    st = load_stream(streams, row)
    st = sample_without_replacement_s(st, np.int64(k), np.int64(k), order, taken)
    chosen = _U64(0)
    found = False
    for p in range(k):
        slot = _U64(active[_U64(order[p])])
        if obs[slot] < need:
            chosen = slot
            found = True
            break
    if not found:
        best = 0.0
        for p in range(k):
            slot = _U64(active[p])
            scale = math.sqrt(1.0 / prec[slot])
            st, z = standard_normal_s(st)
            draw = mean[slot] + scale * z
            if p == 0 or draw > best:
                best = draw
                chosen = slot
    store_stream(streams, row, st)
    return arm_value[chosen]


# step 3: + when nobody explores, only advance past the permutation (exact redo on Lemire's rare branch)
@numba.njit(**INLINE)
def _row3(row, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need_a, streams, active, order, taken):
    row = _U64(row)
    start = _U64(arm_start[row])
    need = need_a[row]
    k = _U64(0)
    explore = False
    for a in range(_U64(arm_count[row])):
        slot = start + _U64(a)
        if arm_active[slot]:
            active[k] = slot
            k += _U64(1)
            if obs[slot] < need:
                explore = True
    st = load_stream(streams, row)
    if explore:
        st = sample_without_replacement_s(st, np.int64(k), np.int64(k), order, taken)
        chosen = _U64(0)
        for p in range(k):
            slot = _U64(active[_U64(order[p])])
            if obs[slot] < need:
                chosen = slot
                break
        store_stream(streams, row, st)
        return arm_value[chosen]
    saved = st
    st, rare = _skip_choice(st, k)
    if rare:
        st = sample_without_replacement_s(saved, np.int64(k), np.int64(k), order, taken)
    best = 0.0
    chosen = _U64(0)
    for p in range(k):
        slot = _U64(active[p])
        scale = math.sqrt(1.0 / prec[slot])
        st, z = standard_normal_s(st)
        draw = mean[slot] + scale * z
        if p == 0 or draw > best:
            best = draw
            chosen = slot
    store_stream(streams, row, st)
    return arm_value[chosen]


# step 4: + the ziggurat's rare branches out of line, the first arm peeled (branchy maximum)
@numba.njit(**INLINE)
def _row4(row, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need_a, streams, active, order, taken):
    row = _U64(row)
    start = _U64(arm_start[row])
    need = need_a[row]
    k = _U64(0)
    explore = False
    for a in range(_U64(arm_count[row])):
        slot = start + _U64(a)
        on = arm_active[slot] != 0
        active[k] = slot
        k += _U64(on)
        explore |= on & (obs[slot] < need)
    st = load_stream(streams, row)
    if explore:
        st = sample_without_replacement_s(st, np.int64(k), np.int64(k), order, taken)
        chosen = _U64(0)
        for p in range(k):
            slot = _U64(active[_U64(order[p])])
            if obs[slot] < need:
                chosen = slot
                break
        store_stream(streams, row, st)
        return arm_value[chosen]
    saved = st
    st, rare = _skip_choice(st, k)
    if rare:
        st = sample_without_replacement_s(saved, np.int64(k), np.int64(k), order, taken)
    slot = _U64(active[0])
    st, z = _normal_fast(st)
    best = mean[slot] + math.sqrt(1.0 / prec[slot]) * z
    chosen = slot
    for p in range(_U64(1), k):
        slot = _U64(active[p])
        st, z = _normal_fast(st)
        draw = mean[slot] + math.sqrt(1.0 / prec[slot]) * z
        if draw > best:
            best = draw
            chosen = slot
    store_stream(streams, row, st)
    return arm_value[chosen]


def _batch(row_fn, signed=False):
    @numba.njit(**HELPER)
    def loop(rows, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need, streams, active, order, taken, out):
        for i in range(rows.shape[0]):
            out[i] = row_fn(rows[i], arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need, streams, active,
                            order, taken)

    @numba.njit(nogil=True, error_model="numpy")
    def kernel(rows, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need, streams, out):
        m = 1
        for i in range(rows.shape[0]):
            m = max(m, arm_count[rows[i]])
        loop(rows, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need, streams,
             np.empty(m, np.uint64), np.empty(m, np.int64), np.zeros(m, np.uint8), out)

    @numba.njit(nogil=True, error_model="numpy")
    def kernel_signed(rows, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need, streams, out):
        m = 1
        for i in range(rows.shape[0]):
            m = max(m, arm_count[rows[i]])
        loop(rows, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need, streams,
             np.empty(m, np.int64), np.empty(m, np.int64), np.zeros(m, np.uint8), out)

    return kernel_signed if signed else kernel


@numba.njit(nogil=True, error_model="numpy")
def step5(rows, arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need, streams, out):
    m = 1
    for i in range(rows.shape[0]):
        m = max(m, arm_count[rows[i]])
    _decide_rows(rows, 0, rows.shape[0], arm_start, arm_count, arm_active, arm_value, obs, mean, prec, need, streams,
                 np.empty(m, np.uint64), np.empty(m, np.int64), np.zeros(m, np.uint8), out)


STEPS = [
    ("0: before (a compiled per-row call, 13 arguments)", step0),
    ("1: one function (row inlined in one NRT-free loop)", _batch(_row1, signed=True)),
    ("2: + unsigned indices", _batch(_row2)),
    ("3: + permutation skipped when nobody explores", _batch(_row3)),
    ("4: + ziggurat tail out of line, first arm peeled", _batch(_row4)),
    ("5: + branch-free first maximum (the kernel now)", step5),
]


def _copy(streams: Streams) -> Streams:
    return Streams(*(np.array(a, copy=True) for a in streams))


def ladder(fleet, repeats: int) -> list[tuple[str, float, float]]:
    s = fleet.ours._store
    rows = np.ascontiguousarray(fleet.rows.array, np.int64)
    n = rows.shape[0]
    arrays = (s.arm_start, s.arm_count, s.arm_active, s.arm_value, s.observation_count, s.posterior_mean,
              s.posterior_precision, s.num_exploration)
    sides = []
    want = None
    for name, fn in STEPS:
        streams = _copy(s.streams)
        out = np.empty(n, np.int64)
        fn(rows, *arrays, streams, out)  # compile, warm
        check_streams = _copy(s.streams)
        check = np.empty(n, np.int64)
        fn(rows, *arrays, check_streams, check)
        if want is None:
            want = (check.copy(), [a.copy() for a in check_streams])
        elif not (np.array_equal(check, want[0]) and all(np.array_equal(a, b) for a, b in zip(check_streams, want[1]))):
            raise AssertionError(f"step {name!r} decides differently")
        sides.append((name, lambda fn=fn, streams=streams, out=out: fn(rows, *arrays, streams, out)))
    floor = draws.decision_draws(s.streams, rows, s.arm_count)
    floor()
    sides.append(("floor: the same draws, our streams, no decision", floor))
    wall = {name: [] for name, _ in sides}
    cpu = {name: [] for name, _ in sides}
    for _ in range(repeats):  # alternating rounds: load falls on every side alike
        for name, call in sides:
            t0, c0 = time.perf_counter(), time.process_time()
            call()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return [(name, statistics.median(wall[name]) / n * 1e9, statistics.median(cpu[name]) / n * 1e9) for name, _ in sides]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--arms", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=41)
    args = ap.parse_args()
    for title, build in (("bench fleet (one seed for every job)", gts_fleet),
                         ("independent streams, own bowls, ragged arm counts", random_gts_fleet)):
        fleet = build(args.jobs, args.arms)
        result = ladder(fleet, args.repeats)
        floor_wall, floor_cpu = result[-1][1], result[-1][2]
        print(f"\n{title}: {args.jobs:,} jobs, {args.arms} arms (mean); ns per decision, median of {args.repeats}")
        print(f"{'step':<58} {'wall':>7} {'cpu':>7} {'/floor (cpu)':>12}")
        for name, w, c in result:
            print(f"{name:<58} {w:7.1f} {c:7.1f} {c / floor_cpu:11.2f}x")


if __name__ == "__main__":
    main()

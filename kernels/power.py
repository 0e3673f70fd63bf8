"""Open-addressing hash table of JIT power-limit entries, keyed by (row, batch size).

Layout: every (job row, batch size) pair that was ever observed owns one
*entry* ``e`` in ``0 .. n_entries[0] - 1``, numbered in first-observation
order. Entry arrays (all of the same length, the entry capacity):

    entry_row[e]          int64    the job row
    entry_batch_size[e]   int64    the batch size
    best_power_limit[e]   int64    power limit of the lowest cost seen so far
    best_cost[e]          float64  that lowest cost
    observe_count[e]      int64    observations of this (row, batch size)

``table`` (int64, length a power of two) maps a hashed key to an entry:
``table[p] == -1`` is an empty position, otherwise it holds the entry index.
Collisions are resolved by linear probing. There is no deletion, so a probe
stops at the first empty position. The table is derived data: it can always be
rebuilt from the entry arrays with :func:`rebuild_table`, which is also how it
grows. Callers keep the load at most one half and guarantee, before calling
:func:`observe_entries`, that the entry arrays and table have room for one new
entry per observation in the batch; the kernels never grow anything.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "EMPTY",
    "hash_key",
    "find_entry",
    "lookup_entries",
    "predict_power_limits",
    "observe_one",
    "observe_entries",
    "rebuild_table",
]

_JIT = dict(cache=True, nogil=True, error_model="numpy")

# An empty table position; also what lookups return for a missing key.
EMPTY = -1

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


@numba.njit(**_JIT)
def _mix64(x):
    # splitmix64's finalizer: a bijection on 64-bit words with full avalanche.
    x = (x ^ (x >> _S30)) * _MIX1
    x = (x ^ (x >> _S27)) * _MIX2
    return x ^ (x >> _S31)


@numba.njit(**_JIT)
def hash_key(row, batch_size):
    """64-bit hash of a (row, batch size) key."""
    h = _mix64(np.uint64(row) * _GOLDEN + np.uint64(1))
    return _mix64(h ^ np.uint64(batch_size))


@numba.njit(**_JIT)
def _probe(row, batch_size, table, entry_row, entry_batch_size):
    """Table position holding the key, or the empty position where it would go."""
    mask = np.uint64(table.shape[0] - 1)
    pos = np.int64(hash_key(row, batch_size) & mask)
    while True:
        e = table[pos]
        if e == EMPTY or (entry_row[e] == row and entry_batch_size[e] == batch_size):
            return pos
        pos = (pos + 1) & (table.shape[0] - 1)


@numba.njit(**_JIT)
def find_entry(row, batch_size, table, entry_row, entry_batch_size):
    """Entry index of (row, batch size), or ``EMPTY`` when it was never observed."""
    if row < 0:
        return EMPTY
    return table[_probe(row, batch_size, table, entry_row, entry_batch_size)]


@numba.njit(**_JIT)
def lookup_entries(rows, batch_sizes, table, entry_row, entry_batch_size, out):
    """``out[i]``: entry of (rows[i], batch_sizes[i]) or ``EMPTY``. Negative rows miss."""
    for i in range(rows.shape[0]):
        out[i] = find_entry(rows[i], batch_sizes[i], table, entry_row, entry_batch_size)


@numba.njit(**_JIT)
def predict_power_limits(rows, batch_sizes, table, entry_row, entry_batch_size, best_power_limit, missing, out):
    """``out[i]``: best power limit of (rows[i], batch_sizes[i]), or ``missing``.

    Read-only: a key that was never observed gets ``missing`` and no entry.
    """
    for i in range(rows.shape[0]):
        e = find_entry(rows[i], batch_sizes[i], table, entry_row, entry_batch_size)
        out[i] = missing if e == EMPTY else best_power_limit[e]


@numba.njit(**_JIT)
def observe_one(
    row,
    batch_size,
    power_limit,
    cost,
    table,
    entry_row,
    entry_batch_size,
    best_power_limit,
    best_cost,
    observe_count,
    n_entries,
):
    """Fold one observation in; returns its entry. Room for a new entry is the caller's job.

    The first observation of a key sets its best; later ones replace it only
    when strictly cheaper, so the earliest of equally cheap power limits stays.
    """
    pos = _probe(row, batch_size, table, entry_row, entry_batch_size)
    e = table[pos]
    if e == EMPTY:
        e = n_entries[0]
        n_entries[0] = e + 1
        table[pos] = e
        entry_row[e] = row
        entry_batch_size[e] = batch_size
        best_power_limit[e] = power_limit
        best_cost[e] = cost
        observe_count[e] = 1
        return e
    observe_count[e] += 1
    if best_cost[e] > cost:
        best_power_limit[e] = power_limit
        best_cost[e] = cost
    return e


@numba.njit(**_JIT)
def observe_entries(
    rows,
    batch_sizes,
    power_limits,
    costs,
    table,
    entry_row,
    entry_batch_size,
    best_power_limit,
    best_cost,
    observe_count,
    n_entries,
):
    """Fold many observations in, in array order (repeated keys see each other)."""
    for i in range(rows.shape[0]):
        observe_one(
            rows[i],
            batch_sizes[i],
            power_limits[i],
            costs[i],
            table,
            entry_row,
            entry_batch_size,
            best_power_limit,
            best_cost,
            observe_count,
            n_entries,
        )


@numba.njit(**_JIT)
def rebuild_table(table, n_entries, entry_row, entry_batch_size):
    """Clear ``table`` and insert entries ``0 .. n_entries - 1`` (entry order)."""
    table[:] = EMPTY
    for e in range(n_entries):
        pos = _probe(entry_row[e], entry_batch_size[e], table, entry_row, entry_batch_size)
        table[pos] = e

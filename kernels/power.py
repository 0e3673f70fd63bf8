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
``table[p] == -1`` (``EMPTY``) is an empty position, otherwise it packs the
entry index in its low 32 bits and a 31-bit fingerprint of the key's hash
above them. Collisions are resolved by linear probing; the fingerprints let a
probe walk past other keys without touching the entry arrays, so a lookup
costs about one random memory access into the table plus one into the
entries. There is no deletion, so a probe stops at the first empty position.
The table is derived data: it can always be rebuilt from the entry arrays
with :func:`rebuild_table`, which is also how it grows. Callers keep the load
at most one half, keep fewer than ``MAX_ENTRIES`` entries, and guarantee,
before calling :func:`observe_entries`, that the entry arrays and table have
room for one new entry per observation in the batch; the kernels never grow
anything.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "EMPTY",
    "MAX_ENTRIES",
    "hash_key",
    "find_entry",
    "lookup_entries",
    "predict_power_limits",
    "observe_entries",
    "rebuild_table",
]

from ._config import INLINE as _INLINE, JIT as _JIT

# An empty table position; also what lookups return for a missing key.
EMPTY = -1
# Entry indices live in the low 32 bits of a table slot.
MAX_ENTRIES = 1 << 32
_LOW32 = np.int64(0xFFFFFFFF)
_FP_MASK = np.uint64(0x7FFFFFFF)
_S32 = np.uint64(32)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


@numba.njit(**_INLINE)
def _mix64(x):
    # splitmix64's finalizer: a bijection on 64-bit words with full avalanche.
    x = (x ^ (x >> _S30)) * _MIX1
    x = (x ^ (x >> _S27)) * _MIX2
    return x ^ (x >> _S31)


@numba.njit(**_INLINE)
def _hash(row, batch_size):
    h = _mix64(np.uint64(row) * _GOLDEN + np.uint64(1))
    return _mix64(h ^ np.uint64(batch_size))


@numba.njit(**_JIT)
def hash_key(row, batch_size):
    """64-bit hash of a (row, batch size) key."""
    return _hash(row, batch_size)


@numba.njit(**_INLINE)
def _fingerprint(h):
    # 31 high hash bits: a packed slot stays non-negative, so never EMPTY.
    return np.int64((h >> _S32) & _FP_MASK)


@numba.njit(**_INLINE)
def _probe(row, batch_size, table, entry_row, entry_batch_size):
    """Table position holding the key, or the empty position where it would go."""
    h = _hash(row, batch_size)
    fp = _fingerprint(h)
    last = table.shape[0] - 1
    pos = np.int64(h & np.uint64(last))
    while True:
        slot = table[pos]
        if slot == EMPTY:
            return pos
        if (slot >> 32) == fp:
            e = slot & _LOW32
            if entry_row[e] == row and entry_batch_size[e] == batch_size:
                return pos
        pos = (pos + 1) & last


@numba.njit(**_INLINE)
def _slot(row, batch_size, e):
    return (_fingerprint(_hash(row, batch_size)) << 32) | e


@numba.njit(**_JIT)
def find_entry(row, batch_size, table, entry_row, entry_batch_size):
    """Entry index of (row, batch size), or ``EMPTY`` when it was never observed (or row < 0)."""
    if row < 0:
        return EMPTY
    slot = table[_probe(row, batch_size, table, entry_row, entry_batch_size)]
    return EMPTY if slot == EMPTY else slot & _LOW32


@numba.njit(**_JIT)
def lookup_entries(rows, batch_sizes, table, entry_row, entry_batch_size, out):
    """``out[i]``: entry of (rows[i], batch_sizes[i]) or ``EMPTY``. Negative rows miss."""
    for i in range(rows.shape[0]):
        slot = EMPTY
        if rows[i] >= 0:
            slot = table[_probe(rows[i], batch_sizes[i], table, entry_row, entry_batch_size)]
        out[i] = EMPTY if slot == EMPTY else slot & _LOW32


@numba.njit(**_JIT)
def predict_power_limits(rows, batch_sizes, table, entry_row, entry_batch_size, best_power_limit, missing, out):
    """``out[i]``: best power limit of (rows[i], batch_sizes[i]), or ``missing``.

    Read-only: a key that was never observed (or a negative row) gets ``missing``.
    """
    for i in range(rows.shape[0]):
        slot = EMPTY
        if rows[i] >= 0:
            slot = table[_probe(rows[i], batch_sizes[i], table, entry_row, entry_batch_size)]
        out[i] = missing if slot == EMPTY else best_power_limit[slot & _LOW32]


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
    """Fold observations in, in array order, so repeated keys see each other.

    A key's first observation creates its entry (room for one new entry per
    observation is the caller's job) and sets its best; later ones replace the
    best only when strictly cheaper, so the earliest of equally cheap power
    limits stays. (The body is written out here rather than in a helper: an
    inlined helper that writes to arrays compiles to much slower code.)
    """
    for i in range(rows.shape[0]):
        row = rows[i]
        batch_size = batch_sizes[i]
        cost = costs[i]
        pos = _probe(row, batch_size, table, entry_row, entry_batch_size)
        slot = table[pos]
        if slot == EMPTY:
            e = n_entries[0]
            n_entries[0] = e + 1
            table[pos] = _slot(row, batch_size, e)
            entry_row[e] = row
            entry_batch_size[e] = batch_size
            observe_count[e] = 1
            best_power_limit[e] = power_limits[i]
            best_cost[e] = cost
        else:
            e = slot & _LOW32
            observe_count[e] += 1
            if best_cost[e] > cost:
                best_power_limit[e] = power_limits[i]
                best_cost[e] = cost


@numba.njit(**_JIT)
def rebuild_table(table, n_entries, entry_row, entry_batch_size):
    """Clear ``table`` and insert entries ``0 .. n_entries - 1`` (entry order)."""
    table[:] = EMPTY
    for e in range(n_entries):
        pos = _probe(entry_row[e], entry_batch_size[e], table, entry_row, entry_batch_size)
        table[pos] = _slot(entry_row[e], entry_batch_size[e], e)

"""Compaction of the unbounded reward-history chunk pool (job removal and reset).

Removing or resetting jobs leaves the chunks of their arms unreachable. When
the store compacts, every live arm's chain is copied, in slot order and chain
order, into a fresh pool: the result is the pool a store that never held the
dead chunks would have after one chunk per arm per ``CHUNK`` rewards (the
chunk numbering differs from allocation order, which nothing depends on).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["compact_chunk_pool"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(**_JIT)
def compact_chunk_pool(slot_chunks, chunk_next, chunk_values, new_next, new_values):
    """Copy every chain of ``slot_chunks`` (``[first, last]`` per slot, -1 for none) into
    ``new_next``/``new_values`` and rewrite ``slot_chunks`` in place; return the chunks used.

    The caller sizes the new arrays to the live chunk count (sum of
    ceil(history_count / CHUNK) over the slots).
    """
    k = 0
    for slot in range(slot_chunks.shape[0]):
        chunk = slot_chunks[slot, 0]
        if chunk < 0:
            slot_chunks[slot, 1] = -1
            continue
        first = k
        prev = -1
        while chunk >= 0:
            for j in range(chunk_values.shape[1]):
                new_values[k, j] = chunk_values[chunk, j]
            new_next[k] = -1
            if prev >= 0:
                new_next[prev] = k
            prev = k
            k += 1
            chunk = chunk_next[chunk]
        slot_chunks[slot, 0] = first
        slot_chunks[slot, 1] = prev
    return k

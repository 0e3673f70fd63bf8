"""The fleet handle: one numba structref holding every array of a fleet.

Kernels that work on a whole fleet take ``(handle, rows, ...)`` instead of the
13-42 arrays the state is made of. Calling a compiled function with a handle
unboxes one pointer (the structref's meminfo) instead of one array struct per
array, which is most of the cost of a scalar call (see docs/kernels.md for the
measurements). Top-level kernels (:mod:`.fleet`) read the fields once and pass
them on to the NRT-free helpers, so inner loops compile exactly as before.

Fields (all arrays; see docs/architecture.md for their meaning):

=====================  ===================================================
store arrays           ``arm_start`` ... ``pool_used`` (:data:`STORE_FIELDS`)
``streams``            :class:`~.streams.Streams`, the per-job PCG64 states
``pruning``            :class:`~.pruning.PruningArrays`: the per-job record block (its
                       validation scratch included) and per-arm flags (empty for plain GTS)
``one_*``              one-element buffers of the scalar entry points
``sum_*``              summation stack of the scalar refits (``stats.allocate_sum_stack``)
``slot_window``, ...   per-job settings (:data:`SETTING_FIELDS`): each arm's history
                       window and ring offset, each job's prior mean and precision
                       and explorations per arm (store arrays)
``num_rounds``         each job's pruning rounds (an empty array for plain GTS)
``config_i``           int64 settings: refit (1: learned precision)
=====================  ===================================================

A handle only references arrays; whoever replaces an array (the store, when it
grows) must build a new handle. :class:`banditfleet.store.FleetStore` bumps
``layout_version`` whenever it replaces one, and the optimizers rebuild their
handle when that number changes.
"""

from __future__ import annotations

import numba
from numba.core import types
from numba.experimental import structref

from ._config import JIT as _JIT

__all__ = [
    "FleetHandle",
    "FleetHandleType",
    "STORE_FIELDS",
    "SETTING_FIELDS",
    "HANDLE_FIELDS",
    "new_handle",
    "PowerHandle",
    "PowerHandleType",
    "POWER_FIELDS",
    "new_power_handle",
]

STORE_FIELDS = (
    "arm_start",
    "arm_count",
    "arm_active",
    "arm_value",
    "observation_count",
    "posterior_mean",
    "posterior_precision",
    "reward_precision",
    "history_count",
    "history_values",
    "chunk_values",
    "chunk_next",
    "slot_chunks",
    "pool_used",
)

# Per-slot (window, ring offset) and per-job settings arrays of the store.
SETTING_FIELDS = (
    "slot_window",
    "slot_offset",
    "prior_mean",
    "prior_precision",
    "num_exploration",
)

ONE_FIELDS = (
    "one_row", "one_value", "one_slot", "one_cost", "one_flag", "one_out", "sum_frames", "sum_partial", "config_i",
)

HANDLE_FIELDS = STORE_FIELDS + SETTING_FIELDS + ("streams", "pruning", "num_rounds") + ONE_FIELDS


@structref.register
class FleetHandleType(types.StructRef):
    """numba type of a :class:`FleetHandle` (parametrized by its fields' array types)."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(t)) for name, t in fields)


class FleetHandle(structref.StructRefProxy):
    """Python side of a fleet handle: opaque, pass it to the handle kernels.

    Build it with :func:`new_handle` (compiled once and cached on disk); reading
    fields from Python works but is slow (each access is a compiled call).
    """


structref.define_proxy(FleetHandle, FleetHandleType, list(HANDLE_FIELDS))


@numba.njit(**_JIT)
def new_handle(
    arm_start, arm_count, arm_active, arm_value, observation_count, posterior_mean, posterior_precision,
    reward_precision, history_count, history_values, chunk_values, chunk_next, slot_chunks, pool_used,
    slot_window, slot_offset, prior_mean, prior_precision, num_exploration,
    streams, pruning, num_rounds, one_row, one_value, one_slot, one_cost, one_flag, one_out, sum_frames,
    sum_partial, config_i,
):
    """A handle over the given arrays (in :data:`HANDLE_FIELDS` order)."""
    return FleetHandle(
        arm_start, arm_count, arm_active, arm_value, observation_count, posterior_mean, posterior_precision,
        reward_precision, history_count, history_values, chunk_values, chunk_next, slot_chunks, pool_used,
        slot_window, slot_offset, prior_mean, prior_precision, num_exploration,
        streams, pruning, num_rounds, one_row, one_value, one_slot, one_cost, one_flag, one_out, sum_frames,
        sum_partial, config_i,
    )


# The power-limit table (kernels/power.py): entries, the hash table, the entry
# count, and the scalar calls' buffers (row, batch size, power limit; cost).
POWER_FIELDS = (
    "table",
    "entry_row",
    "entry_batch_size",
    "best_power_limit",
    "best_cost",
    "observe_count",
    "n_entries",
    "one_int",
    "one_cost",
)


@structref.register
class PowerHandleType(types.StructRef):
    """numba type of a :class:`PowerHandle`."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(t)) for name, t in fields)


class PowerHandle(structref.StructRefProxy):
    """Python side of a power-limit table handle (see :class:`FleetHandle`)."""


structref.define_proxy(PowerHandle, PowerHandleType, list(POWER_FIELDS))


@numba.njit(**_JIT)
def new_power_handle(table, entry_row, entry_batch_size, best_power_limit, best_cost, observe_count, n_entries, one_int, one_cost):
    """A power handle over the given arrays (in :data:`POWER_FIELDS` order)."""
    return PowerHandle(table, entry_row, entry_batch_size, best_power_limit, best_cost, observe_count, n_entries, one_int, one_cost)

"""The struct-of-arrays fleet store: job keys to dense rows, ragged arm slots, histories.

One :class:`FleetStore` holds every job of one optimizer. Job-level arrays are
indexed by row, arm-level arrays by slot; job ``r`` owns slots
``arm_start[r] : arm_start[r] + arm_count[r]`` in the order its arm values
were given. Capacities grow geometrically, so registering jobs one by one or a
million at once both cost amortized O(1) per job and arm. Optimizers add their
own per-job and per-arm arrays with :meth:`FleetStore.add_job_array` and
:meth:`FleetStore.add_arm_array`; those grow with the store.

See docs/architecture.md for the table of arrays and dtypes.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from banditfleet._boundary import flatten_arms as _flatten_arms, key_list, unhashable, validate_arms as _validate_arms
from banditfleet.errors import JobConflictError, UnknownJobError
from banditfleet.rows import Rows, RowSpace
from banditfleet.kernels.distributions import FLOYD_MAX_POPULATION
from banditfleet.kernels.lifecycle import compact_chunk_pool
from banditfleet.kernels.streams import Streams, allocate_streams
from banditfleet.kernels.thompson import CHUNK, check_history_chunks

__all__ = ["FleetStore", "MAX_ARMS_PER_JOB", "HISTORY_NONE", "HISTORY_UNBOUNDED"]

# numpy's choice() uses Floyd's algorithm (what the kernels reproduce) up to this size.
MAX_ARMS_PER_JOB = FLOYD_MAX_POPULATION

HISTORY_NONE = -1
HISTORY_UNBOUNDED = 0

_MIN_CAPACITY = 16
# After a compaction every capacity is this many times the live count (at least
# _MIN_CAPACITY), and a store compacts once the dead part of any region exceeds
# 1 / _DEAD_FRACTION of the live part: see docs/architecture.md ("Removal").
_COMPACT_SLACK = 1.5
_DEAD_FRACTION = 4


class _Removed:
    """Placeholder key of a removed job's row until the store compacts."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<removed job>"


_REMOVED = _Removed()


def _grown(array: np.ndarray, capacity: int, fill: Any) -> np.ndarray:
    new = np.full((capacity,) + array.shape[1:], fill, dtype=array.dtype)
    new[: array.shape[0]] = array
    return new


def _sized(loaded: np.ndarray | None, like: np.ndarray, capacity: int, fill: Any, adopt: bool) -> np.ndarray:
    """``loaded`` as an array of ``capacity`` rows shaped and typed like ``like`` (the rest ``fill``).

    With ``adopt`` an array that already has that exact layout and owns its
    memory is used as it is, without a copy (a freshly read checkpoint).
    """
    shape = (capacity,) + like.shape[1:]
    if loaded is None:
        return np.full(shape, fill, dtype=like.dtype)
    if (
        adopt
        and loaded.shape == shape
        and loaded.dtype == like.dtype
        and loaded.flags.c_contiguous
        and loaded.flags.writeable
        and loaded.flags.owndata
    ):
        return loaded
    new = np.empty(shape, dtype=like.dtype)
    n = loaded.shape[0]
    new[:n] = loaded
    new[n:] = fill
    return new


class FleetStore:
    """Rows, arm slots and reward histories of a fleet of bandit jobs.

    Every arm slot keeps its reward history with its own window
    ``slot_window[slot]`` (all slots of a job share their job's window): 0
    keeps every reward (the reference's ``window_size=0``) in a pool of
    ``CHUNK``-reward chunks linked per slot; ``W > 0`` keeps the last ``W``
    rewards in a ring of ``W`` doubles, contiguous in the ring pool
    ``history_values`` at ``slot_offset[slot]``. The ring pool is allocated
    in registration order, so it holds exactly the sum of the windows.

    Args:
        history_window: ``HISTORY_NONE`` (-1) keeps no reward history at all
            (no history arrays); otherwise the window of jobs registered
            without their own (``HISTORY_UNBOUNDED`` = 0, or ``W > 0``).
    """

    def __init__(self, history_window: int = HISTORY_NONE) -> None:
        self.history_window = int(history_window)
        self.keeps_history = self.history_window != HISTORY_NONE
        self._rows: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []
        # The identity of this row numbering and its generation (tagged Rows check both).
        # ``generation`` below is this space's counter: removal and compaction bump it.
        self.row_space = RowSpace(f"FleetStore@{id(self):x}")
        # Bumped whenever an array is replaced (growth), so callers may cache
        # tuples of the arrays and rebuild them only when this changes.
        self.layout_version = 0
        self.n_jobs = 0
        self.n_arms = 0
        self._job_fill: dict[str, Any] = {}
        self._arm_fill: dict[str, Any] = {}
        self._slot_refs: set[str] = set()
        self._scratch: set[str] = set()
        # Per-job records (add_job_record): block name -> its columns.
        self._records: dict[str, tuple[tuple[str, Any, Any, bool, bool], ...]] = {}
        self._record_columns: dict[str, tuple[str, int, Any]] = {}
        self.arm_start = np.zeros(_MIN_CAPACITY, np.int64)
        self.arm_count = np.zeros(_MIN_CAPACITY, np.int64)
        self._job_fill.update(arm_start=0, arm_count=0)
        self.streams: Streams = allocate_streams(_MIN_CAPACITY)
        self.arm_value = np.zeros(_MIN_CAPACITY, np.int64)
        self.posterior_mean = np.zeros(_MIN_CAPACITY, np.float64)
        self.posterior_precision = np.zeros(_MIN_CAPACITY, np.float64)
        self.reward_precision = np.zeros(_MIN_CAPACITY, np.float64)
        self.observation_count = np.zeros(_MIN_CAPACITY, np.int64)
        self.arm_active = np.ones(_MIN_CAPACITY, np.uint8)
        self.history_count = np.zeros(_MIN_CAPACITY, np.int64)
        self._arm_fill.update(
            arm_value=0,
            posterior_mean=0.0,
            posterior_precision=0.0,
            reward_precision=0.0,
            observation_count=0,
            arm_active=1,
            history_count=0,
        )
        keeps = self.keeps_history
        # Per-slot window and ring offset (empty when no history is kept).
        self.slot_window = np.zeros(0, np.int64)
        self.slot_offset = np.zeros(0, np.int64)
        if keeps:
            self.add_arm_array("slot_window", np.int64, 0)
            self.add_arm_array("slot_offset", np.int64, -1)
        # Windowed history: the ring pool, filled up to ring_used[0].
        self.history_values = np.zeros(_MIN_CAPACITY if keeps else 0, np.float64)
        self.ring_used = np.zeros(1, np.int64)
        # Unbounded history: a pool of CHUNK-reward chunks, linked per slot
        # (slot_chunks[slot] = first and last chunk).
        self.slot_chunks = np.full((_MIN_CAPACITY if keeps else 0, 2), -1, np.int64)
        self.chunk_values = np.zeros((_MIN_CAPACITY if keeps else 0, CHUNK), np.float64)
        self.chunk_next = np.full(_MIN_CAPACITY if keeps else 0, -1, np.int64)
        self.pool_used = np.zeros(1, np.int64)
        # Arm slots with window 0, dead ones included (they are the only ones that take chunks).
        self.n_unbounded_arms = 0
        # Per-job arrays that a checkpoint written before they existed may lack
        # (filled with their fill value, the optimizer-wide setting, on load).
        self._optional: set[str] = set()
        # Removal and reset (see remove(), compact()): rows of removed jobs stay
        # in place, dead, until the store compacts; ``generation`` counts the
        # changes that make rows held by callers stale (removal, compaction).
        self.generation = 0
        self.n_dead_jobs = 0
        self.n_dead_arms = 0
        self.n_dead_chunks = 0
        self.auto_compact = True
        self.on_compact: Callable[[], None] | None = None
        self.n_dead_ring = 0  # ring-pool places of removed jobs' arms
        self.add_job_array("alive", np.uint8, 1, scratch=True)

    # ------------------------------------------------------------------ arrays
    def add_job_array(
        self,
        name: str,
        dtype: Any,
        fill: Any = 0,
        width: int | None = None,
        slot_ref: bool = False,
        scratch: bool = False,
        optional: bool = False,
    ) -> None:
        """Add a per-job array (``width`` makes it 2-D) that grows with the store.

        ``slot_ref`` marks an array whose values are arm slots of the same job
        (or -1); loading a checkpoint checks them, so a forged file cannot
        make a kernel index outside the job's arms. ``scratch`` arrays are
        working space, not state: checkpoints leave them out and a load
        leaves them at ``fill``. ``optional`` arrays (per-job settings added
        after the checkpoint format first shipped) may be missing from a
        checkpoint: the loaded jobs get ``fill``.
        """
        self.layout_version += 1
        shape = (self.arm_start.shape[0],) if width is None else (self.arm_start.shape[0], width)
        setattr(self, name, np.full(shape, fill, dtype=dtype))
        self._job_fill[name] = fill
        if slot_ref:
            self._slot_refs.add(name)
        if scratch:
            self._scratch.add(name)
        if optional:
            self._optional.add(name)

    def add_arm_array(self, name: str, dtype: Any, fill: Any = 0) -> None:
        """Add a per-arm-slot array that grows with the store."""
        self.layout_version += 1
        setattr(self, name, np.full(self.arm_value.shape[0], fill, dtype=dtype))
        self._arm_fill[name] = fill

    def add_job_record(self, name: str, columns: tuple[tuple[str, Any, Any, bool, bool], ...]) -> None:
        """Add a per-job record: one int64 row of ``len(columns)`` columns per job.

        ``columns`` are ``(column, dtype, fill, slot_ref, scratch)``: a float64
        column holds its value's bits (read it through the block's float64
        view), any other dtype its value. The record grows, compacts and
        resets like any per-job array. Checkpoints hold one array per column,
        ``job.<column>`` with the column's dtype (scratch columns left out),
        so a checkpoint does not depend on how the record is laid out.
        ``store.<column>`` is a view of the column (for inspection and Python-side
        checks; kernels index the block).
        """
        fill = np.array(
            [np.float64(f).view(np.int64) if np.dtype(d) == np.float64 else int(f) for _, d, f, _, _ in columns],
            np.int64,
        )
        self.add_job_array(name, np.int64, fill, width=len(columns))
        self._records[name] = tuple(columns)
        for i, (column, dtype, _, _, _) in enumerate(columns):
            self._record_columns[column] = (name, i, np.dtype(dtype))

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not attributes: the columns of the records.
        columns = self.__dict__.get("_record_columns")
        if columns is None or name not in columns:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        block, i, dtype = columns[name]
        array = self.__dict__[block]
        return (array.view(np.float64) if dtype == np.float64 else array)[:, i]

    def _record_export(self, name: str, n: int) -> dict[str, np.ndarray]:
        """The non-scratch columns of record ``name``'s first ``n`` rows, one array each."""
        block = getattr(self, name)[:n]
        out = {}
        for i, (column, dtype, _, _, scratch) in enumerate(self._records[name]):
            if scratch:
                continue
            col = np.ascontiguousarray(block[:, i])
            out[f"job.{column}"] = col.view(np.float64) if np.dtype(dtype) == np.float64 else col.astype(dtype)
        return out

    def _record_import(self, name: str, arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Record ``name``'s block for ``n`` loaded jobs from its per-column arrays."""
        columns = self._records[name]
        block = np.empty((n, len(columns)), np.int64)
        block[:] = self._job_fill[name]
        for i, (column, dtype, _, _, scratch) in enumerate(columns):
            if scratch:
                continue
            got = arrays[f"job.{column}"]
            if np.dtype(dtype) == np.float64:
                block[:, i] = np.ascontiguousarray(got, np.float64).view(np.int64)
            else:
                block[:, i] = got
        return block

    @property
    def job_capacity(self) -> int:
        return int(self.arm_start.shape[0])

    @property
    def arm_capacity(self) -> int:
        return int(self.arm_value.shape[0])

    def _reserve_jobs(self, n_more: int) -> None:
        need = self.n_jobs + n_more
        if need <= self.job_capacity:
            return
        capacity = max(need, 2 * self.job_capacity)
        self.layout_version += 1
        for name, fill in self._job_fill.items():
            setattr(self, name, _grown(getattr(self, name), capacity, fill))
        old = self.streams
        new = allocate_streams(capacity)
        for src, dst in zip(old, new):
            dst[: src.shape[0]] = src
        self.streams = new

    def _reserve_arms(self, n_more: int) -> None:
        need = self.n_arms + n_more
        if need <= self.arm_capacity:
            return
        capacity = max(need, 2 * self.arm_capacity)
        self.layout_version += 1
        for name, fill in self._arm_fill.items():
            setattr(self, name, _grown(getattr(self, name), capacity, fill))
        if self.keeps_history:
            self.slot_chunks = _grown(self.slot_chunks, capacity, -1)

    def _reserve_ring(self, n_more: int) -> None:
        need = int(self.ring_used[0]) + n_more
        if need <= self.history_values.shape[0]:
            return
        capacity = max(need, 2 * self.history_values.shape[0])
        self.layout_version += 1
        self.history_values = _grown(self.history_values, capacity, 0.0)

    def reserve_history_for(self, slots: np.ndarray) -> None:
        """Make room for one reward appended to each of ``slots`` (chunks for unbounded ones)."""
        if not self.keeps_history or self.n_unbounded_arms == 0:
            return
        if self.n_unbounded_arms == self.n_arms:
            self.reserve_history_chunks(slots.shape[0])
        else:
            self.reserve_history_chunks(int(np.count_nonzero(self.slot_window[slots] == 0)))

    def reserve_history_chunks(self, n_more: int) -> None:
        """Make room for ``n_more`` new history chunks (one per appended reward at most)."""
        if not self.keeps_history or self.n_unbounded_arms == 0:
            return
        need = int(self.pool_used[0]) + n_more
        if need <= self.chunk_next.shape[0]:
            return
        capacity = max(need, 2 * self.chunk_next.shape[0])
        self.layout_version += 1
        self.chunk_values = _grown(self.chunk_values, capacity, 0.0)
        self.chunk_next = _grown(self.chunk_next, capacity, -1)

    # -------------------------------------------------------------- job keys
    def __len__(self) -> int:
        """Live jobs (registered and not removed)."""
        return self.n_jobs - self.n_dead_jobs

    def __contains__(self, key: Hashable) -> bool:
        return key in self._rows

    def keys(self) -> list[Hashable]:
        """Live job keys in row order."""
        if self.n_dead_jobs:
            return [k for k in self._keys if k is not _REMOVED]
        return list(self._keys)

    def key_of(self, row: int) -> Hashable:
        return self._keys[row]

    def row(self, key: Hashable) -> int:
        """Row of one job key (:class:`UnknownJobError` when never registered)."""
        try:
            return self._rows[key]
        except KeyError:
            raise UnknownJobError(f"unknown job {key!r}: register it first") from None
        except TypeError:
            raise unhashable([key]) from None

    def resolve(self, jobs: Rows | Iterable[Hashable] | np.ndarray) -> np.ndarray:
        """The int64 rows of a batch call's ``jobs``: tagged :class:`Rows` of this store
        (checked, not copied) or job keys. A plain integer array is job keys."""
        if isinstance(jobs, Rows):
            return self.row_space.check(jobs)
        return self.key_rows(key_list(jobs))

    def key_rows(self, keys: list[Hashable]) -> np.ndarray:
        """Rows of a list of job keys (:class:`UnknownJobError` naming the first unknown one)."""
        if not keys:
            return np.zeros(0, np.int64)
        try:
            if len(keys) == 1:
                return np.array([self._rows[keys[0]]], np.int64)
            return np.fromiter(operator.itemgetter(*keys)(self._rows), np.int64, len(keys))
        except (KeyError, TypeError):
            for key in keys:
                self.row(key)
            raise

    def rows(self, keys: Rows | Iterable[Hashable] | np.ndarray) -> Rows:
        """Resolve many job keys to tagged :class:`Rows`, once, for the hot path."""
        if isinstance(keys, Rows):
            self.row_space.check(keys)
            return keys
        return self.row_space.tag(self.key_rows(key_list(keys)))

    def internal_rows(self, rows: np.ndarray) -> Rows:
        """Tag an int64 row array this store wrote itself (journal records), after checking
        that every row is in range and belongs to a live job."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= self.n_jobs)):
            raise UnknownJobError(f"job rows outside 0 .. {self.n_jobs - 1} (shape {rows.shape})")
        if self.n_dead_jobs and rows.size and not self.alive[rows].all():
            raise UnknownJobError(f"job row {int(rows[self.alive[rows] == 0][0])} belongs to a removed job")
        return self.row_space.tag(rows)

    @property
    def generation(self) -> int:
        """Counts the changes that make rows held by callers stale (removal, compaction,
        a checkpoint import): the generation of :attr:`row_space`, which tagged
        :class:`~banditfleet.rows.Rows` compare with theirs."""
        return self.row_space.generation

    @generation.setter
    def generation(self, value: int) -> None:
        self.row_space.generation = int(value)

    def arms_of(self, row: int) -> np.ndarray:
        """A copy of the job's arm values, in registration order."""
        start = int(self.arm_start[row])
        return self.arm_value[start : start + int(self.arm_count[row])].copy()

    # ----------------------------------------------------------- registration
    def register(
        self,
        keys: Sequence[Hashable],
        arm_lists: Sequence[Sequence[int]] | np.ndarray,
        settings: dict[str, np.ndarray] | None = None,
        windows: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Register new jobs; return ``(rows, new)`` for every key.

        ``arm_lists`` is a sequence of batch-size lists, or a 2-D integer array
        (one row per job, the fast path for millions of jobs). ``settings``
        maps names of per-job arrays to one (validated) value per key, written
        to the new jobs' rows; ``windows`` is each key's history window (by
        default ``history_window``). A key that is already registered with the
        same arm values and settings is left untouched (``new`` is False);
        with different ones it is a :class:`JobConflictError`. Nothing is
        written unless the whole batch is valid.
        """
        settings = settings or {}
        if windows is not None and not self.keeps_history:
            raise ValueError("this store keeps no reward history: it takes no windows")
        keys = list(keys)
        flat, counts = _flatten_arms(keys, arm_lists)
        starts = np.zeros(len(keys), np.int64)
        if len(keys):
            np.cumsum(counts[:-1], out=starts[1:])
        _validate_arms(keys, flat, counts, starts)

        rows = np.empty(len(keys), np.int64)
        new = np.ones(len(keys), bool)
        try:
            fresh = len(set(keys)) == len(keys) and self._rows.keys().isdisjoint(keys)
        except TypeError:
            raise unhashable(keys) from None
        first_index: dict[Hashable, int] = {}
        if fresh and self.auto_compact and self.n_dead_jobs and (
            self.n_jobs + len(keys) > self.job_capacity or self.n_arms + flat.shape[0] > self.arm_capacity
        ):
            # Reclaim removed jobs' rows and slots instead of growing over them.
            self._compact_now()
        if fresh:
            # The common case, millions of new keys: no per-key checks needed.
            rows[:] = np.arange(self.n_jobs, self.n_jobs + len(keys))
            first_index = dict(zip(keys, range(len(keys))))
        else:
            next_row = self.n_jobs
            for i, key in enumerate(keys):
                arms = flat[starts[i] : starts[i] + counts[i]]
                existing = self._rows.get(key)
                if existing is not None:
                    known = self.arms_of(existing)
                elif key in first_index:
                    j = first_index[key]
                    known = flat[starts[j] : starts[j] + counts[j]]
                    existing = int(rows[j])
                else:
                    first_index[key] = i
                    rows[i] = next_row
                    next_row += 1
                    continue
                if known.shape != arms.shape or not np.array_equal(known, arms):
                    raise JobConflictError(
                        f"job {key!r} is already registered with batch sizes {known.tolist()}; "
                        f"got {arms.tolist()}"
                    )
                self._check_same_settings(key, i, existing, key in self._rows, first_index.get(key), settings, windows)
                rows[i] = existing
                new[i] = False
        n_new = int(new.sum())
        if n_new == 0:
            return rows, new
        self._reserve_jobs(n_new)
        new_counts = counts[new]
        self._reserve_arms(int(new_counts.sum()))
        new_rows = rows[new]
        offsets = np.zeros(n_new, np.int64)
        np.cumsum(new_counts[:-1], out=offsets[1:])
        self.arm_start[new_rows] = self.n_arms + offsets
        self.arm_count[new_rows] = new_counts
        if n_new == len(keys):
            new_flat = flat
        else:
            new_flat = np.concatenate([flat[starts[i] : starts[i] + counts[i]] for i in np.flatnonzero(new)])
        self.arm_value[self.n_arms : self.n_arms + new_flat.shape[0]] = new_flat
        for name, values in settings.items():
            getattr(self, name)[new_rows] = values[new] if n_new != len(keys) else values
        if self.keeps_history:
            job_windows = np.full(n_new, self.history_window, np.int64) if windows is None else windows[new]
            slot_windows = np.repeat(job_windows, new_counts)
            lo, hi = self.n_arms, self.n_arms + new_flat.shape[0]
            self.slot_window[lo:hi] = slot_windows
            ring = slot_windows > 0
            offsets = np.full(slot_windows.shape[0], -1, np.int64)
            if ring.any():
                sizes = slot_windows[ring]
                total = int(sizes.sum())
                self._reserve_ring(total)
                ends = np.cumsum(sizes)
                offsets[ring] = int(self.ring_used[0]) + ends - sizes
                self.ring_used[0] += total
            self.slot_offset[lo:hi] = offsets
            self.n_unbounded_arms += int(slot_windows.shape[0] - np.count_nonzero(ring))
        for key, i in first_index.items():
            self._rows[key] = int(rows[i])
        self._keys.extend(first_index.keys())
        self.n_jobs += n_new
        self.n_arms += int(new_flat.shape[0])
        return rows, new

    def _check_same_settings(
        self,
        key: Hashable,
        i: int,
        existing: int,
        registered: bool,
        first: int | None,
        settings: dict[str, np.ndarray],
        windows: np.ndarray | None,
    ) -> None:
        """A key given again (already registered, or earlier in the batch) must bring the same settings."""
        given = dict(settings)
        if self.keeps_history:
            given["window_size"] = (
                np.full(i + 1, self.history_window, np.int64) if windows is None else windows
            )
        for name, values in given.items():
            if registered:
                if name == "window_size":
                    known = self.slot_window[self.arm_start[existing]]
                else:
                    known = getattr(self, name)[existing]
            else:
                known = values[first]
            if known != values[i] and not (known != known and values[i] != values[i]):
                raise JobConflictError(
                    f"job {key!r} is already registered with {name}={_plain(known)}; got {name}={_plain(values[i])}"
                )

    def job_windows(self, rows: np.ndarray) -> np.ndarray:
        """Each row's history window (0: unbounded); ``HISTORY_NONE`` when no history is kept."""
        if not self.keeps_history:
            return np.full(rows.shape[0], HISTORY_NONE, np.int64)
        return self.slot_window[self.arm_start[rows]]

    def job_slots(self, rows: np.ndarray) -> np.ndarray:
        """All arm slots of the given rows, concatenated in row order."""
        counts = self.arm_count[rows]
        starts = self.arm_start[rows]
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, np.int64)
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        return np.arange(total, dtype=np.int64) + offsets

    # ------------------------------------------------------- removal, reset
    def live_counts(self) -> dict[str, int]:
        """Live jobs, arm slots and history chunks (what a fresh store with the same jobs holds)."""
        return {
            "jobs": self.n_jobs - self.n_dead_jobs,
            "arms": self.n_arms - self.n_dead_arms,
            "chunks": int(self.pool_used[0]) - self.n_dead_chunks,
        }

    def remove(self, rows: np.ndarray) -> None:
        """Remove the jobs of ``rows`` (distinct, live: checked by the caller).

        Their keys are forgotten at once and their rows refused from now on;
        the rows, arm slots and history stay allocated, dead, until the store
        compacts (:meth:`maybe_compact`). Bumps :attr:`generation`.
        """
        slots, n_slots = self.slots_of(rows)
        self.free_history(slots)
        if self.keeps_history:
            self.n_dead_ring += int(self.slot_window[slots].sum())
        for r in rows.tolist():
            del self._rows[self._keys[r]]
            self._keys[r] = _REMOVED
        self.alive[rows] = 0
        self.n_dead_jobs += int(rows.shape[0])
        self.n_dead_arms += n_slots
        self.generation += 1

    def slots_of(self, rows: np.ndarray) -> tuple[np.ndarray | slice, int]:
        """The arm slots of ``rows`` as an index (a slice for one row: cheaper) and their number."""
        if rows.shape[0] == 1:
            start = int(self.arm_start[rows[0]])
            count = int(self.arm_count[rows[0]])
            return slice(start, start + count), count
        slots = self.job_slots(rows)
        return slots, int(slots.shape[0])

    def free_history(self, slots: np.ndarray | slice) -> None:
        """Empty the reward history of ``slots``: unbounded chunks become garbage until
        compaction, rings are zeroed (and stay the slots')."""
        if self.keeps_history:
            windows = self.slot_window[slots]
            unbounded = windows == 0
            counts = self.history_count[slots] + (CHUNK - 1)
            counts //= CHUNK
            self.n_dead_chunks += int(counts[unbounded].sum())
            if isinstance(slots, slice):
                self.slot_chunks[slots][unbounded] = -1
            else:
                self.slot_chunks[slots[unbounded]] = -1
            ring = ~unbounded
            if ring.any():
                self.history_values[_ring_places(self.slot_offset[slots][ring], windows[ring])] = 0.0
        self.history_count[slots] = 0

    def wants_compaction(self) -> bool:
        """Whether the dead part of the rows, arm slots or history chunks exceeds a
        quarter of the live part (a rule of logical counts only, so a journal
        replay reaches the same decision)."""
        regions = (
            (self.n_dead_jobs, self.n_jobs),
            (self.n_dead_arms, self.n_arms),
            (self.n_dead_chunks, int(self.pool_used[0])),
            (self.n_dead_ring, int(self.ring_used[0])),
        )
        for dead, used in regions:
            if dead and dead * _DEAD_FRACTION > max(used - dead, _MIN_CAPACITY):
                return True
        return False

    def maybe_compact(self) -> bool:
        """Compact when :meth:`wants_compaction` (and ``auto_compact``); return whether it did."""
        if self.auto_compact and self.wants_compaction():
            self._compact_now()
            return True
        return False

    def _compact_now(self) -> None:
        self.compact()
        if self.on_compact is not None:
            self.on_compact()

    def compact(self) -> None:
        """Drop removed jobs and freed history: live rows, slots and chunks move down, in order.

        Every capacity becomes 1.5 times its live count (at least 16), so the
        allocated arrays follow the live jobs. Rows and slots renumber:
        :attr:`generation` and :attr:`layout_version` change. Job order (and
        so :meth:`keys`) is kept.
        """
        live_rows = np.flatnonzero(self.alive[: self.n_jobs]).astype(np.int64)
        n_live = int(live_rows.shape[0])
        counts = self.arm_count[live_rows]
        old_starts = self.arm_start[live_rows]
        new_starts = np.zeros(n_live, np.int64)
        if n_live:
            np.cumsum(counts[:-1], out=new_starts[1:])
        keep = self.job_slots(live_rows)
        n_arms = int(keep.shape[0])
        job_cap = max(_MIN_CAPACITY, math.ceil(_COMPACT_SLACK * n_live))
        arm_cap = max(_MIN_CAPACITY, math.ceil(_COMPACT_SLACK * n_arms))
        self.layout_version += 1
        self.generation += 1
        for name, fill in self._job_fill.items():
            old = getattr(self, name)
            new = np.full((job_cap,) + old.shape[1:], fill, dtype=old.dtype)
            new[:n_live] = old[live_rows]
            setattr(self, name, new)
        self.arm_start[:n_live] = new_starts
        for name in self._slot_refs:
            ref = getattr(self, name)[:n_live]
            moved = ref >= 0
            ref[moved] += (new_starts - old_starts)[moved]
        for name, columns in self._records.items():
            block = getattr(self, name)
            for i, (_, _, _, slot_ref, _) in enumerate(columns):
                if slot_ref:
                    ref = block[:n_live, i]
                    moved = ref >= 0
                    ref[moved] += (new_starts - old_starts)[moved]
        streams = allocate_streams(job_cap)
        for src, dst in zip(self.streams, streams):
            dst[:n_live] = src[live_rows]
        self.streams = streams
        for name, fill in self._arm_fill.items():
            old = getattr(self, name)
            new = np.full(arm_cap, fill, dtype=old.dtype)
            new[:n_arms] = old[keep]
            setattr(self, name, new)
        if self.keeps_history:
            # Rings move down in slot order, each still contiguous.
            windows = self.slot_window[:n_arms]
            ring = windows > 0
            old_offsets = self.slot_offset[:n_arms].copy()
            sizes = windows[ring]
            ring_total = int(sizes.sum())
            values = np.zeros(max(_MIN_CAPACITY, math.ceil(_COMPACT_SLACK * ring_total)), np.float64)
            if ring_total:
                values[:ring_total] = self.history_values[_ring_places(old_offsets[ring], sizes)]
                self.slot_offset[:n_arms][ring] = np.cumsum(sizes) - sizes
            self.history_values = values
            self.ring_used[0] = ring_total
            self.n_dead_ring = 0
            self.n_unbounded_arms = int(n_arms - np.count_nonzero(ring))
            slot_chunks = np.full((arm_cap, 2), -1, np.int64)
            slot_chunks[:n_arms] = self.slot_chunks[keep]
            counts = self.history_count[:n_arms][windows == 0]
            n_chunks = int(((counts + CHUNK - 1) // CHUNK).sum())
            pool_cap = max(_MIN_CAPACITY, math.ceil(_COMPACT_SLACK * n_chunks))
            chunk_next = np.full(pool_cap, -1, np.int64)
            chunk_values = np.zeros((pool_cap, CHUNK), np.float64)
            used = compact_chunk_pool(slot_chunks[:n_arms], self.chunk_next, self.chunk_values, chunk_next, chunk_values)
            if used != n_chunks:  # pragma: no cover - would be a bug in the bookkeeping
                raise AssertionError(f"compaction copied {used} history chunks, expected {n_chunks}")
            self.slot_chunks = slot_chunks
            self.chunk_next = chunk_next
            self.chunk_values = chunk_values
            self.pool_used[0] = used
        self._keys = [self._keys[r] for r in live_rows.tolist()]
        self._rows = dict(zip(self._keys, range(n_live)))
        self.n_jobs = n_live
        self.n_arms = n_arms
        self.n_dead_jobs = self.n_dead_arms = self.n_dead_chunks = 0

    def allocated_nbytes(self) -> int:
        """Bytes of every state and scratch array as allocated (capacity, not use)."""
        arrays = [getattr(self, name) for name in (*self._job_fill, *self._arm_fill)]
        arrays += list(self.streams) + [self.history_values, self.slot_chunks, self.chunk_values, self.chunk_next]
        return int(sum(a.nbytes for a in arrays))

    # ----------------------------------------------------------- checkpoints
    def export_arrays(self) -> dict[str, np.ndarray]:
        """Every state array trimmed to its used length, named for a checkpoint.

        A store holding removed jobs or freed history compacts first (rows
        renumber, ``generation`` changes), so a checkpoint holds live state only.
        """
        if self.n_dead_jobs or self.n_dead_chunks:
            self._compact_now()
        out: dict[str, np.ndarray] = {}
        for name in self._job_fill:
            if name in self._records:
                out.update(self._record_export(name, self.n_jobs))
            elif name not in self._scratch:
                out[f"job.{name}"] = getattr(self, name)[: self.n_jobs]
        for field, arr in zip(Streams._fields, self.streams):
            out[f"stream.{field}"] = arr[: self.n_jobs]
        for name in self._arm_fill:
            out[f"arm.{name}"] = getattr(self, name)[: self.n_arms]
        if self.keeps_history:
            used = int(self.pool_used[0])
            out["history.values"] = self.history_values[: int(self.ring_used[0])]
            out["history.slot_chunks"] = self.slot_chunks[: self.n_arms]
            out["history.chunk_values"] = self.chunk_values[:used]
            out["history.chunk_next"] = self.chunk_next[:used]
        return out

    def import_arrays(self, keys: list[Hashable], arrays: dict[str, np.ndarray], adopt: bool = False) -> None:
        """Replace this (empty) store's state with checkpointed arrays, after checking them.

        Checks names, dtypes, lengths and every index a kernel will follow
        (arm ranges, slot references, history chunk links), so that state
        that passed its checksums but does not fit together is refused
        instead of reaching the kernels. Raises ``ValueError`` naming the array.
        With ``adopt=True`` the store may keep the given arrays themselves
        (no copy) when they own their memory: pass it only for arrays nobody
        else holds, such as those just read from a checkpoint.
        """
        if self.n_jobs:
            raise ValueError("import_arrays needs an empty store")
        n_jobs = len(keys)
        if len(set(keys)) != n_jobs:
            raise ValueError("duplicate job keys")
        expected = self.export_arrays()  # names and dtypes of an empty store
        arrays = self._upgraded(arrays, n_jobs)
        if set(arrays) != set(expected):
            missing = sorted(set(expected) - set(arrays))
            extra = sorted(set(arrays) - set(expected))
            raise ValueError(f"arrays do not match this optimizer (missing {missing}, unexpected {extra})")
        for name, ref in expected.items():
            got = arrays[name]
            if got.dtype != ref.dtype or got.shape[1:] != ref.shape[1:]:
                raise ValueError(f"array {name!r} has dtype {got.dtype} and shape {got.shape}, expected {ref.dtype} rows of {ref.shape[1:]}")
        counts = arrays["job.arm_count"]
        starts = arrays["job.arm_start"]
        n_arms = int(counts.sum()) if n_jobs else 0
        for name in expected:
            got = arrays[name]
            want = {"job": n_jobs, "stream": n_jobs, "arm": n_arms}.get(name.split(".")[0])
            if want is not None and got.shape[0] != want:
                raise ValueError(f"array {name!r} has {got.shape[0]} rows, expected {want}")
        if n_jobs and (counts.min() < 1 or counts.max() > MAX_ARMS_PER_JOB):
            raise ValueError("array 'job.arm_count' holds an impossible arm count")
        if n_jobs and not np.array_equal(starts, np.concatenate([[0], np.cumsum(counts)[:-1]])):
            raise ValueError("array 'job.arm_start' does not tile the arm slots")
        slot_refs = list(self._slot_refs) + [c[0] for cols in self._records.values() for c in cols if c[3]]
        for name in slot_refs:
            ref = arrays[f"job.{name}"]
            ok = (ref == -1) | ((ref >= starts) & (ref < starts + counts))
            if not ok.all():
                raise ValueError(f"array 'job.{name}' refers to an arm slot outside its job")
        history_count = arrays["arm.history_count"]
        if n_arms and history_count.min() < 0:
            raise ValueError("array 'arm.history_count' is negative")
        if self.keeps_history:
            slot_window = arrays["arm.slot_window"]
            _check_windows(slot_window, arrays["arm.slot_offset"], arrays["history.values"].shape[0], starts, counts)
            _check_chunks(arrays["history.slot_chunks"], arrays["history.chunk_next"], history_count, slot_window)
            if arrays["history.chunk_values"].shape[0] != arrays["history.chunk_next"].shape[0]:
                raise ValueError("arrays 'history.chunk_values' and 'history.chunk_next' differ in length")
        # Everything fits together: take it (with room to grow when the store is tiny).
        job_cap = max(n_jobs, self.job_capacity)
        arm_cap = max(n_arms, self.arm_capacity)
        self.layout_version += 1
        for name, fill in self._job_fill.items():
            if name in self._records:
                loaded = self._record_import(name, arrays, n_jobs)
                setattr(self, name, _sized(loaded, getattr(self, name), job_cap, fill, True))
                continue
            loaded = None if name in self._scratch else arrays[f"job.{name}"]
            setattr(self, name, _sized(loaded, getattr(self, name), job_cap, fill, adopt))
        self.streams = Streams._make(
            _sized(arrays[f"stream.{field}"], arr, job_cap, 0, adopt) for field, arr in zip(Streams._fields, self.streams)
        )
        for name, fill in self._arm_fill.items():
            setattr(self, name, _sized(arrays[f"arm.{name}"], getattr(self, name), arm_cap, fill, adopt))
        if self.keeps_history:
            ring = arrays["history.values"].shape[0]
            self.history_values = _sized(arrays["history.values"], self.history_values, max(ring, self.history_values.shape[0]), 0.0, adopt)
            self.ring_used[0] = ring
            self.n_unbounded_arms = int(np.count_nonzero(arrays["arm.slot_window"] == 0))
            used = arrays["history.chunk_next"].shape[0]
            pool_cap = max(used, self.chunk_next.shape[0])
            self.slot_chunks = _sized(arrays["history.slot_chunks"], self.slot_chunks, arm_cap, -1, adopt)
            self.chunk_values = _sized(arrays["history.chunk_values"], self.chunk_values, pool_cap, 0.0, adopt)
            self.chunk_next = _sized(arrays["history.chunk_next"], self.chunk_next, pool_cap, -1, adopt)
            self.pool_used[0] = used
        self._keys = list(keys)
        self._rows = dict(zip(self._keys, range(n_jobs)))
        self.row_space.invalidate()
        self.n_jobs = n_jobs
        self.n_arms = n_arms

    def _upgraded(self, arrays: dict[str, np.ndarray], n_jobs: int) -> dict[str, np.ndarray]:
        """Arrays of a checkpoint written before per-job settings, completed with the
        optimizer-wide settings (one window for every arm, rings at ``slot * W``).

        A file from before that has no ``arm.slot_window``; its windowed history
        is ``history.values`` of ``n_arms * W`` doubles, its unbounded history
        the chunk arrays. Current files are returned unchanged.
        """
        out = dict(arrays)
        n_arms = int(arrays["job.arm_count"].sum()) if n_jobs and "job.arm_count" in arrays else 0
        for name in self._optional:
            if f"job.{name}" not in out:
                out[f"job.{name}"] = np.full(n_jobs, self._job_fill[name], getattr(self, name).dtype)
        if self.keeps_history and "arm.slot_window" not in out:
            window = self.history_window
            out["arm.slot_window"] = np.full(n_arms, window, np.int64)
            out["arm.slot_offset"] = np.arange(n_arms, dtype=np.int64) * window if window > 0 else np.full(n_arms, -1, np.int64)
            out.setdefault("history.values", np.zeros(0, np.float64))
            out.setdefault("history.slot_chunks", np.full((n_arms, 2), -1, np.int64))
            out.setdefault("history.chunk_values", np.zeros((0, CHUNK), np.float64))
            out.setdefault("history.chunk_next", np.zeros(0, np.int64))
        return out

    def nbytes_per_arm(self) -> dict[str, int]:
        """Bytes of state per arm slot and per job, for the memory report."""
        per_arm = sum(getattr(self, name).dtype.itemsize for name in self._arm_fill)
        per_job = sum(getattr(self, name).itemsize * (getattr(self, name).shape[1] if getattr(self, name).ndim > 1 else 1) for name in self._job_fill)
        per_job += sum(a.dtype.itemsize for a in self.streams)
        return {
            "per_arm": per_arm,
            "per_window_slot": 8 if self.keeps_history else 0,
            "per_job": per_job,
            "unbounded_per_arm": 16 if self.keeps_history else 0,
        }


def _ring_places(offsets: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Every index of the rings at ``offsets`` of ``windows`` places, ring after ring."""
    total = int(windows.sum())
    starts = np.cumsum(windows) - windows
    return np.arange(total, dtype=np.int64) + np.repeat(offsets - starts, windows)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value








def _check_windows(slot_window: np.ndarray, slot_offset: np.ndarray, ring_size: int, starts: np.ndarray, counts: np.ndarray) -> None:
    """Windows are >= 0 and shared by each job's arms; every ring lies inside the pool, apart from the others."""
    if not slot_window.size:
        return
    if slot_window.min() < 0:
        raise ValueError("array 'arm.slot_window' holds a negative window")
    if not np.array_equal(slot_window, np.repeat(slot_window[starts], counts)):
        raise ValueError("array 'arm.slot_window' gives the arms of one job different windows")
    ring = slot_window > 0
    if not ring.any():
        return
    lo = slot_offset[ring]
    hi = lo + slot_window[ring]
    if lo.min() < 0 or hi.max() > ring_size:
        raise ValueError("array 'arm.slot_offset' puts a window outside 'history.values'")
    order = np.argsort(lo, kind="stable")
    if (lo[order][1:] < hi[order][:-1]).any():
        raise ValueError("array 'arm.slot_offset' makes two windows overlap")


def _check_chunks(slot_chunks: np.ndarray, chunk_next: np.ndarray, history_count: np.ndarray, slot_window: np.ndarray | None = None) -> None:
    """Every unbounded arm's chunk chain is in range, has ceil(count / CHUNK) links and ends at its
    last chunk (``slot_window`` None: every arm is unbounded)."""
    if slot_window is None:
        slot_window = np.zeros(history_count.shape[0], np.int64)
    n_pool = chunk_next.shape[0]
    need = (history_count + CHUNK - 1) // CHUNK
    if int(need[slot_window == 0].sum()) != n_pool:
        raise ValueError("history chunk pool does not match the arms' reward counts")
    if n_pool and ((chunk_next < -1) | (chunk_next >= n_pool)).any():
        raise ValueError("array 'history.chunk_next' links outside the chunk pool")
    bad = check_history_chunks(slot_chunks, chunk_next, history_count, slot_window)
    if bad >= 0:
        raise ValueError(f"history chunk chain of arm slot {int(bad)} is broken")

"""Just-in-time power-limit optimizer: the best power limit per job and batch size.

Decision-identical to ``zeus._legacy.policy.JITPowerLimitOptimizer``: for
each (job, batch size) it counts observations and keeps the power limit of the
lowest cost seen; the first of equally cheap power limits stays. A (job, batch
size) that was never observed needs profiling.

Jobs are any hashable keys and need no registration: the first observation of
a job gives it a row. Per-(row, batch size) state lives in a
:class:`PowerLimitTable`, plain arrays with an open-addressing hash table over
them (see ``banditfleet.kernels.power``), so the whole optimizer is a key list
plus arrays: :meth:`JITPowerLimitOptimizer.save` writes them as a checkpoint,
and :meth:`JITPowerLimitOptimizer.open` journals every call that changes them
(docs/checkpoints.md).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Hashable, Iterable, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numba
import numpy as np

from banditfleet import _boundary as B
from banditfleet._fastcall import entry_point
from banditfleet._journaled import Journaled
from banditfleet.kernels.fleet import power_best_one, power_observe_one
from banditfleet.kernels.handle import new_power_handle
from banditfleet.checkpoint import decode_keys, encode_keys, read_checkpoint, write_checkpoint
from banditfleet.errors import CheckpointError, JournalError, UnknownJobError
from banditfleet.rows import Rows, RowSpace
from banditfleet.kernels.power import (
    EMPTY,
    MAX_ENTRIES,
    find_entry,
    observe_entries,
    predict_power_limits,
    rebuild_table,
)

__all__ = [
    "JITPowerLimitOptimizer",
    "NEEDS_PROFILING",
    "MISSING_ROW",
    "PowerLimitState",
    "PowerLimitTable",
]

logger = logging.getLogger("banditfleet")

NEEDS_PROFILING: int = -1
"""What :meth:`JITPowerLimitOptimizer.predict_many` returns for a (job, batch size)
that was never observed, so its power limits must be profiled first (the scalar
:meth:`~JITPowerLimitOptimizer.predict` returns ``None`` there, like the
reference). Power limits are validated to be positive, so the sentinel can never
be mistaken for a real power limit; test with ``out == NEEDS_PROFILING``."""

MISSING_ROW: int = -1
"""The row :meth:`JITPowerLimitOptimizer.rows` gives, with ``create=False``, to a job
the optimizer has never seen (in ``Rows.array``). ``predict_many`` accepts such rows
(the answer is :data:`NEEDS_PROFILING`); ``observe_many`` does not."""

_INT64_MAX = np.iinfo(np.int64).max
_MIN_CAPACITY = 16
# Removal: compact once dead rows exceed a quarter of the live ones; after a
# compaction the entry capacity is 1.5 times the live entries (see docs/optimizers.md).
_DEAD_FRACTION = 4
_COMPACT_SLACK = 1.5


class _Removed:
    """Placeholder key of a removed job's row until the optimizer compacts."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<removed job>"


_REMOVED = _Removed()

JobsLike = Rows | Sequence[Hashable] | np.ndarray


class PowerLimitState(NamedTuple):
    """What the optimizer knows about one (job, batch size)."""

    best_power_limit: int
    best_cost: float
    observations: int


def _table_size(capacity: int) -> int:
    """Power-of-two table length that keeps the load at most one half."""
    return 1 << max(int(2 * capacity - 1).bit_length(), 1)


class PowerLimitTable:
    """Entry arrays plus the hash table over them (layout in ``banditfleet.kernels.power``).

    Entries are numbered in first-observation order and are never removed. The
    table is rebuilt from the entries whenever the capacity grows, so
    ``table`` is derived data and everything else is the state to persist.
    """

    _ENTRY_ARRAYS = (
        ("entry_row", np.int64),
        ("entry_batch_size", np.int64),
        ("best_power_limit", np.int64),
        ("best_cost", np.float64),
        ("observe_count", np.int64),
    )

    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        capacity = max(int(capacity), 1)
        self.n_entries = np.zeros(1, np.int64)
        for name, dtype in self._ENTRY_ARRAYS:
            setattr(self, name, np.zeros(capacity, dtype))
        self.table = np.full(_table_size(capacity), EMPTY, np.int64)
        # Bumped whenever an array is replaced: the cached handle is rebuilt then.
        self.layout_version = 0

    def __getstate__(self) -> dict[str, Any]:
        # A copy holds its own arrays: it builds its own handle (see handle()).
        state = self.__dict__.copy()
        for name in ("_h", "_h_version", "_h_type", "_entry_points", "_one_int", "_one_cost"):
            state.pop(name, None)
        return state

    def handle(self) -> Any:
        """The :class:`~banditfleet.kernels.handle.PowerHandle` over the current arrays."""
        d = self.__dict__
        if d.get("_h_version") == self.layout_version:
            return d["_h"]
        if "_one_int" not in d:
            d["_one_int"] = np.zeros(3, np.int64)
            d["_one_cost"] = np.zeros(1, np.float64)
        h = new_power_handle(
            self.table, self.entry_row, self.entry_batch_size, self.best_power_limit, self.best_cost,
            self.observe_count, self.n_entries, d["_one_int"], d["_one_cost"],
        )
        if numba.typeof(h) != d.get("_h_type"):
            d["_entry_points"] = {}
            d["_h_type"] = numba.typeof(h)
        d["_h"] = h
        d["_h_version"] = self.layout_version
        return h

    def call(self, name: str, dispatcher: Any, *args: Any) -> Any:
        """``dispatcher(handle, *args)`` through its compiled entry point (Python scalars only)."""
        h = self.handle()
        fn = self._entry_points.get(name)
        if fn is None:
            fn = self._entry_points[name] = entry_point(dispatcher, (h, *args))
        return fn(h, *args)

    def __len__(self) -> int:
        return int(self.n_entries[0])

    @property
    def capacity(self) -> int:
        """Entries that fit before the next growth."""
        return int(self.entry_row.shape[0])

    def reserve(self, n_more: int) -> None:
        """Make room for ``n_more`` new entries (grows geometrically, then rehashes)."""
        n = len(self)
        need = n + int(n_more)
        if need <= self.capacity:
            return
        if need > MAX_ENTRIES:
            raise OverflowError(f"{need} (job, batch size) entries requested; the table holds at most {MAX_ENTRIES}")
        capacity = min(max(need, 2 * self.capacity), MAX_ENTRIES)
        for name, dtype in self._ENTRY_ARRAYS:
            new = np.zeros(capacity, dtype)
            new[:n] = getattr(self, name)[:n]
            setattr(self, name, new)
        table = np.empty(_table_size(capacity), np.int64)
        rebuild_table(table, n, self.entry_row, self.entry_batch_size)
        self.table = table
        self.layout_version += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """Views of the live entries (first ``len(self)``), by array name."""
        n = len(self)
        return {name: getattr(self, name)[:n] for name, _ in self._ENTRY_ARRAYS}


class JITPowerLimitOptimizer(Journaled):
    """The best power limit for each job and batch size, learned from observed costs.

    Same decisions as ``zeus._legacy.policy.JITPowerLimitOptimizer``; jobs are
    any hashable keys and need no registration. On top of the reference's
    scalar :meth:`predict` and :meth:`observe`, :meth:`predict_many` and
    :meth:`observe_many` handle whole batches in one kernel call each, with
    results equal to the scalar calls made in array order.

    Rows: :meth:`rows` resolves job keys to tagged :class:`~banditfleet.rows.Rows`
    once, so hot loops can skip hashing keys. By default it also gives unseen
    keys new rows (a row alone is no state: every batch size of a new row still
    needs profiling); with ``create=False`` unseen keys get :data:`MISSING_ROW`
    instead. Every ``*_many`` call takes either keys or such Rows; a plain
    integer array is always job keys, and Rows of another optimizer (the
    batch-size optimizer of a pair numbers its jobs differently) are refused
    with :class:`~banditfleet.errors.ForeignRowsError`.

    Durability: :meth:`save` / :meth:`load` write and read the whole state as
    one checkpoint file; :meth:`open` gives an optimizer that journals every
    call that changes state (observations, and rows created for new keys) to
    a folder, with :meth:`checkpoint` and :meth:`close` (docs/checkpoints.md).

    Args:
        verbose: Log each scalar prediction through the ``banditfleet`` logger.
    """

    # Removal state (instances set these on their first removal).
    _n_dead = 0
    _dead_mask: np.ndarray | None = None
    _auto_compact = True

    @property
    def generation(self) -> int:
        """Bumped whenever rows obtained before may have become stale (removal,
        compaction): the generation of the row space tagged :class:`Rows` check."""
        return self._row_space.generation

    @generation.setter
    def generation(self, value: int) -> None:
        self._row_space.generation = int(value)

    @B.declare(verbose=B.VERBOSE)
    def __init__(self, verbose: bool = True) -> None:
        self.verbose = B.VERBOSE.check(verbose)
        self._row_space = RowSpace(f"JITPowerLimitOptimizer@{id(self):x}")
        self._rows: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []
        self._table = PowerLimitTable()
        # One-observation scratch for the scalar observe (the batch kernel is the only writer).

    @property
    def name(self) -> str:
        """Name of the power limit optimizer."""
        return "JITPSO"

    def _log(self, message: str) -> None:
        if self.verbose:
            logger.info("[%s] %s", self.name, message)

    # ------------------------------------------------------------------ keys
    def __len__(self) -> int:
        """Jobs with a row: observed ones, and those :meth:`rows` created (not removed)."""
        return len(self._keys) - self._n_dead

    def __contains__(self, job: Hashable) -> bool:
        try:
            return job in self._rows
        except TypeError:
            return False

    @property
    def jobs(self) -> list[Hashable]:
        """Job keys, in row order."""
        if self._n_dead:
            return [k for k in self._keys if k is not _REMOVED]
        return list(self._keys)

    @B.declare(row=B.ROW)
    def key_of(self, row: int) -> Hashable:
        """The job key of a row (an element of ``Rows.array``)."""
        r = B.ROW.check(row, "key_of")
        if not 0 <= r < len(self._keys) or (self._n_dead and self._keys[r] is _REMOVED):
            raise UnknownJobError(f"unknown job row {row!r}: rows run from 0 to {len(self._keys) - 1}")
        return self._keys[r]

    @property
    def table(self) -> PowerLimitTable:
        """The entry arrays and hash table (the optimizer's whole numeric state; entries of
        removed jobs stay in it, unreachable, until the optimizer compacts)."""
        return self._table

    @property
    def n_entries(self) -> int:
        """Observed (job, batch size) pairs of the jobs not removed."""
        if not self._n_dead:
            return len(self._table)
        t = self._table
        rows = t.entry_row[: len(t)]
        mask = self._dead_mask
        dead = mask[np.minimum(rows, mask.shape[0] - 1)].astype(bool) & (rows < mask.shape[0])
        return int(rows.shape[0] - dead.sum())

    @B.declare(jobs=B.JOBS, create=B.CREATE)
    def rows(self, jobs: JobsLike, create: bool = True) -> Rows:
        """Resolve job keys to tagged :class:`~banditfleet.rows.Rows`, once, for the ``*_many`` calls.

        With ``create=True`` (the default) keys never seen get new rows, in
        order of first appearance; with ``create=False`` they get
        :data:`MISSING_ROW` and nothing changes. A plain integer array is job
        keys. Rows given back are checked and returned as they are (with
        ``create=True`` they may not hold ``MISSING_ROW``).
        """
        create = B.CREATE.check(create)
        if isinstance(jobs, Rows):
            rows = self._row_space.check(jobs)
            if create and rows.size and rows.min() < 0:
                raise UnknownJobError("job row -1 (MISSING_ROW) has no job: resolve its key with rows(keys, create=True)")
            return jobs
        keys = B.key_list(jobs)
        rows = self._lookup(keys)
        if create:
            missing, new_keys = self._missing(keys, rows)
            if new_keys:
                encoded = self._journal_keys(new_keys)
                self._create_rows(keys, rows, missing, new_keys)
                if encoded is not None:
                    entry, key_arrays = encoded
                    self._record("register", key_arrays, {"keys": entry})
        return self._row_space.tag(rows)

    def _resolve(self, jobs: JobsLike, allow_missing: bool) -> tuple[np.ndarray, list[Hashable] | None]:
        """Rows of a batch call's ``jobs`` (unseen keys: ``MISSING_ROW``) and the keys if given."""
        if isinstance(jobs, Rows):
            rows = self._row_space.check(jobs)
            if not allow_missing and rows.size and rows.min() < 0:
                raise UnknownJobError(f"job row -1 (MISSING_ROW) cannot be observed: rows run from 0 to {len(self) - 1}")
            return rows, None
        keys = B.key_list(jobs)
        return self._lookup(keys), keys

    def _lookup(self, keys: list[Hashable]) -> np.ndarray:
        """Rows of ``keys``, ``MISSING_ROW`` for unseen ones; no change."""
        try:
            return np.fromiter(map(self._rows.get, keys, repeat(MISSING_ROW)), np.int64, len(keys))
        except TypeError:
            raise B.unhashable(keys) from None

    @staticmethod
    def _missing(keys: list[Hashable], rows: np.ndarray) -> tuple[np.ndarray, list[Hashable]]:
        """Indices of unseen keys, and the distinct unseen keys in order of first appearance."""
        missing = np.flatnonzero(rows < 0)
        if not missing.size:
            return missing, []
        return missing, list(dict.fromkeys(keys[i] for i in missing.tolist()))

    def _create_rows(self, keys: list[Hashable], rows: np.ndarray, missing: np.ndarray, new_keys: list[Hashable]) -> None:
        """Give ``new_keys`` (from :meth:`_missing`) rows, in order, and fill them into ``rows``."""
        if not missing.size:
            return
        start = len(self._keys)
        self._rows.update(zip(new_keys, range(start, start + len(new_keys))))
        self._keys.extend(new_keys)
        get = self._rows.__getitem__
        rows[missing] = np.fromiter((get(keys[i]) for i in missing.tolist()), np.int64, missing.size)

    def _internal_rows(self, rows: np.ndarray) -> Rows:
        """Tag an int64 row array this optimizer wrote itself (journal records), after
        checking that every row is in range and belongs to a live job."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= len(self._keys))):
            raise UnknownJobError(f"job rows outside 0 .. {len(self._keys) - 1} (shape {rows.shape})")
        if self._n_dead and rows.size:
            self._refuse_dead_rows(rows)
        return self._row_space.tag(rows)

    # ------------------------------------------------------------- decisions
    @B.declare(job=B.KEY, batch_size=B.POSITIVE_BATCH_SIZE)
    def predict(self, job: Hashable, batch_size: int) -> int | None:
        """The best power limit for ``job`` at ``batch_size``, or None if it needs profiling.

        Never changes any state.
        """
        pred = self._best(job, batch_size)
        if self.verbose:
            self._log(f"{job} @ {batch_size} -> PL = {'needs profiling' if pred is None else f'{pred}W'}")
        return pred

    @B.declare(jobs=B.JOBS, batch_sizes=B.POSITIVE_BATCH_SIZE)
    def predict_many(self, jobs: JobsLike, batch_sizes: Any) -> np.ndarray:
        """Best power limits as int64, :data:`NEEDS_PROFILING` where :meth:`predict` is None.

        ``jobs`` are keys or :class:`~banditfleet.rows.Rows` of this optimizer (see
        :meth:`rows`); unseen keys and ``MISSING_ROW`` need profiling. Never changes any state.
        """
        rows, keys = self._resolve(jobs, allow_missing=True)
        bs = B.POSITIVE_BATCH_SIZE.check_many(batch_sizes, rows.shape[0], self._who(rows, keys), "batch_sizes")
        t = self._table
        out = np.empty(rows.shape[0], np.int64)
        predict_power_limits(rows, bs, t.table, t.entry_row, t.entry_batch_size, t.best_power_limit, NEEDS_PROFILING, out)
        return out

    @B.declare(job=B.KEY, batch_size=B.POSITIVE_BATCH_SIZE, power_limit=B.POWER_LIMIT, cost=B.COST)
    def observe(self, job: Hashable, batch_size: int, power_limit: int, cost: float) -> None:
        """Learn from one run of ``job`` at ``batch_size`` and ``power_limit`` (watts) costing ``cost``."""
        bs = batch_size if type(batch_size) is int and 0 < batch_size <= B.INT64_MAX else B.POSITIVE_BATCH_SIZE.check(batch_size, f"job {job!r}")
        pl = power_limit if type(power_limit) is int and 0 < power_limit <= B.INT64_MAX else B.POWER_LIMIT.check(power_limit, f"job {job!r}")
        c = cost if type(cost) is float and cost - cost == 0.0 else B.COST.check(cost, f"job {job!r}")  # ints: one call
        try:
            row = self._rows.get(job)
        except TypeError:
            raise B.unhashable([job]) from None
        journal = self._folder is not None
        encoded = None
        if row is None:
            if journal:
                encoded = encode_keys([job])  # refuses a key a checkpoint cannot hold, before any change
            row = len(self._keys)
            self._rows[job] = row
            self._keys.append(job)
        t = self._table
        if t.n_entries[0] >= t.entry_row.shape[0]:
            t.reserve(1)
        t.call("power_observe_one", power_observe_one, row, bs, pl, c)
        if journal:
            self._record_observe(
                np.array([row], np.int64), np.array([bs], np.int64), np.array([pl], np.int64), np.array([c]), encoded
            )

    @B.declare(jobs=B.JOBS, batch_sizes=B.POSITIVE_BATCH_SIZE, power_limits=B.POWER_LIMIT, costs=B.COST)
    def observe_many(self, jobs: JobsLike, batch_sizes: Any, power_limits: Any, costs: Any) -> None:
        """Learn from many runs, applied in array order.

        Equal to calling :meth:`observe` for each index in order. The whole
        batch is validated before anything changes (new jobs included).
        """
        rows, keys = self._resolve(jobs, allow_missing=False)
        who = self._who(rows, keys)
        n = rows.shape[0]
        bs = B.POSITIVE_BATCH_SIZE.check_many(batch_sizes, n, who, "batch_sizes")
        pl = B.POWER_LIMIT.check_many(power_limits, n, who, "power_limits")
        c = B.COST.check_many(costs, n, who)
        encoded = None
        if keys is not None:
            missing, new_keys = self._missing(keys, rows)
            if new_keys:
                encoded = self._journal_keys(new_keys)
                self._create_rows(keys, rows, missing, new_keys)
        t = self._table
        t.reserve(rows.shape[0])
        observe_entries(
            rows, bs, pl, c, t.table, t.entry_row, t.entry_batch_size, t.best_power_limit, t.best_cost, t.observe_count, t.n_entries
        )
        if self._folder is not None:
            self._record_observe(rows, bs, pl, c, encoded)

    # ----------------------------------------------------------- checkpoints
    # Checkpoint array name -> PowerLimitTable attribute. The hash table is
    # derived data: it is rebuilt on load, never saved.
    _CHECKPOINT_ARRAYS = (
        ("entry.row", "entry_row"),
        ("entry.batch_size", "entry_batch_size"),
        ("entry.best_power_limit", "best_power_limit"),
        ("entry.best_cost", "best_cost"),
        ("entry.observe_count", "observe_count"),
    )

    def _settings(self) -> dict[str, Any]:
        """Constructor arguments (except ``verbose``): there are none."""
        return {}

    def _export_arrays(self) -> dict[str, np.ndarray]:
        """The live entries (first ``n_entries``), named for a checkpoint."""
        live = self._table.arrays()
        return {name: live[attr] for name, attr in self._CHECKPOINT_ARRAYS}

    def _import_arrays(self, keys: list[Hashable], arrays: dict[str, np.ndarray]) -> None:
        """Adopt checkpointed keys and entries into this empty optimizer, after checking them.

        Raises ``ValueError`` naming the array for state that does not fit
        together (rows out of range, non-positive batch sizes or power limits,
        counts below 1, non-finite costs, a (row, batch size) entered twice).
        """
        if self._keys or len(self._table):
            raise ValueError("import needs an empty optimizer")
        n_jobs = len(keys)
        if len(set(keys)) != n_jobs:
            raise ValueError("duplicate job keys")
        expected = {name: dtype for (name, attr), (_, dtype) in zip(self._CHECKPOINT_ARRAYS, PowerLimitTable._ENTRY_ARRAYS)}
        if set(arrays) != set(expected):
            missing = sorted(set(expected) - set(arrays))
            extra = sorted(set(arrays) - set(expected))
            raise ValueError(f"arrays do not match this optimizer (missing {missing}, unexpected {extra})")
        n = arrays["entry.row"].shape[0] if arrays["entry.row"].ndim == 1 else -1
        for name, dtype in expected.items():
            got = arrays[name]
            if got.dtype != np.dtype(dtype) or got.shape != (n,):
                raise ValueError(f"array {name!r} has dtype {got.dtype} and shape {got.shape}, expected {n} values of {np.dtype(dtype)}")
        if n > MAX_ENTRIES:
            raise ValueError(f"{n} entries; the table holds at most {MAX_ENTRIES}")
        row, bs = arrays["entry.row"], arrays["entry.batch_size"]
        if n:
            if row.min() < 0 or row.max() >= n_jobs:
                raise ValueError(f"array 'entry.row' refers to a job row outside 0 .. {n_jobs - 1}")
            if bs.min() <= 0:
                raise ValueError("array 'entry.batch_size' holds a batch size that is not positive")
            if arrays["entry.best_power_limit"].min() <= 0:
                raise ValueError("array 'entry.best_power_limit' holds a power limit that is not positive")
            if arrays["entry.observe_count"].min() < 1:
                raise ValueError("array 'entry.observe_count' holds a count below 1")
            if not np.isfinite(arrays["entry.best_cost"]).all():
                raise ValueError("array 'entry.best_cost' holds a cost that is not finite")
            order = np.lexsort((bs, row))
            r, b = row[order], bs[order]
            dup = np.flatnonzero((r[1:] == r[:-1]) & (b[1:] == b[:-1]))
            if dup.size:
                i = int(dup[0])
                raise ValueError(f"job row {int(r[i])} has two entries for batch size {int(b[i])}")
        # Everything fits together: adopt it (with room to grow) and rebuild the hash table.
        table = PowerLimitTable(max(n, _MIN_CAPACITY))
        for name, attr in self._CHECKPOINT_ARRAYS:
            getattr(table, attr)[:n] = arrays[name]
        table.n_entries[0] = n
        rebuild_table(table.table, n, table.entry_row, table.entry_batch_size)
        self._table = table
        self._keys = list(keys)
        self._rows = dict(zip(self._keys, range(n_jobs)))

    @B.declare(path=B.PATH)
    def save(self, path: str | os.PathLike) -> int:
        """Write the whole state (job keys and entries) to ``path`` atomically; returns its size in bytes.

        A key type a checkpoint cannot hold is refused with
        :class:`~banditfleet.errors.CheckpointError` and nothing is written.
        With removed jobs the optimizer compacts first (rows renumber).
        """
        self._compact_for_save()
        return write_checkpoint(path, type(self).__name__, self._settings(), self._keys, self._export_arrays())

    @classmethod
    @B.declare(path=B.PATH, verbose=B.VERBOSE)
    def load(cls, path: str | os.PathLike, verbose: bool = False) -> JITPowerLimitOptimizer:
        """Rebuild an optimizer saved with :meth:`save` (refuses other optimizers' files)."""
        B.VERBOSE.check(verbose)
        header, keys, arrays = read_checkpoint(path, cls.__name__)
        if header.get("settings") != {}:
            raise CheckpointError(f"{path}: the stored settings are not valid: {header.get('settings')!r}")
        opt = cls(verbose=verbose)
        try:
            opt._import_arrays(keys, arrays)
        except ValueError as exc:
            raise CheckpointError(f"{path}: inconsistent state: {exc}") from None
        return opt

    # --------------------------------------------------------------- journal
    def _journal_keys(self, keys: list[Hashable]) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """Encode new keys for the journal before anything changes (refuses unsavable keys)."""
        return None if self._folder is None else encode_keys(keys)

    def _record_observe(self, rows, bs, pl, c, encoded) -> None:
        arrays = {"rows": rows, "batch_sizes": bs, "power_limits": pl, "costs": c}
        extra = None
        if encoded is not None:
            # The rows created for new keys travel with the observation: one record, one call.
            entry, key_arrays = encoded
            arrays.update(key_arrays)
            extra = {"keys": entry}
        self._record("observe", arrays, extra)

    def _reorder_class(self, kind: str):
        return ("", 1) if kind == "observe" else None

    def _replay(self, kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        """Apply one journal record again (recovery runs before the folder is attached)."""
        if kind in ("remove", "reset", "compact"):
            self._auto_compact = False
            try:
                if kind == "compact":
                    self._compact()
                else:
                    keys = decode_keys(extra["keys"], arrays)
                    (self.remove_jobs if kind == "remove" else self.reset_jobs)(keys)
            finally:
                self._auto_compact = True
            return
        if kind not in ("register", "observe"):
            raise JournalError(f"unknown journal record kind {kind!r}")
        if "keys" in extra:
            self.rows(decode_keys(extra["keys"], arrays))
        if kind == "observe":
            # The record's int64 rows go back as this optimizer's tagged rows (a plain
            # integer array would be read as job keys).
            rows = self._internal_rows(arrays["rows"])
            self.observe_many(rows, arrays["batch_sizes"], arrays["power_limits"], arrays["costs"])

    # -------------------------------------------------------- removal, reset
    def _refuse_dead_rows(self, rows: np.ndarray) -> None:
        mask = self._dead_mask
        inside = rows[(rows >= 0) & (rows < mask.shape[0])]
        if inside.size and mask[inside].any():
            bad = int(inside[mask[inside].astype(bool)][0])
            raise UnknownJobError(f"job row {bad} belongs to a removed job")

    @B.declare(job=B.KEY)
    def remove_job(self, job: Hashable) -> None:
        """Forget ``job`` and every (job, batch size) entry of it (see :meth:`remove_jobs`)."""
        self.remove_jobs([job])

    @B.declare(jobs=B.JOBS)
    def remove_jobs(self, jobs: Iterable[Hashable]) -> None:
        """Forget jobs (keys) and all their (job, batch size) entries.

        :class:`UnknownJobError` for a key the optimizer has no row for (or one
        given twice), and then nothing changes. Removed rows are refused from
        now on; once dead rows exceed a quarter of the live ones the optimizer
        compacts (entries and rows renumber, the hash table is rebuilt,
        :attr:`generation` changes). A removed key observed again starts
        afresh: every batch size needs profiling. Journaled.
        """
        self._forget(jobs, "remove")

    def _forget(self, jobs: Iterable[Hashable], kind: str) -> None:
        keys = B.key_list(jobs)  # an integer array is keys; Rows are refused (not keys)
        rows = self._lookup(keys)
        if rows.size and rows.min() < 0:
            key = keys[int(np.argmin(rows))]
            raise UnknownJobError(f"unknown job {key!r}: the power-limit optimizer has no row for it")
        if len(set(rows.tolist())) != len(keys):
            seen: set[int] = set()
            for key, row in zip(keys, rows.tolist()):
                if row in seen:
                    raise UnknownJobError(f"job {key!r} appears twice in one call; after the first it is no longer known")
                seen.add(row)
        if not keys:
            return
        encoded = self._journal_keys(keys)
        n_rows = len(self._keys)
        mask = self._dead_mask
        if mask is None or mask.shape[0] < n_rows:
            grown = np.zeros(max(n_rows, 2 * (0 if mask is None else mask.shape[0])), np.uint8)
            if mask is not None:
                grown[: mask.shape[0]] = mask
            mask = self._dead_mask = grown
        mask[rows] = 1
        for key, row in zip(keys, rows.tolist()):
            del self._rows[key]
            self._keys[row] = _REMOVED
        self._n_dead += len(keys)
        self.generation += 1
        if encoded is not None:
            entry, key_arrays = encoded
            self._record(kind, key_arrays, {"keys": entry})
        live = len(self._keys) - self._n_dead
        if self._auto_compact and self._n_dead * _DEAD_FRACTION > max(live, _MIN_CAPACITY):
            self._compact()
            self._record("compact", {})

    @B.declare(job=B.KEY)
    def reset_job(self, job: Hashable) -> None:
        """Start ``job`` over (see :meth:`reset_jobs`)."""
        self.reset_jobs([job])

    @B.declare(jobs=B.JOBS)
    def reset_jobs(self, jobs: Iterable[Hashable]) -> None:
        """Start jobs over as if never seen: every batch size needs profiling again.

        Power-limit jobs need no registration, so a reset job is a removed one
        (:meth:`remove_jobs`): its key gets a new row at its next observation.
        Journaled as a reset.
        """
        self._forget(jobs, "reset")

    def _compact_for_save(self) -> None:
        """Drop removed jobs before a checkpoint (journaled), so it holds live state only."""
        if self._n_dead:
            self._compact()
            self._record("compact", {})

    def _compact(self) -> None:
        """Drop removed rows and their entries; live rows and entries keep their order."""
        n_rows = len(self._keys)
        dead = np.zeros(n_rows, bool)
        if self._dead_mask is not None:
            m = min(n_rows, self._dead_mask.shape[0])
            dead[:m] = self._dead_mask[:m].astype(bool)
        row_map = np.full(n_rows, -1, np.int64)
        n_live = int(n_rows - dead.sum())
        row_map[~dead] = np.arange(n_live, dtype=np.int64)
        old = self._table
        n = len(old)
        keep = np.flatnonzero(row_map[old.entry_row[:n]] >= 0)
        m = int(keep.shape[0])
        table = PowerLimitTable(max(_MIN_CAPACITY, math.ceil(_COMPACT_SLACK * m)))
        for name, _ in PowerLimitTable._ENTRY_ARRAYS:
            getattr(table, name)[:m] = getattr(old, name)[keep]
        table.entry_row[:m] = row_map[table.entry_row[:m]]
        table.n_entries[0] = m
        rebuild_table(table.table, m, table.entry_row, table.entry_batch_size)
        self._table = table
        self._keys = [k for k in self._keys if k is not _REMOVED]
        self._rows = dict(zip(self._keys, range(n_live)))
        self._n_dead = 0
        self._dead_mask = None
        self.generation += 1

    def memory_report(self) -> dict[str, int]:
        """Live jobs and entries, and the bytes the entry arrays and hash table have allocated."""
        t = self._table
        allocated = sum(getattr(t, name).nbytes for name, _ in PowerLimitTable._ENTRY_ARRAYS) + t.table.nbytes
        return {"jobs": len(self), "entries": len(t), "allocated_bytes": int(allocated)}

    # ---------------------------------------------------------- introspection
    def _row_and_batch_size(self, job: Hashable, batch_size: int) -> tuple[int, int]:
        """The job's row (``MISSING_ROW`` when unknown) and the validated batch size."""
        bs = batch_size if type(batch_size) is int and 0 < batch_size <= B.INT64_MAX else B.POSITIVE_BATCH_SIZE.check(batch_size, f"job {job!r}")
        try:
            return self._rows.get(job, MISSING_ROW), bs
        except TypeError:
            raise B.unhashable([job]) from None

    def _entry(self, job: Hashable, batch_size: int) -> int:
        row, bs = self._row_and_batch_size(job, batch_size)
        if row < 0:
            return EMPTY
        t = self._table
        return find_entry(row, bs, t.table, t.entry_row, t.entry_batch_size)

    def _best(self, job: Hashable, batch_size: int) -> int | None:
        # The boundary's validation, then one kernel call through the table's handle.
        row, bs = self._row_and_batch_size(job, batch_size)
        if row < 0:
            return None
        pl = self._table.call("power_best_one", power_best_one, row, bs, NEEDS_PROFILING)
        return None if pl == NEEDS_PROFILING else pl

    @B.declare(job=B.KEY, batch_size=B.POSITIVE_BATCH_SIZE)
    def best_power_limit(self, job: Hashable, batch_size: int) -> int | None:
        """Like :meth:`predict`, without logging."""
        return self._best(job, batch_size)

    @B.declare(job=B.KEY, batch_size=B.POSITIVE_BATCH_SIZE)
    def observations(self, job: Hashable, batch_size: int) -> int:
        """How many times (job, batch size) was observed (the reference's ``observe_count``)."""
        e = self._entry(job, batch_size)
        return 0 if e < 0 else int(self._table.observe_count[e])

    @B.declare(job=B.KEY)
    def state(self, job: Hashable) -> dict[int, PowerLimitState]:
        """Every observed batch size of ``job``, in first-observation order ({} if none)."""
        try:
            row = self._rows.get(job, MISSING_ROW)
        except TypeError:
            raise B.unhashable([job]) from None
        if row < 0:
            return {}
        a = self._table.arrays()
        return {
            int(a["entry_batch_size"][e]): PowerLimitState(
                int(a["best_power_limit"][e]), float(a["best_cost"][e]), int(a["observe_count"][e])
            )
            for e in np.flatnonzero(a["entry_row"] == row).tolist()
        }

    # ------------------------------------------------------------ validation
    def _who(self, rows: np.ndarray, keys: list[Hashable] | None) -> Any:
        """Names the job at each index of a batch, for the boundary's messages."""
        if keys is not None:
            return lambda i: f"job {keys[i]!r}"
        return lambda i: f"job {self._keys[int(rows[i])]!r}" if rows[i] >= 0 else f"job row {int(rows[i])}"



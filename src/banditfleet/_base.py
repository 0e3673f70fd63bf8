"""What every batch-size optimizer shares: the store, key resolution, batch validation.

Validation happens here, once, at the public boundary; the kernels behind it
trust their arrays.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from banditfleet._journaled import Journaled
from banditfleet.checkpoint import decode_keys, encode_keys, read_checkpoint, write_checkpoint
from banditfleet.errors import CheckpointError, InvalidObservationError, JournalError, UnknownBatchSizeError, UnknownJobError
from banditfleet._fastcall import entry_point
from banditfleet.kernels.thompson import find_arm_slots, observe_one, thompson_predict
from banditfleet.store import FleetStore

__all__ = ["ArmState", "JobsLike"]

logger = logging.getLogger("banditfleet")

JobsLike = Sequence[Hashable] | np.ndarray


class ArmState(NamedTuple):
    """One arm's learned state. Rewards are negative costs (energy-time cost)."""

    posterior_mean: float
    posterior_precision: float
    reward_precision: float
    observations: int


def _replayed_settings(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-job settings a register record carries, as ``register_jobs`` keywords.

    Records hold the settings that were given, as ``setting.<name>`` arrays
    (journals written before per-job settings hold at most ``seeds``).
    """
    out: dict[str, np.ndarray] = {}
    if "seeds" in arrays:
        out["seeds"] = arrays["seeds"]
    for name, values in arrays.items():
        if name.startswith("setting."):
            setting = name[len("setting.") :]
            out["seeds" if setting == "seed" else setting] = values
    return out


def _describe(values: Any) -> str:
    return type(values).__name__ if not isinstance(values, np.ndarray) else f"array of dtype {values.dtype}"


class _FleetOptimizer(Journaled):
    """Store-backed optimizer plumbing; subclasses define the policy."""

    _store: FleetStore
    verbose: bool
    # Per-job settings arrays of the store, besides the window.
    _JOB_SETTINGS: tuple[str, ...] = ("prior_mean", "prior_precision", "num_exploration", "seed")

    @property
    def name(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _log(self, message: str) -> None:
        if self.verbose:
            logger.info("[%s] %s", self.name, message)

    # ----------------------------------------------------------- checkpoints
    def _settings(self) -> dict[str, Any]:  # pragma: no cover - overridden
        """Constructor arguments (except ``verbose``) that rebuild an empty twin."""
        raise NotImplementedError

    def _export_arrays(self) -> dict[str, np.ndarray]:
        return self._store.export_arrays()

    def _import_arrays(self, keys: list[Hashable], arrays: dict[str, np.ndarray]) -> None:
        """Adopt arrays just read from a checkpoint (nobody else holds them)."""
        arrays = self._upgrade_arrays(keys, arrays)
        self._store.import_arrays(keys, arrays, adopt=True)

    def _upgrade_arrays(self, keys: list[Hashable], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Fill in what checkpoint format version 1 did not store: each job's registration
        seed (``job.seed``, needed by :meth:`reset_jobs`), taken to be the optimizer's seed."""
        if "job.seed" not in arrays and hasattr(self._store, "seed"):
            arrays = {**arrays, "job.seed": np.full(len(keys), self.seed, np.uint64)}
        return arrays

    def save(self, path: str | os.PathLike) -> int:
        """Write the whole optimizer state to ``path`` atomically; returns the file size in bytes.

        Loading it with :meth:`load` continues with bit-identical decisions.
        See docs/checkpoints.md for the format.
        """
        return write_checkpoint(path, type(self).__name__, self._settings(), self._store.keys(), self._export_arrays())

    @classmethod
    def load(cls, path: str | os.PathLike, verbose: bool = False):
        """Rebuild an optimizer saved with :meth:`save` (refuses other optimizers' files)."""
        header, keys, arrays = read_checkpoint(path, cls.__name__)
        try:
            opt = cls(**header["settings"], verbose=verbose)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: the stored settings are not valid: {exc}") from None
        try:
            opt._import_arrays(keys, arrays)
        except ValueError as exc:
            raise CheckpointError(f"{path}: inconsistent state: {exc}") from None
        return opt

    # --------------------------------------------------------------- journal
    # open(), checkpoint(), close() and _record() come from Journaled.
    def _replay(self, kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        """Apply one journal record again (recovery runs before the folder is attached).

        The store compacts during a replay only where the journal says it did
        (``compact`` records), never on its own.
        """
        store = self._store
        store.auto_compact = False
        try:
            self._replay_record(kind, arrays, extra)
        finally:
            store.auto_compact = True

    def _replay_record(self, kind: str, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        if kind in ("remove", "reset"):
            keys = decode_keys(extra["keys"], arrays)
            (self.remove_jobs if kind == "remove" else self.reset_jobs)(keys)
        elif kind == "compact":
            self._store.compact()
        elif kind == "register":
            keys = decode_keys(extra["keys"], arrays)
            counts = arrays["arm_counts"]
            flat = arrays["arms"]
            offsets = np.concatenate([[0], np.cumsum(counts)])
            arm_lists = [flat[offsets[i] : offsets[i + 1]] for i in range(len(keys))]
            self._replay_register(keys, arm_lists, arrays, extra)
        elif kind == "predict":
            self._replay_predict(arrays, extra)
        elif kind == "observe":
            self._replay_observe(arrays, extra)
        else:
            raise JournalError(f"unknown journal record kind {kind!r}")

    def _replay_register(self, keys, arm_lists, arrays, extra) -> None:
        self.register_jobs(keys, arm_lists, **_replayed_settings(arrays))

    def _replay_predict(self, arrays, extra) -> None:
        self.predict_many(arrays["rows"])

    def _replay_observe(self, arrays, extra) -> None:
        self.observe_many(arrays["rows"], arrays["batch_sizes"], arrays["costs"], arrays.get("converged"))

    def _journal_keys(self, keys: list[Hashable]) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """Encode keys for a register record before anything changes (refuses unsavable keys)."""
        if self._folder is None:
            return None
        return encode_keys(keys)

    def _record_register(self, encoded_keys, arm_lists: Any, extra: dict[str, Any] | None = None, arrays: dict[str, np.ndarray] | None = None) -> None:
        if encoded_keys is None:
            return
        entry, key_arrays = encoded_keys
        if isinstance(arm_lists, np.ndarray) and arm_lists.ndim == 2:
            flat = arm_lists.astype(np.int64).reshape(-1)
            counts = np.full(arm_lists.shape[0], arm_lists.shape[1], np.int64)
        else:
            lists = [np.asarray(a, dtype=np.int64).reshape(-1) for a in arm_lists]
            counts = np.array([a.shape[0] for a in lists], np.int64)
            flat = np.concatenate(lists) if lists else np.zeros(0, np.int64)
        self._record("register", {**key_arrays, "arms": flat, "arm_counts": counts, **(arrays or {})}, {"keys": entry, **(extra or {})})

    # -------------------------------------------------------- removal, reset
    @property
    def generation(self) -> int:
        """Bumped whenever rows obtained before may have become stale (a removal or a
        compaction renumbers or frees rows); compare it to refuse old rows cheaply."""
        return self._store.generation

    def _lifecycle_rows(self, jobs: Iterable[Hashable]) -> tuple[list[Hashable], np.ndarray]:
        """Keys (not rows) of live jobs, each at most once: their rows, or the named error."""
        if isinstance(jobs, np.ndarray) and jobs.dtype.kind in "iu":
            raise UnknownJobError("remove_jobs/reset_jobs take job keys, not a row array (pass integer keys as a list)")
        keys = list(jobs)
        rows = self._store.rows(keys)
        if len(set(rows.tolist())) != rows.shape[0]:
            seen: set[int] = set()
            for key, row in zip(keys, rows.tolist()):
                if row in seen:
                    raise UnknownJobError(f"job {key!r} appears twice in one call; after the first it is no longer registered")
                seen.add(row)
        return keys, rows

    def _record_compact(self) -> None:
        self._record("compact", {})

    def _record_keys(self, kind: str, encoded: tuple[dict[str, Any], dict[str, np.ndarray]] | None) -> None:
        if encoded is not None:
            entry, key_arrays = encoded
            self._record(kind, key_arrays, {"keys": entry})

    def remove_job(self, job: Hashable) -> None:
        """Forget ``job``: its key, arms, posteriors, history and stream (see :meth:`remove_jobs`)."""
        self.remove_jobs([job])

    def remove_jobs(self, jobs: Iterable[Hashable]) -> None:
        """Forget many jobs at once (keys; :class:`UnknownJobError` for one that is not
        registered, and then nothing changes).

        Their rows and arm slots are refused from now on and their memory is
        reclaimed when the store compacts, which renumbers the rows of the jobs
        that remain (:attr:`generation` changes; resolve rows again with
        :meth:`rows`). A removed key may be registered again and starts afresh.
        Journaled when the optimizer has a folder.
        """
        keys, rows = self._lifecycle_rows(jobs)
        if not keys:
            return
        encoded = self._journal_keys(keys)
        s = self._store
        s.on_compact = self._record_compact
        s.remove(rows)
        self._record_keys("remove", encoded)
        s.maybe_compact()

    def reset_job(self, job: Hashable) -> None:
        """Start ``job`` over (see :meth:`reset_jobs`)."""
        self.reset_jobs([job])

    def reset_jobs(self, jobs: Iterable[Hashable]) -> None:
        """Start jobs over, exactly as if each were registered now with the same batch sizes.

        Every arm returns to the prior, histories are emptied, pruning (if any)
        restarts from the registered default, and the job's random stream is
        re-seeded with the seed it was registered with, so a reset job's
        decisions equal those of a freshly registered one (and of a new
        reference optimizer with that seed) fed the same observations. The job
        keeps its key and row. :class:`UnknownJobError` for a key that is not
        registered, and then nothing changes. Journaled.
        """
        keys, rows = self._lifecycle_rows(jobs)
        if not keys:
            return
        encoded = self._journal_keys(keys)
        s = self._store
        s.on_compact = self._record_compact
        slots, _ = s.slots_of(rows)
        s.free_history(slots)
        self._init_jobs(rows, slots)
        self._record_keys("reset", encoded)
        s.maybe_compact()

    def _init_jobs(self, rows: np.ndarray, slots: np.ndarray | slice) -> None:  # pragma: no cover - overridden
        """Put ``rows`` (arm ``slots``: an index array, or a slice for one row) in the state of a
        fresh registration."""
        raise NotImplementedError

    def memory_report(self) -> dict[str, int]:
        """Live jobs, arm slots, history chunks, and the bytes the store has allocated."""
        return {**self._store.live_counts(), "allocated_bytes": self._store.allocated_nbytes()}

    # ------------------------------------------------------------------ keys
    def __contains__(self, job: Hashable) -> bool:
        return job in self._store

    def __len__(self) -> int:
        return len(self._store)

    @property
    def jobs(self) -> list[Hashable]:
        """Registered job keys, in row order."""
        return self._store.keys()

    def rows(self, jobs: Iterable[Hashable]) -> np.ndarray:
        """Resolve job keys to an int64 row array once; pass it to the ``*_many`` calls."""
        return self._store.rows(jobs)

    def batch_sizes_of(self, job: Hashable) -> list[int]:
        """The job's batch sizes, in the order the optimizer keeps them."""
        return self._store.arms_of(self._store.row(job)).tolist()

    def arm_state(self, job: Hashable) -> dict[int, ArmState]:
        """Posterior of every arm of ``job`` (mean and precision of the reward = -cost)."""
        s = self._store
        row = s.row(job)
        start, count = int(s.arm_start[row]), int(s.arm_count[row])
        return {
            int(s.arm_value[slot]): ArmState(
                float(s.posterior_mean[slot]),
                float(s.posterior_precision[slot]),
                float(s.reward_precision[slot]),
                int(s.observation_count[slot]),
            )
            for slot in range(start, start + count)
        }

    def job_settings(self, job: Hashable) -> dict[str, Any]:
        """The job's own settings (given at registration, else the optimizer's then).

        ``window_size`` is 0 when every reward is kept (or none is needed).
        """
        s = self._store
        row = s.row(job)
        out: dict[str, Any] = {"window_size": max(int(s.job_windows(np.array([row]))[0]), 0)}
        for name in self._JOB_SETTINGS:
            value = getattr(s, name)[row]
            out[name] = float(value) if value.dtype.kind == "f" else int(value)
        return out

    # ------------------------------------------------------ scalar fast path
    def _fast(self, name: str, dispatcher: Any, args: tuple[Any, ...]) -> Any:
        """Call ``dispatcher`` through its compiled entry point, resolved once per optimizer.

        The scalar paths always pass the store's arrays (fixed dtypes and
        layouts) and Python scalars, so one entry point per call site serves
        for good (see :mod:`banditfleet._fastcall`).
        """
        cache = self.__dict__.setdefault("_entry_points", {})
        fn = cache.get(name)
        if fn is None:
            fn = cache[name] = entry_point(dispatcher, args)
        return fn(*args)

    def _sample_one(self, one: np.ndarray, out: np.ndarray, num_exploration: np.ndarray) -> int:
        """Thompson-sample the job in ``one[0]`` (explorations per arm: ``num_exploration[row]``);
        journal the predict; return the batch size."""
        s = self._store
        self._fast(
            "thompson_predict",
            thompson_predict,
            (one, s.arm_start, s.arm_count, s.arm_active, s.arm_value, s.observation_count,
             s.posterior_mean, s.posterior_precision, num_exploration, s.streams, out),
        )
        if self._folder is not None:
            self._record("predict", {"rows": one.copy()})
        return int(out[0])

    def _observe_slot(self, row: int, bs: int, cost: float, refit: int) -> int:
        """One observation through ``observe_one`` (the job's own window and prior); returns its
        slot, or -1 (nothing changed) when ``bs`` is not one of the row's batch sizes."""
        s = self._store
        return self._fast(
            "observe_one",
            observe_one,
            (row, bs, cost, refit, s.slot_window, s.slot_offset, s.prior_mean, s.prior_precision, s.arm_start, s.arm_count,
             s.arm_value, s.history_count, s.history_values, s.chunk_values, s.chunk_next, s.slot_chunks,
             s.pool_used, s.reward_precision, s.posterior_mean, s.posterior_precision, s.observation_count),
        )

    # ------------------------------------------------------------ validation
    def _job_name(self, row: int) -> str:
        return repr(self._store.key_of(int(row)))

    def _batch_array(self, name: str, values: Any, n: int, kind: str) -> np.ndarray:
        arr = np.asarray(values)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise InvalidObservationError(f"{name}: expected {n} values (one per job), got shape {arr.shape}")
        if n and kind == "int":
            if arr.dtype.kind in "iu":
                return arr.astype(np.int64, copy=False)
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                return arr.astype(np.int64)
            raise InvalidObservationError(f"{name} must be integers, got {_describe(values)}")
        if n and kind == "float":
            if arr.dtype.kind not in "iuf" or arr.dtype.kind == "b":
                raise InvalidObservationError(f"{name} must be real numbers, got {_describe(values)}")
            return arr.astype(np.float64, copy=False)
        return arr.astype(np.int64 if kind == "int" else np.float64, copy=False)

    def _scalar_batch_size(self, row: int, value: Any) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        return int(self._batch_sizes(np.array([row], np.int64), [value])[0])

    def _scalar_cost(self, row: int, value: Any) -> float:
        if isinstance(value, (float, int, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_)):
            c = float(value)
            if c - c == 0.0:  # finite
                return c
        return float(self._costs(np.array([row], np.int64), [value])[0])

    def _costs(self, rows: np.ndarray, costs: Any) -> np.ndarray:
        arr = self._batch_array("costs", costs, rows.shape[0], "float")
        finite = np.isfinite(arr)
        if not finite.all():
            i = int(np.argmin(finite))
            raise InvalidObservationError(
                f"job {self._job_name(rows[i])}: cost {arr[i]!r} is not a finite energy-time cost"
            )
        return arr

    def _batch_sizes(self, rows: np.ndarray, batch_sizes: Any) -> np.ndarray:
        return self._batch_array("batch_sizes", batch_sizes, rows.shape[0], "int")

    def _converged(self, rows: np.ndarray, converged: Any) -> np.ndarray | None:
        if converged is None:
            return None
        arr = np.asarray(converged, dtype=object if not isinstance(converged, np.ndarray) else None)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.shape != (rows.shape[0],):
            raise InvalidObservationError(f"converged: expected {rows.shape[0]} flags, got shape {arr.shape}")
        if arr.dtype == object:
            for i, v in enumerate(arr):
                if not isinstance(v, (bool, np.bool_)) and v not in (0, 1):
                    raise InvalidObservationError(
                        f"job {self._job_name(rows[i])}: converged must be True or False, got {v!r}"
                    )
        elif arr.dtype.kind not in "biu" or (arr.dtype.kind != "b" and not np.isin(arr, (0, 1)).all()):
            raise InvalidObservationError(f"converged must be booleans, got {_describe(converged)}")
        return arr.astype(np.uint8)

    def _slots(self, rows: np.ndarray, batch_sizes: np.ndarray) -> np.ndarray:
        s = self._store
        slots = np.empty(rows.shape[0], np.int64)
        miss = find_arm_slots(rows, batch_sizes, s.arm_start, s.arm_count, s.arm_value, slots)
        if miss >= 0:
            row = int(rows[miss])
            raise UnknownBatchSizeError(
                f"Unknown batch size '{int(batch_sizes[miss])}' for job {self._job_name(row)}: "
                f"its batch sizes are {s.arms_of(row).tolist()}"
            )
        return slots

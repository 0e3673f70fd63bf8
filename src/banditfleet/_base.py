"""What every batch-size optimizer shares: the store, key resolution, batch validation.

Validation happens here, once, at the public boundary; the kernels behind it
trust their arrays.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, NamedTuple

import numba
import numpy as np

from banditfleet import _boundary as B
from banditfleet._journaled import Journaled
from banditfleet.checkpoint import decode_keys, encode_keys, read_checkpoint, write_checkpoint
from banditfleet.errors import CheckpointError, JournalError, UnknownBatchSizeError, UnknownJobError
from banditfleet._fastcall import entry_point
from banditfleet.kernels.fleet import NEEDS_POOL, observe_one_h, predict_one
from banditfleet.kernels.handle import SETTING_FIELDS, STORE_FIELDS, new_handle
from banditfleet.kernels.stats import allocate_sum_stack
from banditfleet.kernels.pruning import ARM_FIELDS, RECORD_WIDTH, SIM_WIDTH, PruningArrays
from banditfleet.kernels.thompson import find_arm_slots
from banditfleet.rows import Rows
from banditfleet.store import FleetStore

__all__ = ["ArmState", "JobsLike"]

logger = logging.getLogger("banditfleet")

JobsLike = Rows | Sequence[Hashable] | np.ndarray


class ArmState(NamedTuple):
    """One arm's learned state. Rewards are negative costs (energy-time cost)."""

    posterior_mean: float
    posterior_precision: float
    reward_precision: float
    observations: int


# Plain GTS has no pruning state: its handle holds empty arrays of the same
# dtypes, so every optimizer's handle has one numba type (one compilation).
_EMPTY_RECORD = np.zeros((0, RECORD_WIDTH), np.int64)
_EMPTY_PRUNING = PruningArrays(
    _EMPTY_RECORD, _EMPTY_RECORD.view(np.float64), *(np.zeros(0, f[1]) for f in ARM_FIELDS), np.zeros((0, SIM_WIDTH), np.int64)
)
_EMPTY_ROUNDS = np.zeros(0, np.int64)


# Per-optimizer handle state that copies and pickles leave out (see __getstate__).
_HANDLE_STATE = ("_h", "_handle_version", "_handle_type", "_entry_points", "_handle_ones")


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

    @B.declare(path=B.PATH)
    def save(self, path: str | os.PathLike) -> int:
        """Write the whole optimizer state to ``path`` atomically; returns the file size in bytes.

        Loading it with :meth:`load` continues with bit-identical decisions.
        See docs/checkpoints.md for the format.
        """
        return write_checkpoint(path, type(self).__name__, self._settings(), self._store.keys(), self._export_arrays())

    @classmethod
    @B.declare(path=B.PATH, verbose=B.VERBOSE)
    def load(cls, path: str | os.PathLike, verbose: bool = False):
        """Rebuild an optimizer saved with :meth:`save` (refuses other optimizers' files)."""
        B.VERBOSE.check(verbose)
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
        """Apply one journal record (or a regrouped run of them) again; recovery
        runs before the folder is attached, and logs nothing.

        The store compacts during a replay only where the journal says it did
        (``compact`` records), never on its own.
        """
        store = self._store
        store.auto_compact = False
        verbose, self.verbose = self.verbose, False
        try:
            self._replay_record(kind, arrays, extra)
        finally:
            store.auto_compact = True
            self.verbose = verbose

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

    # Recovery may regroup these (Journaled._reorder_class): a predict reads and
    # advances only its job; an observe changes only its job's arms and appends
    # to the history pool in observe order. Every other kind (register, remove,
    # reset, compact) is a barrier.
    _REORDER = {"predict": ("", 0), "observe": ("", 1)}

    def _reorder_class(self, kind: str):
        return self._REORDER.get(kind)

    def _replay_register(self, keys, arm_lists, arrays, extra) -> None:
        self.register_jobs(keys, arm_lists, **_replayed_settings(arrays))

    # Records hold the int64 rows the call resolved; they go back through tagged rows of
    # this store (a plain integer array would be read as job keys).
    def _replay_predict(self, arrays, extra) -> None:
        rows = arrays["rows"]
        if rows.shape[0] == 1:
            # A single event: the scalar path is several times cheaper than a batch call.
            self.predict(self._store.key_of(int(rows[0])))
        else:
            self.predict_many(self._store.internal_rows(rows))

    def _replay_observe(self, arrays, extra) -> None:
        rows = arrays["rows"]
        converged = arrays.get("converged")
        if rows.shape[0] == 1:
            flag = None if converged is None else bool(converged[0])
            self.observe(self._store.key_of(int(rows[0])), int(arrays["batch_sizes"][0]), float(arrays["costs"][0]), flag)
        else:
            self.observe_many(self._store.internal_rows(rows), arrays["batch_sizes"], arrays["costs"], converged)

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
        keys = B.key_list(jobs)  # an integer array is keys; Rows are refused (not keys)
        rows = self._store.key_rows(keys)
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

    @B.declare(job=B.KEY)
    def remove_job(self, job: Hashable) -> None:
        """Forget ``job``: its key, arms, posteriors, history and stream (see :meth:`remove_jobs`)."""
        self.remove_jobs([job])

    @B.declare(jobs=B.JOBS)
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

    @B.declare(job=B.KEY)
    def reset_job(self, job: Hashable) -> None:
        """Start ``job`` over (see :meth:`reset_jobs`)."""
        self.reset_jobs([job])

    @B.declare(jobs=B.JOBS)
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

    @B.declare(jobs=B.JOBS)
    def rows(self, jobs: JobsLike) -> Rows:
        """Resolve job keys to tagged :class:`~banditfleet.rows.Rows` once; pass them to
        this optimizer's ``*_many`` calls (other optimizers refuse them).

        A plain integer array is job keys, never rows. Rows given back are checked
        (same optimizer, taken since the last removal) and returned as they are.
        """
        return self._store.rows(jobs)

    def _resolve(self, jobs: JobsLike) -> np.ndarray:
        """The int64 rows of a batch call's ``jobs`` (tagged Rows or keys)."""
        return self._store.resolve(jobs)

    @B.declare(job=B.KEY)
    def batch_sizes_of(self, job: Hashable) -> list[int]:
        """The job's batch sizes, in the order the optimizer keeps them."""
        return self._store.arms_of(self._store.row(job)).tolist()

    @B.declare(job=B.KEY)
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

    # ------------------------------------------------------------ fleet handle
    def _handle_extra(self) -> tuple[Any, np.ndarray]:
        """The pruning tuple and per-job pruning rounds of the handle (empty ones for plain GTS)."""
        return _EMPTY_PRUNING, _EMPTY_ROUNDS

    # Set on the first _handle() call: the handle, the store layout it was built
    # for, its numba type, and the compiled entry points resolved for that type.
    _h: Any = None
    _handle_version: int = -1
    _handle_type: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # A copy (copy.deepcopy, pickle) gets its own arrays: it must build its own
        # handle over them, never share (or try to copy) this one.
        state = super().__getstate__()  # without the lock (a copy gets its own)
        for name in _HANDLE_STATE:
            state.pop(name, None)
        return state

    def _handle_config(self) -> np.ndarray:
        """The handle's int64 settings: refit (1: learned precision). Windows and priors
        are per job, in the store's arrays."""
        return np.array([self._observe_settings()], np.int64)

    def _observe_settings(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _handle(self) -> Any:
        """The fleet handle over the store's current arrays (see :mod:`banditfleet.kernels.handle`).

        Rebuilt only when the store's ``layout_version`` changes (an array was
        replaced); its one-element buffers live as long as the optimizer.
        """
        s = self._store
        if self._handle_version == s.layout_version:
            return self._h
        d = self.__dict__
        ones = d.get("_handle_ones")
        if ones is None:
            ones = d["_handle_ones"] = (
                np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64),
                np.zeros(1, np.float64), np.zeros(1, np.uint8), np.zeros(1, np.int64), *allocate_sum_stack(),
                self._handle_config(),
            )
        pruning, num_rounds = self._handle_extra()
        h = new_handle(
            *(getattr(s, name) for name in STORE_FIELDS), *(getattr(s, name) for name in SETTING_FIELDS),
            s.streams, pruning, num_rounds, *ones,
        )
        htype = numba.typeof(h)
        if self._handle_type != htype:
            # Other array types (e.g. adopted from a checkpoint): resolve the entry points again.
            self._entry_points = {}
            self._handle_type = htype
        self._h = h
        self._handle_version = s.layout_version
        return h

    @B.declare(job=B.KEY)
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

        The scalar paths always pass the fleet handle (of one numba type while
        the optimizer lives, see :meth:`_handle`) or the store's arrays, and
        Python scalars, so one entry point per call site serves for good (see
        :mod:`banditfleet._fastcall`).
        """
        cache = self.__dict__.setdefault("_entry_points", {})
        fn = cache.get(name)
        if fn is None:
            fn = cache[name] = entry_point(dispatcher, args)
        return fn(*args)

    def _sample_one(self, row: int) -> int:
        """Thompson-sample job ``row`` (its own ``num_exploration``); journal the predict;
        return the batch size."""
        h = self._h if self._handle_version == self._store.layout_version else self._handle()
        fn = self._entry_points.get("predict_one")
        if fn is None:
            bs = self._fast("predict_one", predict_one, (h, row))
        else:
            bs = fn(h, row)
        if self._folder is not None:
            self._record("predict", {"rows": np.array([row], np.int64)})
        return bs

    def _observe_slot(self, row: int, bs: int, cost: float, refit: int) -> int:
        """One observation through ``observe_one`` (the arm's own window, the job's own prior);
        returns its slot, or -1 (nothing changed)
        when ``bs`` is not one of the row's batch sizes. Grows the history pool when
        the kernel asks for it (-2, nothing changed)."""
        h = self._h if self._handle_version == self._store.layout_version else self._handle()
        args = (h, row, bs, cost, refit)
        fn = self._entry_points.get("observe_one")
        slot = self._fast("observe_one", observe_one_h, args) if fn is None else fn(*args)
        if slot == NEEDS_POOL:
            self._store.reserve_history_chunks(1)
            slot = self._fast("observe_one", observe_one_h, (self._handle(), *args[1:]))
        return slot

    # ------------------------------------------------------------ validation
    def _job_name(self, row: int) -> str:
        return repr(self._store.key_of(int(row)))

    def _who(self, rows: np.ndarray) -> Any:
        """Names the job at each index of a batch, for the boundary's messages."""
        return lambda i: f"job {self._job_name(rows[i])}"

    def _scalar_batch_size(self, row: int, value: Any) -> int:
        if type(value) is int and 0 < value <= B.INT64_MAX:
            return value
        return B.BATCH_SIZE.check(value, f"job {self._job_name(row)}")

    def _scalar_cost(self, row: int, value: Any) -> float:
        t = type(value)
        if t is float:
            if value - value == 0.0:  # finite
                return value
        elif t is int:
            try:
                return float(value)  # finite whenever it fits
            except OverflowError:
                pass
        return B.COST.check(value, f"job {self._job_name(row)}")

    def _scalar_converged(self, row: int, value: Any) -> bool | None:
        if value is None or value is True or value is False:
            return value
        return B.OPTIONAL_FLAG.check(value, f"job {self._job_name(row)}")

    def _costs(self, rows: np.ndarray, costs: Any) -> np.ndarray:
        return B.COST.check_many(costs, rows.shape[0], self._who(rows))

    def _batch_sizes(self, rows: np.ndarray, batch_sizes: Any) -> np.ndarray:
        return B.BATCH_SIZE.check_many(batch_sizes, rows.shape[0], self._who(rows), "batch_sizes")

    def _converged(self, rows: np.ndarray, converged: Any) -> np.ndarray | None:
        if converged is None:
            return None
        return B.FLAG.check_many(converged, rows.shape[0], self._who(rows))

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

"""Pruning exploration followed by Gaussian Thompson sampling, for fleets of jobs.

:class:`PruningGTSBatchSizeOptimizer` makes the same decisions as
``zeus._legacy.policy.PruningGTSBatchSizeOptimizer``; :class:`PruningExploreManager`
behaves like the reference's standalone manager. Both run the state machine
of :mod:`banditfleet.kernels.pruning` over arrays of a :class:`FleetStore`.

Misuse that breaks the reference (a result for a batch size that was not
asked for, a second prediction before the result arrives, a round in which
nothing reaches the target, ...) raises an error from :mod:`banditfleet.errors`
here, before anything changes.

While a pruning result is awaited and ``concurrency=True``, ``predict``
answers with the *best known batch size* without advancing pruning: the
batch size with the lowest cost among the job's converged pruning-stage
observations (the earliest on equal costs), else the current round's best
arm, else the round-start default. That is the batch size the reference's
trace simulator launches concurrent submissions with.
"""

from __future__ import annotations

import operator
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import numba
import numpy as np

from banditfleet._base import JobsLike, _FleetOptimizer, _replayed_settings
from banditfleet._threadsafe import Synchronized
from banditfleet._codes import pruning_error
from banditfleet.kernels.fleet import (
    find_slot_one,
    pruning_observe_one,
    pruning_observe_rows,
    pruning_observe_rows_parallel,
    pruning_predict_one,
    pruning_predict_rows,
    predict_rows,
)
from banditfleet.kernels.thompson import rows_are_unique
from banditfleet.errors import (
    UnknownJobError,
    InvalidArmsError,
    InvalidObservationError,
    JobConflictError,
    PruningExhaustedError,
    PruningOrderError,
)
from banditfleet import _boundary as B
from banditfleet._settings import job_settings, one_job_settings
from banditfleet.gts import _add_setting_arrays, seed_template
from banditfleet.rows import Rows
from banditfleet.kernels.streams import seed_streams
from banditfleet.kernels.thompson import rows_are_unique, thompson_predict_parallel
from banditfleet.kernels.pruning import (
    ADVANCE_FINAL,
    ERR_AWAITING,
    ERR_EXHAUSTED,
    ERR_NO_CONVERGED,
    ERR_UNEXPECTED,
    ERR_NEEDS_POOL,
    ERR_NONE,
    ERR_UNKNOWN_BATCH_SIZE,
    ARM_FIELDS,
    RECORD_COLUMNS,
    SIM_EXPECTING,
    SIM_WIDTH,
    STAGE_PRUNING,
    TS_NUM_EXPLORATION,
    PruningArrays,
    advance_rows,
    all_past_pruning,
    best_known,
    exhausted_rows,
    init_rows,
    observe_batch,
    observe_control,
    predict_batch,
    validate_observe,
    validate_predict,
)
from banditfleet.store import HISTORY_NONE, HISTORY_UNBOUNDED, FleetStore, _flatten_arms, _validate_arms

__all__ = ["PruningGTSBatchSizeOptimizer", "PruningExploreManager", "PruningState", "NUM_PRUNING_ROUNDS"]

NUM_PRUNING_ROUNDS = 2

_PREFIX = "pr_"


class PruningState(NamedTuple):
    """A job's pruning progress, for inspection."""

    stage: str  # "pruning" or "thompson"
    round: int  # 1-based round in progress (num_rounds + 1 once pruning is over)
    expecting: int  # batch size whose result is awaited, 0 when none
    round_default: int  # the default the current round started from
    members: list[int]  # the current round's batch sizes (the survivors once pruning is over)
    reached: list[int]  # batch sizes that reached the target this round (settled results)
    best_known: int  # what predict answers while a result is awaited (concurrency)


_RECORD = _PREFIX + "record"
_SIM = "prscratch_sim"


def _add_pruning_arrays(store: FleetStore) -> None:
    """The per-job pruning record (one int64 row per job, columns ``pr_<field>``) and the
    per-arm flags ``pr_member``, ``pr_good``."""
    store.add_job_record(
        _RECORD,
        tuple((_PREFIX + name, dtype, fill, slot_ref, scratch) for name, dtype, fill, slot_ref, scratch in RECORD_COLUMNS),
    )
    for name, dtype, fill in ARM_FIELDS:
        store.add_arm_array(_PREFIX + name, dtype, fill)
    store.add_job_array(_SIM, np.int64, 0, width=SIM_WIDTH, scratch=True)


def _pruning_arrays(store: FleetStore) -> PruningArrays:
    """The kernels' view of the pruning state (the record block, its float64 view, the flags)."""
    record = getattr(store, _RECORD)
    return PruningArrays(record, record.view(np.float64), store.pr_member, store.pr_good, getattr(store, _SIM))


def _awaited(store: FleetStore, row: int) -> int:
    """The awaited value a failed observe validation found for ``row`` (0: none)."""
    return int(getattr(store, _SIM)[row, SIM_EXPECTING])


class _Columns:
    """Read access to the record's columns by field name (``st.stage[row]``), for Python-side code."""

    __slots__ = ("_store",)

    def __init__(self, store: FleetStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> np.ndarray:
        return getattr(self._store, _PREFIX + name)


class _PruningCore(Synchronized):
    """Messages shared by the optimizer and the manager (``_store`` holds the arrays).

    Every public method of both holds the object's lock (:mod:`banditfleet._threadsafe`).
    """

    _store: FleetStore
    num_pruning_rounds: int

    def _describe_row(self, row: int) -> str:  # overridden
        return f"row {row}"

    def _round_members(self, row: int) -> list[int]:
        s = self._store
        st = _Columns(s)
        start, count = int(s.arm_start[row]), int(s.arm_count[row])
        values = s.arm_value[start : start + count]
        members = st.member[start : start + count].astype(bool)
        if int(st.round[row]) == 0 and int(st.stage[row]) == STAGE_PRUNING:
            return values[members].tolist()
        return sorted(values[members].tolist())

    def _predict_error(self, row: int, code: int) -> Exception:
        st = _Columns(self._store)
        fields = {"who": self._describe_row(row), "round": int(st.round[row]) + 1}
        if code == ERR_AWAITING:
            awaited = int(st.expecting[row])
            hint = "" if isinstance(self, PruningExploreManager) else " (or use concurrency=True)"
            return pruning_error(code, "awaited" if awaited else "twice", awaited=awaited, hint=hint, **fields)
        return pruning_error(ERR_EXHAUSTED, members=self._round_members(row), **fields)

    def _observe_error(self, row: int, value: int, code: int, awaited: int) -> Exception:
        fields = {"who": self._describe_row(row), "value": value, "awaited": awaited}
        if code == ERR_NO_CONVERGED:
            return pruning_error(code, **fields)
        if awaited:
            return pruning_error(ERR_UNEXPECTED, "awaited", **fields)
        return pruning_error(ERR_UNEXPECTED, "manager" if isinstance(self, PruningExploreManager) else "optimizer", **fields)


class PruningGTSBatchSizeOptimizer(_PruningCore, _FleetOptimizer):
    """Pruning exploration, then one Gaussian Thompson-sampling bandit per job.

    For each job, two rounds of pruning start from its default batch size and
    explore downwards (descending), then upwards (ascending); a batch size that
    fails to reach the target ends its direction, the cheapest one that
    reached becomes the next round's default, and only batch sizes that
    reached survive into the next round. The survivors of the last round are
    the arms of a Gaussian Thompson-sampling bandit (each arm explored twice,
    in random order, before sampling) whose reward precision is learned per
    arm as 1/var of its windowed rewards. Every job's bandit is seeded with
    ``seed``.

    Decisions equal the reference's for the same inputs. Batch sizes are kept
    sorted ascending.

    Args:
        prior_mean: Mean of the Gaussian prior on each arm's expected reward (-cost).
        prior_precision: Precision of that prior.
        window_size: Fit each arm on its last ``window_size`` rewards (0: all).
            1 cannot work (a single reward has no variance) and is refused.
        concurrency: Accept results of runs pruning did not ask for (recorded
            only) and answer predict with the best known batch size while a
            pruning result is awaited.
        seed: Seed of every job's random stream.
        verbose: Log each scalar decision through the ``banditfleet`` logger.
        num_exploration: Explorations of each survivor before Thompson
            sampling (the reference's fixed 2; Zeus's server's ``mab_num_explorations``).
        num_pruning_rounds: Rounds of pruning (the reference's fixed 2).

    ``window_size``, ``prior_mean``, ``prior_precision``, ``num_exploration``,
    ``num_pruning_rounds`` and ``seed`` are defaults: each job may be
    registered with its own (:meth:`register_jobs`), as Zeus's
    batch-size-optimizer server takes them per job.
    """

    @B.declare(
        prior_mean=B.PRIOR_MEAN,
        prior_precision=B.PRIOR_PRECISION,
        window_size=B.WINDOW_SIZE,
        concurrency=B.CONCURRENCY,
        seed=B.SEED,
        verbose=B.VERBOSE,
        num_exploration=B.NUM_EXPLORATION,
        num_pruning_rounds=B.NUM_PRUNING_ROUNDS,
    )
    def __init__(
        self,
        prior_mean: float = 0.0,
        prior_precision: float = 0.0,
        window_size: int = 0,
        concurrency: bool = False,
        seed: int = 123456,
        verbose: bool = True,
        num_exploration: int = TS_NUM_EXPLORATION,
        num_pruning_rounds: int = NUM_PRUNING_ROUNDS,
    ) -> None:
        self.prior_mean = B.PRIOR_MEAN.check(prior_mean)
        self.prior_precision = B.PRIOR_PRECISION.check(prior_precision)
        self.window_size = B.WINDOW_SIZE.check(window_size)
        self.concurrency = B.CONCURRENCY.check(concurrency)
        self.seed = B.SEED.check(seed)
        self.verbose = B.VERBOSE.check(verbose)
        self.num_exploration = B.NUM_EXPLORATION.check(num_exploration)
        self.num_pruning_rounds = B.NUM_PRUNING_ROUNDS.check(num_pruning_rounds)
        self._store = FleetStore(self.window_size)
        self._store.row_space.owner = f"{type(self).__name__}@{id(self):x}"
        _add_setting_arrays(self._store, self.prior_mean, self.prior_precision, self.num_exploration, self.seed)
        self._store.add_job_array("num_pruning_rounds", np.int64, self.num_pruning_rounds, optional=True)
        _add_pruning_arrays(self._store)
        self._store.add_job_array(_PREFIX + "registered_default", np.int64, 0)
        self._template = seed_template(self.seed)
        self._generation = 0
        # Cached state tuples (the fleet handle is cached on the base class).
        self._tuples_version = -1
        self._tuples = None

    @property
    def name(self) -> str:
        """Name of the batch-size optimizer."""
        return "Pruning GaussianTS BSO"

    def _settings(self) -> dict[str, Any]:
        return {
            "prior_mean": self.prior_mean,
            "prior_precision": self.prior_precision,
            "window_size": self.window_size,
            "concurrency": self.concurrency,
            "seed": self.seed,
            "num_exploration": self.num_exploration,
            "num_pruning_rounds": self.num_pruning_rounds,
        }

    _JOB_SETTINGS = ("prior_mean", "prior_precision", "num_exploration", "num_pruning_rounds", "seed")

    def _replay_register(self, keys, arm_lists, arrays, extra) -> None:
        self.register_jobs(keys, arm_lists, default_bs=arrays["defaults"], **_replayed_settings(arrays))

    def _describe_row(self, row: int) -> str:
        return f"job {self._job_name(row)}"

    def _next_generation(self) -> int:
        self._generation += 1
        return self._generation

    # ----------------------------------------------------------- registration
    @B.declare(
        job=B.KEY,
        batch_sizes=B.ARM,
        default_bs=B.ARM,
        window_size=B.JOB_WINDOW_SIZE,
        prior_mean=B.JOB_PRIOR_MEAN,
        prior_precision=B.JOB_PRIOR_PRECISION,
        num_exploration=B.JOB_NUM_EXPLORATION,
        num_pruning_rounds=B.JOB_NUM_PRUNING_ROUNDS,
        seed=B.JOB_SEED,
    )
    def register_job(
        self,
        job: Hashable,
        batch_sizes: Sequence[int],
        default_bs: int | None = None,
        *,
        window_size: int | None = None,
        prior_mean: float | None = None,
        prior_precision: float | None = None,
        num_exploration: int | None = None,
        num_pruning_rounds: int | None = None,
        seed: int | None = None,
    ) -> None:
        """Register ``job`` with its batch sizes and default batch size.

        The default is ``job.default_bs`` when the key has that attribute (and
        it is not None), else ``default_bs``. The keyword settings override
        the optimizer's for this job (see :meth:`register_jobs`). Registering
        a job again with the same batch sizes (in any order), default and
        settings changes nothing; anything else is a :class:`JobConflictError`.
        """
        one = one_job_settings(
            {"window_size": window_size, "prior_mean": prior_mean, "prior_precision": prior_precision,
             "num_exploration": num_exploration, "num_pruning_rounds": num_pruning_rounds, "seed": seed},
            job,
        )
        seed = one.pop("seed")
        self.register_jobs(
            [job], [batch_sizes], [default_bs], seeds=None if seed is None else [seed], **one,
        )
        self._log(f"Registered {job}")

    @B.declare(
        jobs=B.JOBS,
        batch_sizes=B.ARM,
        default_bs=B.ARM,
        seeds=B.SEEDS,
        window_size=B.JOB_WINDOW_SIZE,
        prior_mean=B.JOB_PRIOR_MEAN,
        prior_precision=B.JOB_PRIOR_PRECISION,
        num_exploration=B.JOB_NUM_EXPLORATION,
        num_pruning_rounds=B.JOB_NUM_PRUNING_ROUNDS,
    )
    def register_jobs(
        self,
        jobs: Sequence[Hashable],
        batch_sizes: Sequence[Sequence[int]] | np.ndarray,
        default_bs: Any = None,
        seeds: Any = None,
        *,
        window_size: Any = None,
        prior_mean: Any = None,
        prior_precision: Any = None,
        num_exploration: Any = None,
        num_pruning_rounds: Any = None,
    ) -> Rows:
        """Register many jobs at once; returns their tagged :class:`~banditfleet.rows.Rows`.

        ``batch_sizes`` is one list per job, or a 2-D integer array (fastest).
        ``default_bs`` is None (take ``job.default_bs``), one batch size for
        every job, or one per job (None entries fall back to ``job.default_bs``).
        ``seeds`` seeds each job's bandit as a separate reference optimizer
        with that seed would; by default every job uses ``seed``.

        Per-job settings -- ``seeds``, ``window_size`` (0 or >= 2),
        ``prior_mean``, ``prior_precision``, ``num_exploration`` (of the
        survivors' bandit) and ``num_pruning_rounds`` (>= 1) -- are each one
        value for every job of the batch or one per job; None takes the
        optimizer's value. Invalid values raise :class:`ConfigurationError`
        naming the job; a job registered again must bring the same batch
        sizes, default and settings (:class:`JobConflictError`). Nothing is
        registered unless the whole batch is valid.
        """
        s = self._store
        keys = B.key_list(jobs)
        n = len(keys)
        given = job_settings(
            {"window_size": window_size, "prior_mean": prior_mean, "prior_precision": prior_precision,
             "num_exploration": num_exploration, "num_pruning_rounds": num_pruning_rounds, "seed": seeds},
            keys,
        )
        settings = {
            name: given[name] if name in given else np.full(n, value, dtype)
            for name, value, dtype in (
                ("prior_mean", self.prior_mean, np.float64),
                ("prior_precision", self.prior_precision, np.float64),
                ("num_exploration", self.num_exploration, np.int64),
                ("num_pruning_rounds", self.num_pruning_rounds, np.int64),
                ("seed", self.seed, np.uint64),
            )
        }
        encoded = self._journal_keys(keys)
        flat, counts = _flatten_arms(keys, batch_sizes)
        defaults = self._resolve_defaults(keys, default_bs)
        starts = np.zeros(n, np.int64)
        if n:
            np.cumsum(counts[:-1], out=starts[1:])
        # Keep every job's batch sizes sorted ascending, like the reference.
        if n and counts.min() == counts.max():
            arm_lists: Any = np.sort(flat.reshape(n, int(counts[0])), axis=1)
            has_default = (arm_lists == defaults[:, None]).any(axis=1)
        else:
            job_of = np.repeat(np.arange(n), counts)
            sorted_flat = flat[np.lexsort((flat, job_of))]
            arm_lists = np.split(sorted_flat, starts[1:]) if n else []
            has_default = np.zeros(n, bool)
            has_default[job_of[sorted_flat == defaults[job_of]]] = True
        if not has_default.all():
            _validate_arms(keys, flat, counts, starts)  # a broken list is the better message
            i = int(np.argmin(has_default))
            raise InvalidArmsError(
                f"job {keys[i]!r}: default batch size {int(defaults[i])} is not one of its batch sizes "
                f"{flat[starts[i] : starts[i] + counts[i]].tolist()}"
            )
        self._check_default_conflicts(keys, defaults)
        rows, new = s.register(keys, arm_lists, settings, given.get("window_size"))
        new_rows = rows[new]
        if new_rows.size:
            slots = s.job_slots(new_rows)
            counts = s.arm_count[new_rows]
            s.posterior_mean[slots] = np.repeat(s.prior_mean[new_rows], counts)
            s.posterior_precision[slots] = np.repeat(s.prior_precision[new_rows], counts)
            s.reward_precision[slots] = 0.0
            s.observation_count[slots] = 0
            if "seed" not in given:
                for dst, src in zip(s.streams, self._template):
                    dst[new_rows] = src[0]
            else:
                # Pruning draws nothing, so seeding now equals seeding the bandit when it is built.
                seed_streams(s.streams, new_rows, s.seed[new_rows])
            getattr(s, _PREFIX + "registered_default")[new_rows] = defaults[new]
            init_rows(new_rows, defaults[new], s.arm_start, s.arm_count, s.arm_value, s.arm_active, _pruning_arrays(s))
        extra_arrays = {"defaults": defaults, **{f"setting.{k}": v for k, v in given.items()}}
        self._record_register(encoded, batch_sizes, arrays=extra_arrays)
        return s.row_space.tag(rows)

    def _init_jobs(self, rows: np.ndarray, slots: np.ndarray | slice) -> None:
        """Arms at the job's prior, no observations, pruning from the registered default,
        streams seeded as at registration (the job keeps its settings)."""
        s = self._store
        counts = s.arm_count[rows]
        s.posterior_mean[slots] = np.repeat(s.prior_mean[rows], counts)
        s.posterior_precision[slots] = np.repeat(s.prior_precision[rows], counts)
        s.reward_precision[slots] = 0.0
        s.observation_count[slots] = 0
        seed_streams(s.streams, rows, s.seed[rows])
        defaults = getattr(s, _PREFIX + "registered_default")[rows]
        init_rows(rows, defaults, s.arm_start, s.arm_count, s.arm_value, s.arm_active, _pruning_arrays(s))

    def _resolve_defaults(self, keys: list[Hashable], default_bs: Any) -> np.ndarray:
        n = len(keys)
        attrs = [getattr(key, "default_bs", None) for key in keys]
        scalar = default_bs is None or isinstance(default_bs, (int, np.integer, float, np.floating, np.bool_))
        if not scalar and (isinstance(default_bs, (str, bytes)) or not hasattr(default_bs, "__len__")):
            raise B.ARM.refuse(default_bs, "default_bs", "is not a batch size or one per job")
        if not scalar and len(default_bs) != n:
            raise InvalidArmsError(f"{n} jobs but {len(default_bs)} default batch sizes")
        if n and attrs.count(None) == n:
            # Fast paths: no key carries a default, one given for all or an integer array.
            if isinstance(default_bs, (int, np.integer)) and not isinstance(default_bs, (bool, np.bool_)):
                return np.full(n, B.ARM.check(default_bs, "default_bs"), np.int64)
            if isinstance(default_bs, np.ndarray) and default_bs.dtype.kind in "iu" and default_bs.ndim == 1:
                return B.ARM.check_many(default_bs, n, lambda i: f"job {keys[i]!r}: default_bs", "default_bs")
        given: list[Any] = [default_bs] * n if scalar else (default_bs.tolist() if isinstance(default_bs, np.ndarray) else list(default_bs))
        out = np.empty(n, np.int64)
        for i, (key, attr, arg) in enumerate(zip(keys, attrs, given)):
            if attr is not None:
                value = B.ARM.check(attr, f"job {key!r}: default_bs")
                if arg is not None and B.ARM.check(arg, f"job {key!r}: default_bs argument") != value:
                    raise InvalidArmsError(
                        f"job {key!r}: default_bs argument {arg!r} disagrees with the job's default_bs {attr!r}"
                    )
            elif arg is not None:
                value = B.ARM.check(arg, f"job {key!r}: default_bs")
            else:
                raise InvalidArmsError(f"job {key!r}: default_bs None and the key has no .default_bs: no default batch size")
            out[i] = value
        return out

    def _check_default_conflicts(self, keys: list[Hashable], defaults: np.ndarray) -> None:
        s = self._store
        try:
            if len(set(keys)) == len(keys) and s._rows.keys().isdisjoint(keys):
                return
        except TypeError:
            return  # the store refuses unhashable keys
        registered = getattr(s, _PREFIX + "registered_default")
        seen: dict[Hashable, int] = {}
        for key, d in zip(keys, defaults.tolist()):
            if key in s:
                known = int(registered[s.row(key)])
            elif key in seen:
                known = seen[key]
            else:
                seen[key] = d
                continue
            if known != d:
                raise JobConflictError(f"job {key!r} is already registered with default batch size {known}; got {d}")

    # ------------------------------------------------------------- decisions
    def _observe_settings(self) -> int:
        return 1

    def _handle_extra(self) -> tuple[PruningArrays, np.ndarray]:
        return self._cached_tuples(), self._store.num_pruning_rounds

    def __getstate__(self) -> dict[str, Any]:
        # The cached tuple holds a float64 *view* of the record; a copy (deepcopy,
        # pickle) would copy that view as an array of its own: rebuild it instead.
        state = super().__getstate__()
        state["_tuples"] = None
        state["_tuples_version"] = -1
        return state

    def _cached_tuples(self) -> PruningArrays:
        s = self._store
        if self._tuples_version != s.layout_version:
            self._tuples = _pruning_arrays(s)
            self._tuples_version = s.layout_version
        return self._tuples

    @B.declare(job=B.KEY)
    def predict(self, job: Hashable) -> int:
        """The batch size to run ``job`` with next."""
        # The scalar fast path: one kernel call through its compiled entry point,
        # with the fleet handle and Python scalars.
        s = self._store
        try:
            row = s._rows[job]
        except (KeyError, TypeError):
            row = s.row(job)  # raises the named error
        h = self._h if self._handle_version == s.layout_version else self._handle()
        args = (
            h, row, self.concurrency, self._next_generation(),
        )
        fn = self._entry_points.get("pruning_predict_one")
        bs, code = self._fast("pruning_predict_one", pruning_predict_one, args) if fn is None else fn(*args)
        if code != ERR_NONE:
            raise self._predict_error(row, code)
        if self._folder is not None:
            self._record("predict", {"rows": np.array([row], np.int64)})
        if self.verbose:
            self._log(f"{job} -> BS = {bs}")
        return bs

    @B.declare(jobs=B.JOBS, parallel=B.PARALLEL)
    def predict_many(self, jobs: JobsLike, parallel: bool = False) -> np.ndarray:
        """One decision per entry of ``jobs`` (keys, or :class:`~banditfleet.rows.Rows` from
        :meth:`rows`), as int64.

        Equal to calling :meth:`predict` for each entry in order; refused whole
        (:class:`PruningOrderError`, :class:`PruningExhaustedError`) before any change.
        With ``parallel=True`` a batch of distinct jobs that are all past pruning
        (Thompson sampling) is split over numba's threads (same results: every job
        owns its stream); any other batch runs sequentially.
        """
        rows = self._resolve(jobs)
        parallel = B.PARALLEL.check(parallel)
        s = self._store
        out = np.empty(rows.shape[0], np.int64)
        if parallel and rows.shape[0] > 1 and self._all_sampling_and_unique(rows):
            thompson_predict_parallel(
                rows, s.arm_start, s.arm_count, s.arm_active, s.arm_value, s.observation_count, s.posterior_mean,
                s.posterior_precision, s.num_exploration, s.streams, out, int(s.arm_count[: s.n_jobs].max()),
                numba.get_num_threads() * 4,
            )
            self._record("predict", {"rows": rows})
            return out
        if rows.shape[0] > 1 and all_past_pruning(rows, self._cached_tuples()):
            # Every job is past pruning: nothing can be refused or advanced, so the
            # Thompson-sampling kernel alone (the same decisions, in array order).
            predict_rows(self._handle(), rows, out)
            self._record("predict", {"rows": rows})
            return out
        index, code = pruning_predict_rows(
            self._handle(), rows, self.concurrency, self._next_generation(), out,
        )
        if code != ERR_NONE:
            raise self._predict_error(int(rows[index]), code)
        self._record("predict", {"rows": rows})
        return out

    def _all_sampling_and_unique(self, rows: np.ndarray) -> bool:
        """Whether no row repeats and every row is past pruning (nothing to validate)."""
        s = self._store
        if not all_past_pruning(rows, self._cached_tuples()):
            return False
        if getattr(self, "_marks", None) is None or self._marks.shape[0] < s.n_jobs:
            self._marks = np.full(s.job_capacity, -1, np.int64)
            self._marks_generation = 0
        self._marks_generation += 1
        return bool(rows_are_unique(rows, self._marks, self._marks_generation))

    @B.declare(job=B.KEY, batch_size=B.BATCH_SIZE, cost=B.COST, converged=B.OPTIONAL_FLAG)
    def observe(self, job: Hashable, batch_size: int, cost: float, converged: bool | None = None) -> None:
        """Learn from one run of ``job``: its batch size, energy-time cost and whether it
        reached the target metric (required while the job is pruning)."""
        s = self._store
        try:
            row = s._rows[job]
        except (KeyError, TypeError):
            row = s.row(job)  # raises the named error
        bs = self._scalar_batch_size(row, batch_size)
        c = self._scalar_cost(row, cost)
        flag = self._scalar_converged(row, converged)
        h = self._h if self._handle_version == s.layout_version else self._handle()
        args = [
            h, row, bs, c, 0 if flag is None else int(flag), converged is not None, self.concurrency,
            self._next_generation(),
        ]
        fn = self._entry_points.get("pruning_observe_one")
        code = self._fast("pruning_observe_one", pruning_observe_one, tuple(args)) if fn is None else fn(*args)
        if code == ERR_NEEDS_POOL:
            # The history pool must grow: refuse a bad call before growing it
            # (a refused call changes nothing, capacities included).
            one, one_bs = np.array([row], np.int64), np.array([bs], np.int64)
            self._slots(one, one_bs)  # raises the named error for an unknown batch size
            index, vcode = validate_observe(
                one, one_bs, converged is not None, self.concurrency, _pruning_arrays(s), self._next_generation()
            )
            if vcode != ERR_NONE:
                raise self._observe_error(row, bs, vcode, _awaited(s, row))
            s.reserve_history_chunks(1)
            args[0] = self._handle()
            code = self._fast("pruning_observe_one", pruning_observe_one, tuple(args))
        if code == ERR_UNKNOWN_BATCH_SIZE:
            self._slots(np.array([row], np.int64), np.array([bs], np.int64))  # raises the named error
        if code != ERR_NONE:
            raise self._observe_error(row, bs, code, _awaited(s, row))
        if self._folder is not None:
            record = {"rows": np.array([row], np.int64), "batch_sizes": np.array([bs], np.int64), "costs": np.array([c])}
            if converged is not None:
                record["converged"] = np.array([flag], np.uint8)
            self._record("observe", record)
        if self.verbose:
            self._log(f"{job} @ {batch_size}: cost = {c:.2f}, converged = {converged}")

    @B.declare(jobs=B.JOBS, batch_sizes=B.BATCH_SIZE, costs=B.COST, converged=B.FLAG, parallel=B.PARALLEL)
    def observe_many(
        self, jobs: JobsLike, batch_sizes: Any, costs: Any, converged: Any = None, parallel: bool = False
    ) -> None:
        """Learn from many runs, applied in array order. Validated whole before any change.

        With ``parallel=True`` a batch whose jobs are all distinct appends and
        refits on numba's threads after a sequential validation and pruning
        pass (the same state for any thread count); a batch that repeats a job
        runs sequentially.
        """
        rows = self._resolve(jobs)
        parallel = B.PARALLEL.check(parallel)
        bs = self._batch_sizes(rows, batch_sizes)
        c = self._costs(rows, costs)
        flags = self._converged(rows, converged)
        slots = self._slots(rows, bs)
        s = self._store
        n = rows.shape[0]
        if s.n_unbounded_arms and int(s.pool_used[0]) + n > s.chunk_next.shape[0]:
            # The history pool must grow: refuse a bad batch before growing it.
            index, code = validate_observe(rows, bs, flags is not None, self.concurrency, _pruning_arrays(s), self._next_generation())
            if code != ERR_NONE:
                row = int(rows[index])
                raise self._observe_error(row, int(bs[index]), code, _awaited(s, row))
            s.reserve_history_for(slots)
        args = (
            self._handle(), rows, slots, bs, c, np.zeros(n, np.uint8) if flags is None else flags, flags is not None,
            self.concurrency, self._next_generation(),
        )
        if parallel and n > 1 and self._unique_rows(rows):
            index, code = pruning_observe_rows_parallel(*args, numba.get_num_threads() * 4)
        else:
            index, code = pruning_observe_rows(*args)
        if code != ERR_NONE:
            row = int(rows[index])
            raise self._observe_error(row, int(bs[index]), code, _awaited(s, row))
        record = {"rows": rows, "batch_sizes": bs, "costs": c}
        if flags is not None:
            record["converged"] = flags
        self._record("observe", record)

    def _unique_rows(self, rows: np.ndarray) -> bool:
        """Whether no row repeats in ``rows`` (per-job marks stamped with a counter)."""
        s = self._store
        marks = getattr(self, "_unique_marks", None)
        if marks is None or marks.shape[0] < s.n_jobs:
            marks = self._unique_marks = np.full(s.job_capacity, -1, np.int64)
            self._unique_generation = 0
        self._unique_generation += 1
        return bool(rows_are_unique(rows, marks, self._unique_generation))

    # ------------------------------------------------------------ inspection
    @B.declare(job=B.KEY)
    def pruning_state(self, job: Hashable) -> PruningState:
        """Where ``job`` is in pruning (or that pruning is over)."""
        s = self._store
        row = s.row(job)
        st = _Columns(s)
        start, count = int(s.arm_start[row]), int(s.arm_count[row])
        values = s.arm_value[start : start + count]
        return PruningState(
            stage="pruning" if int(st.stage[row]) == STAGE_PRUNING else "thompson",
            round=int(st.round[row]) + 1,
            expecting=int(st.expecting[row]),
            round_default=int(s.arm_value[st.round_default[row]]),
            members=sorted(values[st.member[start : start + count].astype(bool)].tolist()),
            reached=sorted(values[st.good[start : start + count].astype(bool)].tolist()),
            best_known=int(best_known(_pruning_arrays(s), row, s.arm_value)),
        )

    @B.declare(jobs=B.JOBS)
    def exhausted_many(self, jobs: JobsLike) -> np.ndarray:
        """Boolean mask: whose next predict would raise :class:`PruningExhaustedError`.

        Lets a fleet drop those jobs before a batch predict (which is refused whole).
        """
        rows = self._resolve(jobs)
        out = np.zeros(rows.shape[0], np.uint8)
        exhausted_rows(rows, _pruning_arrays(self._store), self._store.num_pruning_rounds, out)
        return out.astype(bool)

    @B.declare(job=B.KEY)
    def survivors(self, job: Hashable) -> list[int] | None:
        """The arms of ``job``'s bandit (sorted), or None while it is still pruning."""
        s = self._store
        row = s.row(job)
        if int(s.pr_stage[row]) == STAGE_PRUNING:
            return None
        start, count = int(s.arm_start[row]), int(s.arm_count[row])
        return s.arm_value[start : start + count][s.arm_active[start : start + count].astype(bool)].tolist()


class PruningExploreManager(_PruningCore):
    """Hands out the batch sizes to explore for one job and prunes them.

    Like the reference's manager: call :meth:`next_batch_size`, run the job,
    :meth:`report_batch_size_result`, repeat; when pruning is over
    :meth:`next_batch_size` raises ``StopIteration`` whose ``value`` is the
    sorted survivors. In round 1 the down list is the batch sizes up to the
    default's position *in the given list* (descending) and the up list the
    rest (ascending), so unsorted input behaves as in the reference.

    Attributes:
        batch_sizes: The current round's batch sizes (the given list in round
            1, then sorted), the survivors once pruning is over.
        default: The current round's best batch size so far, else its default.
        expecting: The batch size whose result is awaited (0: none).
        num_pruning_rounds: How many rounds pruning runs.
    """

    @B.declare(batch_sizes=B.ARM, default=B.ARM, num_pruning_rounds=B.NUM_PRUNING_ROUNDS)
    def __init__(self, batch_sizes: list[int], default: int, num_pruning_rounds: int = 2) -> None:
        self.num_pruning_rounds = B.NUM_PRUNING_ROUNDS.check(num_pruning_rounds)
        default_value = B.ARM.check(default, "PruningExploreManager: default")
        flat, counts = _flatten_arms(["PruningExploreManager"], [batch_sizes])
        arms = flat.tolist()
        _validate_arms(["PruningExploreManager"], flat, counts, np.zeros(1, np.int64))
        if default_value not in arms:
            raise InvalidArmsError(f"Default batch size {default!r} not in {arms}.")
        store = FleetStore(HISTORY_NONE)
        _add_pruning_arrays(store)
        store.add_job_array(_PREFIX + "registered_default", np.int64, default_value)
        store.register([0], [arms])
        self._store = store
        self._row = np.zeros(1, np.int64)
        init_rows(
            self._row,
            np.array([default_value], np.int64),
            store.arm_start,
            store.arm_count,
            store.arm_value,
            store.arm_active,
            _pruning_arrays(store),
        )
        self._generation = 0

    _removed = False

    def _describe_row(self, row: int) -> str:
        return "PruningExploreManager"

    # -------------------------------------------------------- removal, reset
    def _check_manager_keys(self, jobs: Any) -> int:
        keys = B.key_list(jobs)
        if self._removed or any(k != 0 or isinstance(k, bool) for k in keys) or len(keys) > 1:
            bad = next((k for k in keys if k != 0 or isinstance(k, bool)), 0)
            why = "it was removed" if self._removed else "its one job has key 0"
            raise UnknownJobError(f"unknown job {bad!r} for a PruningExploreManager ({why})")
        return len(keys)

    def reset(self) -> None:
        """Start pruning over from round 1 with the batch sizes and default given at construction."""
        self.reset_jobs([0])

    @B.declare(job=B.KEY)
    def reset_job(self, job: Hashable = 0) -> None:
        """Same as :meth:`reset` (the manager's one job has key 0)."""
        self.reset_jobs([job])

    @B.declare(jobs=B.JOBS)
    def reset_jobs(self, jobs: Sequence[Hashable]) -> None:
        """Reset the manager's job (``jobs`` is ``[0]`` or empty); as if newly constructed."""
        if not self._check_manager_keys(jobs):
            return
        s = self._store
        default = getattr(s, _PREFIX + "registered_default")[:1].copy()
        init_rows(self._row, default, s.arm_start, s.arm_count, s.arm_value, s.arm_active, _pruning_arrays(s))

    @B.declare(job=B.KEY)
    def remove_job(self, job: Hashable = 0) -> None:
        """Remove the manager's one job (see :meth:`remove_jobs`)."""
        self.remove_jobs([job])

    @B.declare(jobs=B.JOBS)
    def remove_jobs(self, jobs: Sequence[Hashable]) -> None:
        """Remove the manager's job (``jobs`` is ``[0]`` or empty): its state is freed and
        every later call raises :class:`UnknownJobError`."""
        if not self._check_manager_keys(jobs):
            return
        self._removed = True
        self._store = FleetStore(HISTORY_NONE)

    def _require_job(self) -> None:
        if self._removed:
            raise UnknownJobError("this PruningExploreManager's job was removed")

    def _done(self) -> bool:
        return int(self._store.pr_stage[0]) != STAGE_PRUNING

    @property
    def batch_sizes(self) -> list[int]:
        return self._round_members(0)

    @property
    def default(self) -> int:
        s = self._store
        best = int(s.pr_best_slot[0])
        return int(s.arm_value[best if best >= 0 else int(s.pr_round_default[0])])

    @property
    def expecting(self) -> int:
        s = self._store
        untouched = (
            int(s.pr_round[0]) == 0
            and int(s.pr_pos[0]) == -1
            and not int(s.pr_pending[0])
            and int(s.pr_stage[0]) == STAGE_PRUNING
        )
        # Before the first batch size is handed out the reference shows the default.
        return int(s.arm_value[int(s.pr_round_default[0])]) if untouched else int(s.pr_expecting[0])

    def next_batch_size(self) -> int:
        """The next batch size to explore; ``StopIteration(survivors)`` once pruning is over."""
        self._require_job()
        s = self._store
        if self._done():
            raise StopIteration(self.batch_sizes)
        st = _pruning_arrays(s)
        self._generation += 1
        rounds = np.full(1, self.num_pruning_rounds, np.int64)
        index, code = validate_predict(self._row, st, rounds, False, True, self._generation)
        if code != ERR_NONE:
            raise self._predict_error(0, code)
        codes = np.empty(1, np.int64)
        out = np.empty(1, np.int64)
        values = s.arm_value[: s.n_arms]
        sorted_arms = bool((values[1:] > values[:-1]).all())  # the schedule is walked, not scanned
        advance_rows(self._row, st, rounds, True, s.arm_start, s.arm_count, s.arm_value, sorted_arms, codes, out)
        if codes[0] == ADVANCE_FINAL:
            raise StopIteration(self.batch_sizes)
        return int(out[0])

    @B.declare(batch_size=B.BATCH_SIZE, cost=B.COST, reached=B.REACHED)
    def report_batch_size_result(self, batch_size: int, cost: float, reached: bool) -> None:
        """Report the cost of the batch size handed out last and whether it reached the target."""
        self._require_job()
        s = self._store
        value = B.BATCH_SIZE.check(batch_size, "PruningExploreManager")
        c = B.COST.check(cost, f"PruningExploreManager @ {value}")
        flag = B.REACHED.check(reached, f"PruningExploreManager @ {value}")
        if self._done():
            raise PruningOrderError(f"PruningExploreManager: pruning is over; got a result for batch size {value}")
        st = _pruning_arrays(s)
        self._generation += 1
        values = np.array([value], np.int64)
        index, code = validate_observe(self._row, values, True, False, st, self._generation)
        if code != ERR_NONE:
            raise self._observe_error(0, value, code, _awaited(s, 0))
        refit = np.empty(1, np.uint8)
        slots = np.array([self._slot_of(value)], np.int64)
        observe_control(self._row, slots, s.arm_value, np.array([c]), np.array([flag], np.uint8), st, refit)

    def _slot_of(self, value: int) -> int:
        s = self._store
        return int(np.flatnonzero(s.arm_value[: s.n_arms] == value)[0])

    # ----------------------------------------------------------- checkpoints
    @B.declare(path=B.PATH)
    def save(self, path: Any) -> int:
        """Write the manager to ``path`` atomically (docs/checkpoints.md); returns the file size in bytes.

        The file holds its batch sizes (in the given order), its pruning
        progress (round, position, awaited result, best so far) and
        ``num_pruning_rounds``; :meth:`load` continues exactly where it stopped.
        """
        from banditfleet.checkpoint import write_checkpoint

        self._require_job()
        settings = {"num_pruning_rounds": self.num_pruning_rounds}
        return write_checkpoint(path, type(self).__name__, settings, [0], self._store.export_arrays())

    @classmethod
    @B.declare(path=B.PATH)
    def load(cls, path: Any) -> PruningExploreManager:
        """Rebuild a manager saved with :meth:`save` (refuses other files with ``CheckpointError``)."""
        from banditfleet.checkpoint import read_checkpoint
        from banditfleet.errors import CheckpointError

        header, keys, arrays = read_checkpoint(path, cls.__name__)
        settings = header.get("settings")
        rounds = settings.get("num_pruning_rounds") if isinstance(settings, dict) else None
        if set(settings or ()) != {"num_pruning_rounds"} or isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise CheckpointError(f"{path}: the stored settings are not valid: {settings!r}")
        store = FleetStore(HISTORY_NONE)
        _add_pruning_arrays(store)
        store.add_job_array(_PREFIX + "registered_default", np.int64, 0)
        arrays = _upgrade_manager_arrays(arrays)
        try:
            if keys != [0]:
                raise ValueError("a manager holds exactly one job")
            store.import_arrays(keys, arrays)
            _check_manager_state(store, rounds)
        except ValueError as exc:
            raise CheckpointError(f"{path}: inconsistent state: {exc}") from None
        manager = cls.__new__(cls)
        manager.num_pruning_rounds = rounds
        manager._store = store
        manager._row = np.zeros(1, np.int64)
        manager._generation = 0
        return manager


def _upgrade_manager_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Checkpoint format version 1 kept no registered default: take the current round's default
    (exact while the manager is in round 1, the round that default belongs to)."""
    name = "job." + _PREFIX + "registered_default"
    if name in arrays:
        return arrays
    slot = arrays.get("job." + _PREFIX + "round_default")
    values = arrays.get("arm.arm_value")
    if slot is None or values is None or slot.shape != (1,) or not 0 <= int(slot[0]) < values.shape[0]:
        return arrays  # the store refuses the file with a precise message
    return {**arrays, name: values[slot].astype(np.int64)}


def _check_manager_state(store: FleetStore, num_rounds: int) -> None:
    """The state-machine counters and flags of a loaded manager are in range (slot references
    were checked by the store)."""
    st = _Columns(store)
    n = store.n_arms
    for name in ("member", "good"):
        if (getattr(st, name)[:n] > 1).any():
            raise ValueError(f"array 'arm.{_PREFIX}{name}' holds a flag other than 0 or 1")
    for name in ("stage", "pending", "pending_reached"):
        if int(getattr(st, name)[0]) > 1:
            raise ValueError(f"array 'job.{_PREFIX}{name}' holds a value other than 0 or 1")
    if not 0 <= int(st.round[0]) <= num_rounds:
        raise ValueError(f"array 'job.{_PREFIX}round' is outside 0 .. {num_rounds}")
    n_down, n_up = int(st.n_down[0]), int(st.n_up[0])
    if n_down < 0 or n_up < 0 or n_down + n_up > n:
        raise ValueError(f"arrays 'job.{_PREFIX}n_down' and 'job.{_PREFIX}n_up' do not fit the {n} batch sizes")
    if int(st.round_default[0]) < 0:
        raise ValueError(f"array 'job.{_PREFIX}round_default' names no batch size")

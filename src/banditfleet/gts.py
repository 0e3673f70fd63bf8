"""Gaussian Thompson-sampling batch-size optimizer: one bandit per job, all jobs in arrays."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numba
import numpy as np

from banditfleet import _boundary as B
from banditfleet._base import JobsLike, _FleetOptimizer
from banditfleet._settings import job_settings, one_job_settings
from banditfleet.errors import ConfigurationError
from banditfleet.kernels.streams import allocate_streams, seed_streams
from banditfleet.kernels.fleet import (
    NEEDS_POOL,
    observe_one_c,
    observe_rows_incremental,
    observe_rows_parallel,
    observe_rows_refit,
    predict_rows,
)
from banditfleet.kernels.thompson import rows_are_unique, thompson_predict_parallel
from banditfleet.rows import Rows
from banditfleet.store import HISTORY_NONE, FleetStore

__all__ = ["GTSBatchSizeOptimizer", "seed_template", "check_seed", "check_seeds"]


def check_seed(seed: Any) -> int:
    """A seed numpy's ``default_rng`` accepts and the kernels can hold (0 <= seed < 2**64)."""
    return B.SEED.check(seed)


def check_seeds(seeds: Any, keys: list[Hashable]) -> np.ndarray | None:
    """Per-job seeds as uint64 (each 0 <= seed < 2**64), or None for the optimizer's seed."""
    return B.SEEDS.check_many(seeds, len(keys), lambda i: f"job {keys[i]!r}")


def seed_template(seed: int):
    """A one-row stream seeded as ``np.random.default_rng(seed)``, to copy into job rows."""
    template = allocate_streams(1)
    seed_streams(template, np.zeros(1, np.int64), np.array([seed], np.uint64))
    return template


def _add_setting_arrays(store: FleetStore, prior_mean: float, prior_precision: float, num_exploration: int, seed: int) -> None:
    """Per-job settings arrays (filled with the optimizer's values, also for checkpoints from before them)."""
    store.add_job_array("prior_mean", np.float64, prior_mean, optional=True)
    store.add_job_array("prior_precision", np.float64, prior_precision, optional=True)
    store.add_job_array("num_exploration", np.int64, num_exploration, optional=True)
    store.add_job_array("seed", np.uint64, seed, optional=True)



class GTSBatchSizeOptimizer(_FleetOptimizer):
    """One Gaussian Thompson-sampling bandit per job over its batch sizes.

    Decisions are identical to ``zeus._legacy.policy.GTSBatchSizeOptimizer``
    for the same seed and observations. Every job's bandit starts from the same
    seed, as in the reference.

    Args:
        learn_reward_precision: Learn each arm's reward precision as the
            inverse variance of all its rewards (rewards are -cost), refitting
            the arm from the prior after every observation.
        reward_precision: Known reward precision when not learning it.
        prior_mean: Mean of the Gaussian prior on each arm's expected reward.
        prior_precision: Precision of that prior.
        num_exploration: Observations every arm gets, in random order, before
            Thompson sampling starts.
        seed: Seed of every job's random stream.
        verbose: Log each scalar decision through the ``banditfleet`` logger.
        window_size: With learned reward precision, fit each arm on its last
            ``window_size`` rewards (0: all of them, the reference). Must be 0
            when the precision is known. 1 is refused (one reward has no variance).

    ``window_size``, ``prior_mean``, ``prior_precision``, ``num_exploration``
    and ``seed`` are defaults: each job may be registered with its own
    (:meth:`register_jobs`), and then decides exactly as a reference
    optimizer constructed with those values would.
    """

    @B.declare(
        learn_reward_precision=B.LEARN_REWARD_PRECISION,
        reward_precision=B.REWARD_PRECISION,
        prior_mean=B.PRIOR_MEAN,
        prior_precision=B.PRIOR_PRECISION,
        num_exploration=B.NUM_EXPLORATION,
        seed=B.SEED,
        verbose=B.VERBOSE,
        window_size=B.WINDOW_SIZE,
    )
    def __init__(
        self,
        learn_reward_precision: bool,
        reward_precision: float = 0.0,
        prior_mean: float = 0.0,
        prior_precision: float = 0.0,
        num_exploration: int = 1,
        seed: int = 123456,
        verbose: bool = True,
        window_size: int = 0,
    ) -> None:
        self.learn_reward_precision = B.LEARN_REWARD_PRECISION.check(learn_reward_precision)
        self._refit = 1 if self.learn_reward_precision else 0  # observe_one_c: refit from a kept history
        self.reward_precision = B.REWARD_PRECISION.check(reward_precision)
        self.prior_mean = B.PRIOR_MEAN.check(prior_mean)
        self.prior_precision = B.PRIOR_PRECISION.check(prior_precision)
        self.num_exploration = B.NUM_EXPLORATION.check(num_exploration)
        self.seed = B.SEED.check(seed)
        self.verbose = B.VERBOSE.check(verbose)
        self.window_size = B.WINDOW_SIZE.check(window_size)
        if self.window_size and not self.learn_reward_precision:
            raise ConfigurationError(
                f"window_size={window_size!r} needs learn_reward_precision=True (a known precision keeps no history)"
            )
        if not self.learn_reward_precision and self.reward_precision == 0.0 and self.prior_precision == 0.0:
            raise ConfigurationError(
                "learn_reward_precision=False with reward_precision=0 and prior_precision=0 gives every "
                "posterior precision 0 and mean 0/0 = NaN; give a positive reward_precision or prior_precision"
            )
        self._store = FleetStore(self.window_size if self.learn_reward_precision else HISTORY_NONE)
        self._store.row_space.owner = f"{type(self).__name__}@{id(self):x}"
        # Per-job settings, the registration seed among them (reset_jobs seeds the job with it again).
        _add_setting_arrays(self._store, self.prior_mean, self.prior_precision, self.num_exploration, self.seed)
        self._template = seed_template(self.seed)
        # Reused one-element buffers of the scalar fast path (safe: every public call holds the optimizer's lock).

    @property
    def name(self) -> str:
        """Name of the batch-size optimizer."""
        return "GaussianTS BSO"

    def _settings(self) -> dict[str, Any]:
        return {
            "learn_reward_precision": self.learn_reward_precision,
            "reward_precision": self.reward_precision,
            "prior_mean": self.prior_mean,
            "prior_precision": self.prior_precision,
            "num_exploration": self.num_exploration,
            "seed": self.seed,
            "window_size": self.window_size,
        }

    # ----------------------------------------------------------- registration
    @B.declare(
        job=B.KEY,
        batch_sizes=B.ARM,
        window_size=B.JOB_WINDOW_SIZE,
        prior_mean=B.JOB_PRIOR_MEAN,
        prior_precision=B.JOB_PRIOR_PRECISION,
        num_exploration=B.JOB_NUM_EXPLORATION,
        seed=B.JOB_SEED,
    )
    def register_job(
        self,
        job: Hashable,
        batch_sizes: Sequence[int],
        *,
        window_size: int | None = None,
        prior_mean: float | None = None,
        prior_precision: float | None = None,
        num_exploration: int | None = None,
        seed: int | None = None,
    ) -> None:
        """Register ``job`` with its batch sizes (their order fixes exploration order and ties).

        The keyword settings override the optimizer's for this job (see
        :meth:`register_jobs`). Registering a job again with the same batch
        sizes and settings changes nothing; different ones are a
        :class:`JobConflictError`.
        """
        one = one_job_settings(
            {"window_size": window_size, "prior_mean": prior_mean, "prior_precision": prior_precision,
             "num_exploration": num_exploration, "seed": seed},
            job,
        )
        seed = one.pop("seed")
        self.register_jobs(
            [job], [batch_sizes], seeds=None if seed is None else [seed], **one,
        )
        self._log(f"Registered {job}")

    @B.declare(
        jobs=B.JOBS,
        batch_sizes=B.ARM,
        seeds=B.SEEDS,
        window_size=B.JOB_WINDOW_SIZE,
        prior_mean=B.JOB_PRIOR_MEAN,
        prior_precision=B.JOB_PRIOR_PRECISION,
        num_exploration=B.JOB_NUM_EXPLORATION,
    )
    def register_jobs(
        self,
        jobs: Sequence[Hashable],
        batch_sizes: Sequence[Sequence[int]] | np.ndarray,
        seeds: Any = None,
        *,
        window_size: Any = None,
        prior_mean: Any = None,
        prior_precision: Any = None,
        num_exploration: Any = None,
    ) -> Rows:
        """Register many jobs at once; returns their tagged :class:`~banditfleet.rows.Rows`.

        ``batch_sizes`` is one list per job, or a 2-D integer array when all
        jobs have the same number of batch sizes (fastest). ``seeds`` gives
        each new job its own stream, as if each had its own reference
        optimizer with that seed; by default every job uses ``seed``.

        Per-job settings -- ``seeds``, ``window_size`` (rewards the learned
        precision is fitted on, 0: all), ``prior_mean``, ``prior_precision``
        (of the Gaussian prior on an arm's reward = -cost) and
        ``num_exploration`` -- are each one value for every job of the batch
        or one per job; None takes the optimizer's value. A job decides as a
        reference optimizer constructed with its settings would. Invalid
        values raise :class:`ConfigurationError` naming the job; a job
        registered again must bring the same batch sizes and settings
        (:class:`JobConflictError`). Nothing is registered unless the whole
        batch is valid.
        """
        s = self._store
        jobs = B.key_list(jobs)
        given = job_settings(
            {"window_size": window_size, "prior_mean": prior_mean, "prior_precision": prior_precision,
             "num_exploration": num_exploration, "seed": seeds},
            jobs,
        )
        settings = self._resolve_settings(jobs, given)
        windows = settings.pop("window_size", None)
        encoded = self._journal_keys(jobs)
        rows, new = s.register(jobs, batch_sizes, settings, windows)
        new_rows = rows[new]
        if new_rows.size:
            slots = s.job_slots(new_rows)
            counts = s.arm_count[new_rows]
            s.posterior_mean[slots] = np.repeat(s.prior_mean[new_rows], counts)
            s.posterior_precision[slots] = np.repeat(s.prior_precision[new_rows], counts)
            s.reward_precision[slots] = self.reward_precision
            s.observation_count[slots] = 0
            if "seed" not in given:
                for dst, src in zip(s.streams, self._template):
                    dst[new_rows] = src[0]
            else:
                seed_streams(s.streams, new_rows, s.seed[new_rows])
        self._record_register(encoded, batch_sizes, arrays={f"setting.{k}": v for k, v in given.items()})
        return s.row_space.tag(rows)

    def _resolve_settings(self, jobs: list[Hashable], given: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every per-job setting for ``jobs`` (given, else the optimizer's), checked together."""
        n = len(jobs)
        defaults = {"prior_mean": (self.prior_mean, np.float64), "prior_precision": (self.prior_precision, np.float64),
                    "num_exploration": (self.num_exploration, np.int64), "seed": (self.seed, np.uint64)}
        out = {name: given[name] if name in given else np.full(n, value, dtype) for name, (value, dtype) in defaults.items()}
        if "window_size" in given:
            windows = given["window_size"]
            if not self.learn_reward_precision:
                bad = np.flatnonzero(windows != 0)
                if bad.size:
                    i = int(bad[0])
                    raise ConfigurationError(
                        f"job {jobs[i]!r}: window_size={int(windows[i])} needs learn_reward_precision=True "
                        f"(a known precision keeps no history)"
                    )
            else:
                out["window_size"] = windows
        if not self.learn_reward_precision and self.reward_precision == 0.0 and "prior_precision" in given:
            zero = np.flatnonzero(out["prior_precision"] == 0.0)
            if zero.size:
                i = int(zero[0])
                raise ConfigurationError(
                    f"job {jobs[i]!r}: prior_precision=0.0 with the known reward_precision=0 gives every posterior "
                    f"precision 0 and mean 0/0 = NaN; give it a positive prior_precision"
                )
        return out

    def _init_jobs(self, rows: np.ndarray, slots: np.ndarray | slice) -> None:
        """Arms at the job's prior, no observations, streams seeded as at registration
        (the job keeps its settings)."""
        s = self._store
        counts = s.arm_count[rows]
        s.posterior_mean[slots] = np.repeat(s.prior_mean[rows], counts)
        s.posterior_precision[slots] = np.repeat(s.prior_precision[rows], counts)
        s.reward_precision[slots] = self.reward_precision
        s.observation_count[slots] = 0
        s.arm_active[slots] = 1
        seed_streams(s.streams, rows, s.seed[rows])

    # ------------------------------------------------------------- decisions
    def _observe_settings(self) -> int:
        return self._refit

    @B.declare(job=B.KEY)
    def predict(self, job: Hashable) -> int:
        """The batch size to run ``job`` with next."""
        try:
            row = self._store._rows[job]
        except (KeyError, TypeError):
            row = self._store.row(job)  # raises the named error
        bs = self._sample_one(row)
        if self.verbose:
            self._log(f"{job} -> BS = {bs}")
        return bs

    @B.declare(jobs=B.JOBS, parallel=B.PARALLEL)
    def predict_many(self, jobs: JobsLike, parallel: bool = False) -> np.ndarray:
        """One decision per entry of ``jobs`` (keys, or :class:`~banditfleet.rows.Rows` from
        :meth:`rows`), as int64.

        Equal to calling :meth:`predict` for each entry in order. With
        ``parallel=True`` a batch whose jobs are all distinct is split over
        numba's threads (same results: every job owns its stream); a batch
        that repeats a job runs sequentially.
        """
        rows = self._resolve(jobs)
        parallel = B.PARALLEL.check(parallel)
        s = self._store
        out = np.empty(rows.shape[0], np.int64)
        if parallel and rows.shape[0] > 1 and self._unique(rows):
            thompson_predict_parallel(
                rows,
                s.arm_start,
                s.arm_count,
                s.arm_active,
                s.arm_value,
                s.observation_count,
                s.posterior_mean,
                s.posterior_precision,
                s.num_exploration,
                s.streams,
                out,
                int(s.arm_count[: s.n_jobs].max()),
                numba.get_num_threads() * 4,
            )
            self._record("predict", {"rows": rows})
            return out
        predict_rows(self._handle(), rows, out)
        self._record("predict", {"rows": rows})
        return out

    def _unique(self, rows: np.ndarray) -> bool:
        s = self._store
        if getattr(self, "_marks", None) is None or self._marks.shape[0] < s.n_jobs:
            self._marks = np.full(s.job_capacity, -1, np.int64)
            self._generation = 0
        self._generation += 1
        return bool(rows_are_unique(rows, self._marks, self._generation))

    @B.declare(job=B.KEY, batch_size=B.BATCH_SIZE, cost=B.COST, converged=B.OPTIONAL_FLAG)
    def observe(self, job: Hashable, batch_size: int, cost: float, converged: bool | None = None) -> None:
        """Learn from one run: ``cost`` is its energy-time cost; ``converged`` (validated) is ignored."""
        s = self._store
        try:
            row = s._rows[job]
        except (KeyError, TypeError):
            row = s.row(job)  # raises the named error
        bs = self._scalar_batch_size(row, batch_size)
        c = self._scalar_cost(row, cost)
        if converged is not None:
            self._scalar_converged(row, converged)
        # One kernel call with the settings in the handle: the scalar call is mostly Python overhead.
        h = self._h if self._handle_version == s.layout_version else self._handle()
        fn = self._entry_points.get("observe_one_c")
        slot = self._fast("observe_one_c", observe_one_c, (h, row, bs, c)) if fn is None else fn(h, row, bs, c)
        if slot == NEEDS_POOL:
            slot = self._observe_slot(row, bs, c, self._refit)
        if slot < 0:
            self._slots(np.array([row], np.int64), np.array([bs], np.int64))  # raises the named error
        if self._folder is not None:
            self._record("observe", {"rows": np.array([row], np.int64), "batch_sizes": np.array([bs], np.int64), "costs": np.array([c])})
        if self.verbose:
            self._log(f"{job} @ {batch_size}: reward = {-c:.2f}")

    @B.declare(jobs=B.JOBS, batch_sizes=B.BATCH_SIZE, costs=B.COST, converged=B.FLAG, parallel=B.PARALLEL)
    def observe_many(
        self, jobs: JobsLike, batch_sizes: Any, costs: Any, converged: Any = None, parallel: bool = False
    ) -> None:
        """Learn from many runs, applied in array order. Validated whole before any change
        (``converged``, one flag per job or None, is validated and ignored).

        With ``parallel=True`` a batch whose jobs are all distinct is split over
        numba's threads (the same state for any thread count: every entry
        touches only its own arm; new history chunks are handed out first, in
        array order); a batch that repeats a job runs sequentially.
        """
        rows = self._resolve(jobs)
        parallel = B.PARALLEL.check(parallel)
        bs = self._batch_sizes(rows, batch_sizes)
        c = self._costs(rows, costs)
        self._converged(rows, converged)
        slots = self._slots(rows, bs)
        s = self._store
        if parallel and rows.shape[0] > 1 and self._unique(rows):
            if self.learn_reward_precision:
                s.reserve_history_for(slots)
            observe_rows_parallel(
                self._handle(), rows, slots, c, np.ones(slots.shape[0], np.uint8), self.learn_reward_precision,
                numba.get_num_threads() * 4,
            )
            self._record("observe", {"rows": rows, "batch_sizes": bs, "costs": c})
            return
        if not self.learn_reward_precision:
            observe_rows_incremental(self._handle(), slots, c)
            self._record("observe", {"rows": rows, "batch_sizes": bs, "costs": c})
            return
        s.reserve_history_for(slots)
        observe_rows_refit(self._handle(), rows, slots, c, np.ones(slots.shape[0], np.uint8)
        )
        self._record("observe", {"rows": rows, "batch_sizes": bs, "costs": c})

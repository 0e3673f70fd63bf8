"""Gaussian Thompson-sampling batch-size optimizer: one bandit per job, all jobs in arrays."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numba
import numpy as np

from banditfleet import _boundary as B
from banditfleet._base import JobsLike, _FleetOptimizer
from banditfleet.errors import ConfigurationError
from banditfleet.kernels.streams import allocate_streams, seed_streams
from banditfleet.kernels.fleet import NEEDS_POOL, observe_one_c, observe_rows_incremental, observe_rows_refit, predict_rows
from banditfleet.kernels.thompson import rows_are_unique, thompson_predict_parallel
from banditfleet.rows import Rows
from banditfleet.store import HISTORY_NONE, HISTORY_UNBOUNDED, FleetStore

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
    """

    @B.declare(
        learn_reward_precision=B.LEARN_REWARD_PRECISION,
        reward_precision=B.REWARD_PRECISION,
        prior_mean=B.PRIOR_MEAN,
        prior_precision=B.PRIOR_PRECISION,
        num_exploration=B.NUM_EXPLORATION,
        seed=B.SEED,
        verbose=B.VERBOSE,
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
    ) -> None:
        self.learn_reward_precision = B.LEARN_REWARD_PRECISION.check(learn_reward_precision)
        self._refit = 1 if self.learn_reward_precision else 0  # observe_one_c: refit from a kept history
        self.reward_precision = B.REWARD_PRECISION.check(reward_precision)
        self.prior_mean = B.PRIOR_MEAN.check(prior_mean)
        self.prior_precision = B.PRIOR_PRECISION.check(prior_precision)
        self.num_exploration = B.NUM_EXPLORATION.check(num_exploration)
        self.seed = B.SEED.check(seed)
        self.verbose = B.VERBOSE.check(verbose)
        if not self.learn_reward_precision and self.reward_precision == 0.0 and self.prior_precision == 0.0:
            raise ConfigurationError(
                "learn_reward_precision=False with reward_precision=0 and prior_precision=0 gives every "
                "posterior precision 0 and mean 0/0 = NaN; give a positive reward_precision or prior_precision"
            )
        self._store = FleetStore(HISTORY_UNBOUNDED if self.learn_reward_precision else HISTORY_NONE)
        self._store.row_space.owner = f"{type(self).__name__}@{id(self):x}"
        # Each job's registration seed, so reset_jobs can seed it again.
        self._store.add_job_array("seed", np.uint64, self.seed)
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
        }

    # ----------------------------------------------------------- registration
    @B.declare(job=B.KEY, batch_sizes=B.ARM)
    def register_job(self, job: Hashable, batch_sizes: Sequence[int]) -> None:
        """Register ``job`` with its batch sizes (their order fixes exploration order and ties).

        Registering a job again with the same batch sizes changes nothing.
        """
        self.register_jobs([job], [batch_sizes])
        self._log(f"Registered {job}")

    @B.declare(jobs=B.JOBS, batch_sizes=B.ARM, seeds=B.SEEDS)
    def register_jobs(
        self,
        jobs: Sequence[Hashable],
        batch_sizes: Sequence[Sequence[int]] | np.ndarray,
        seeds: Any = None,
    ) -> Rows:
        """Register many jobs at once; returns their tagged :class:`~banditfleet.rows.Rows`.

        ``batch_sizes`` is one list per job, or a 2-D integer array when all
        jobs have the same number of batch sizes (fastest). ``seeds`` (one per
        job) gives each new job its own stream, as if each had its own
        reference optimizer with that seed; by default every job uses ``seed``.
        """
        s = self._store
        jobs = B.key_list(jobs)
        job_seeds = check_seeds(seeds, jobs)
        encoded = self._journal_keys(jobs)
        rows, new = s.register(jobs, batch_sizes)
        new_rows = rows[new]
        if new_rows.size:
            slots = s.job_slots(new_rows)
            s.posterior_mean[slots] = self.prior_mean
            s.posterior_precision[slots] = self.prior_precision
            s.reward_precision[slots] = self.reward_precision
            s.observation_count[slots] = 0
            if job_seeds is None:
                for dst, src in zip(s.streams, self._template):
                    dst[new_rows] = src[0]
            else:
                seed_streams(s.streams, new_rows, job_seeds[new])
                s.seed[new_rows] = job_seeds[new]
        self._record_register(encoded, batch_sizes, arrays=None if job_seeds is None else {"seeds": job_seeds})
        return s.row_space.tag(rows)

    def _init_jobs(self, rows: np.ndarray, slots: np.ndarray | slice) -> None:
        """Arms at the prior, no observations, streams seeded as at registration."""
        s = self._store
        s.posterior_mean[slots] = self.prior_mean
        s.posterior_precision[slots] = self.prior_precision
        s.reward_precision[slots] = self.reward_precision
        s.observation_count[slots] = 0
        s.arm_active[slots] = 1
        seed_streams(s.streams, rows, s.seed[rows])

    # ------------------------------------------------------------- decisions
    def _observe_settings(self) -> tuple[int, int]:
        return self._refit, HISTORY_UNBOUNDED

    @B.declare(job=B.KEY)
    def predict(self, job: Hashable) -> int:
        """The batch size to run ``job`` with next."""
        try:
            row = self._store._rows[job]
        except (KeyError, TypeError):
            row = self._store.row(job)  # raises the named error
        bs = self._sample_one(row, self.num_exploration)
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
                self.num_exploration,
                s.streams,
                out,
                int(s.arm_count[: s.n_jobs].max()),
                numba.get_num_threads() * 4,
            )
            self._record("predict", {"rows": rows})
            return out
        predict_rows(self._handle(), rows, self.num_exploration, out)
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
            slot = self._observe_slot(row, bs, c, self._refit, HISTORY_UNBOUNDED)
        if slot < 0:
            self._slots(np.array([row], np.int64), np.array([bs], np.int64))  # raises the named error
        if self._folder is not None:
            self._record("observe", {"rows": np.array([row], np.int64), "batch_sizes": np.array([bs], np.int64), "costs": np.array([c])})
        if self.verbose:
            self._log(f"{job} @ {batch_size}: reward = {-c:.2f}")

    @B.declare(jobs=B.JOBS, batch_sizes=B.BATCH_SIZE, costs=B.COST, converged=B.FLAG)
    def observe_many(self, jobs: JobsLike, batch_sizes: Any, costs: Any, converged: Any = None) -> None:
        """Learn from many runs, applied in array order. Validated whole before any change
        (``converged``, one flag per job or None, is validated and ignored)."""
        rows = self._resolve(jobs)
        bs = self._batch_sizes(rows, batch_sizes)
        c = self._costs(rows, costs)
        self._converged(rows, converged)
        slots = self._slots(rows, bs)
        s = self._store
        if not self.learn_reward_precision:
            observe_rows_incremental(self._handle(), slots, c)
            self._record("observe", {"rows": rows, "batch_sizes": bs, "costs": c})
            return
        s.reserve_history_chunks(slots.shape[0])
        observe_rows_refit(
            self._handle(), slots, c, np.ones(slots.shape[0], np.uint8), HISTORY_UNBOUNDED, self.prior_mean, self.prior_precision
        )
        self._record("observe", {"rows": rows, "batch_sizes": bs, "costs": c})

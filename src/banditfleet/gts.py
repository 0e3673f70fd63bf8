"""Gaussian Thompson-sampling batch-size optimizer: one bandit per job, all jobs in arrays."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numba
import numpy as np

from banditfleet._base import JobsLike, _FleetOptimizer
from banditfleet.errors import ConfigurationError
from banditfleet.kernels.streams import allocate_streams, seed_streams
from banditfleet.kernels.thompson import (
    observe_incremental,
    observe_refit,
    rows_are_unique,
    thompson_predict,
    thompson_predict_parallel,
)
from banditfleet.store import HISTORY_NONE, HISTORY_UNBOUNDED, FleetStore

__all__ = ["GTSBatchSizeOptimizer", "seed_template", "check_seed", "check_seeds"]


def check_seed(seed: Any) -> int:
    """A seed numpy's ``default_rng`` accepts and the kernels can hold (0 <= seed < 2**64)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ConfigurationError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise ConfigurationError(f"seed must be in [0, 2**64), got {seed!r}")
    return int(seed)


def check_seeds(seeds: Any, n: int) -> np.ndarray | None:
    """Per-job seeds as uint64 (each 0 <= seed < 2**64), or None for the optimizer's seed."""
    if seeds is None:
        return None
    if isinstance(seeds, np.ndarray) and seeds.dtype.kind in "iu":
        arr = seeds
        if arr.shape != (n,):
            raise ConfigurationError(f"seeds: expected {n} seeds (one per job), got shape {arr.shape}")
        if arr.dtype.kind == "i" and n and arr.min() < 0:
            raise ConfigurationError(f"seeds must be non-negative, got {int(arr.min())}")
        return arr.astype(np.uint64)
    values = list(seeds)
    if len(values) != n:
        raise ConfigurationError(f"seeds: expected {n} seeds (one per job), got {len(values)}")
    return np.array([check_seed(v) for v in values], np.uint64)


def seed_template(seed: int):
    """A one-row stream seeded as ``np.random.default_rng(seed)``, to copy into job rows."""
    template = allocate_streams(1)
    seed_streams(template, np.zeros(1, np.int64), np.array([seed], np.uint64))
    return template


def _check_real(name: str, value: Any, *, allow_inf: bool = False, nonnegative: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a real number, got {value!r}") from None
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    if nonnegative and v < 0:
        raise ConfigurationError(f"{name} must be >= 0, got {value!r}")
    return v


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
        self.learn_reward_precision = bool(learn_reward_precision)
        self.reward_precision = _check_real("reward_precision", reward_precision, allow_inf=True, nonnegative=True)
        self.prior_mean = _check_real("prior_mean", prior_mean)
        self.prior_precision = _check_real("prior_precision", prior_precision, nonnegative=True)
        if isinstance(num_exploration, bool) or not isinstance(num_exploration, (int, np.integer)) or num_exploration < 0:
            raise ConfigurationError(f"num_exploration must be a non-negative integer, got {num_exploration!r}")
        self.num_exploration = int(num_exploration)
        self.seed = check_seed(seed)
        self.verbose = bool(verbose)
        if not self.learn_reward_precision and self.reward_precision == 0.0 and self.prior_precision == 0.0:
            raise ConfigurationError(
                "learn_reward_precision=False with reward_precision=0 and prior_precision=0 gives every "
                "posterior precision 0 and mean 0/0 = NaN; give a positive reward_precision or prior_precision"
            )
        self._store = FleetStore(HISTORY_UNBOUNDED if self.learn_reward_precision else HISTORY_NONE)
        # Each job's registration seed, so reset_jobs can seed it again.
        self._store.add_job_array("seed", np.uint64, self.seed)
        self._template = seed_template(self.seed)
        # Reused one-element buffers of the scalar fast path (safe: every public call holds the optimizer's lock).
        self._one_row = np.zeros(1, np.int64)
        self._one_out = np.zeros(1, np.int64)

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
    def register_job(self, job: Hashable, batch_sizes: Sequence[int]) -> None:
        """Register ``job`` with its batch sizes (their order fixes exploration order and ties).

        Registering a job again with the same batch sizes changes nothing.
        """
        self.register_jobs([job], [batch_sizes])
        self._log(f"Registered {job}")

    def register_jobs(
        self,
        jobs: Sequence[Hashable],
        batch_sizes: Sequence[Sequence[int]] | np.ndarray,
        seeds: Any = None,
    ) -> np.ndarray:
        """Register many jobs at once; returns their rows.

        ``batch_sizes`` is one list per job, or a 2-D integer array when all
        jobs have the same number of batch sizes (fastest). ``seeds`` (one per
        job) gives each new job its own stream, as if each had its own
        reference optimizer with that seed; by default every job uses ``seed``.
        """
        s = self._store
        jobs = list(jobs)
        job_seeds = check_seeds(seeds, len(jobs))
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
        return rows

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
    def predict(self, job: Hashable) -> int:
        """The batch size to run ``job`` with next."""
        self._one_row[0] = self._store.row(job)
        bs = self._sample_one(self._one_row, self._one_out, self.num_exploration)
        if self.verbose:
            self._log(f"{job} -> BS = {bs}")
        return bs

    def predict_many(self, jobs: JobsLike, parallel: bool = False) -> np.ndarray:
        """One decision per entry of ``jobs`` (keys, or rows from :meth:`rows`), as int64.

        Equal to calling :meth:`predict` for each entry in order. With
        ``parallel=True`` a batch whose jobs are all distinct is split over
        numba's threads (same results: every job owns its stream); a batch
        that repeats a job runs sequentially.
        """
        rows = self.rows(jobs)
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
        thompson_predict(
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
        )
        self._record("predict", {"rows": rows})
        return out

    def _unique(self, rows: np.ndarray) -> bool:
        s = self._store
        if getattr(self, "_marks", None) is None or self._marks.shape[0] < s.n_jobs:
            self._marks = np.full(s.job_capacity, -1, np.int64)
            self._generation = 0
        self._generation += 1
        return bool(rows_are_unique(rows, self._marks, self._generation))

    def observe(self, job: Hashable, batch_size: int, cost: float, converged: bool | None = None) -> None:
        """Learn from one run: ``cost`` is its energy-time cost; ``converged`` is ignored."""
        s = self._store
        row = s.row(job)
        bs = self._scalar_batch_size(row, batch_size)
        c = self._scalar_cost(row, cost)
        if self.learn_reward_precision:
            s.reserve_history_chunks(1)
        slot = self._observe_slot(row, bs, c, 1 if self.learn_reward_precision else 0, HISTORY_UNBOUNDED)
        if slot < 0:
            self._slots(np.array([row], np.int64), np.array([bs], np.int64))  # raises the named error
        if self._folder is not None:
            self._record("observe", {"rows": np.array([row], np.int64), "batch_sizes": np.array([bs], np.int64), "costs": np.array([c])})
        if self.verbose:
            self._log(f"{job} @ {batch_size}: reward = {-c:.2f}")

    def observe_many(self, jobs: JobsLike, batch_sizes: Any, costs: Any, converged: Any = None) -> None:
        """Learn from many runs, applied in array order. Validated whole before any change."""
        rows = self.rows(jobs)
        bs = self._batch_sizes(rows, batch_sizes)
        c = self._costs(rows, costs)
        slots = self._slots(rows, bs)
        s = self._store
        if not self.learn_reward_precision:
            observe_incremental(slots, c, s.reward_precision, s.posterior_mean, s.posterior_precision, s.observation_count)
            self._record("observe", {"rows": rows, "batch_sizes": bs, "costs": c})
            return
        s.reserve_history_chunks(slots.shape[0])
        observe_refit(
            slots,
            c,
            np.ones(slots.shape[0], np.uint8),
            HISTORY_UNBOUNDED,
            self.prior_mean,
            self.prior_precision,
            s.history_count,
            s.history_values,
            s.chunk_values,
            s.chunk_next,
            s.slot_chunks,
            s.pool_used,
            s.reward_precision,
            s.posterior_mean,
            s.posterior_precision,
            s.observation_count,
        )
        self._record("observe", {"rows": rows, "batch_sizes": bs, "costs": c})

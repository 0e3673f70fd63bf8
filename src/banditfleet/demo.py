"""A synthetic fleet that shows banditfleet learning, and how fast it decides.

:func:`run_demo` builds ``jobs`` synthetic recurring training jobs that share
one list of batch sizes (8, 16, 32, ... doubling, ``arms`` of them). Each job
has a known, noise-free energy-time cost curve over those batch sizes: convex
in log2(batch size), with its minimum at a random position, a random
curvature and a random overall scale. Every round, the optimizer picks one
batch size per job with a single :meth:`~GTSBatchSizeOptimizer.predict_many`
call, each job "runs" once at a cost drawn as its curve times log-normal
noise, and all costs go back with one :meth:`~GTSBatchSizeOptimizer.observe_many`
call. A uniform-random policy plays the same fleet, on its own noise, as the
baseline.

Everything is vectorized over jobs with numpy; there is no per-job Python
loop. The whole run is deterministic given ``seed`` (the timings aside).

Timing: the first call of each kernel compiles it, or loads it from numba's
on-disk cache. That happens in a warm-up on a one-job optimizer before the
fleet starts and is reported as :attr:`DemoResult.compile_seconds`; the
decision rate counts only the fleet's ``predict_many`` and ``observe_many``
calls.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditfleet.gts import GTSBatchSizeOptimizer

__all__ = [
    "POLICIES",
    "DemoResult",
    "make_cost_curves",
    "run_demo",
    "batch_sizes_for",
]

logger = logging.getLogger(__name__)

#: Policies the demo can drive: GTS learning each arm's reward precision from
#: its rewards (the reference's ``learn_reward_precision=True``), or GTS with a
#: known reward precision.
POLICIES = ("gts", "gts-known")

MAX_ARMS = 32  # 8 * 2**31 still fits comfortably in int64

ProgressCallback = Callable[[int, int], None]


def batch_sizes_for(arms: int) -> np.ndarray:
    """The demo's batch sizes: 8, 16, 32, ... (``arms`` of them, doubling)."""
    return (8 * 2 ** np.arange(arms, dtype=np.int64)).astype(np.int64)


def make_cost_curves(jobs: int, arms: int, rng: np.random.Generator) -> np.ndarray:
    """Noise-free energy-time cost of every (job, arm), shape ``(jobs, arms)``.

    ``cost[j, a] = scale_j * (1 + curvature_j * (a - minimum_j) ** 2)`` where
    ``a`` is the arm's position on the log2 batch-size axis, ``minimum_j`` is
    uniform over ``[0, arms - 1]``, ``curvature_j`` uniform in ``[0.05, 0.2]``
    and ``scale_j`` log-normal around 1000 (cost units are arbitrary).
    """
    position = np.arange(arms, dtype=np.float64)
    minimum = rng.uniform(0.0, arms - 1.0, size=jobs)
    curvature = rng.uniform(0.05, 0.2, size=jobs)
    scale = 1000.0 * np.exp(rng.normal(0.0, 0.5, size=jobs))
    return scale[:, None] * (1.0 + curvature[:, None] * (position[None, :] - minimum[:, None]) ** 2)


@dataclass(frozen=True)
class DemoResult:
    """What a demo run did and measured.

    Per-job arrays are indexed by job row (0 .. jobs-1); arm indices point
    into :attr:`batch_sizes`.
    """

    jobs: int
    arms: int
    rounds: int
    policy: str
    seed: int
    noise: float
    reward_precision: float | None
    batch_sizes: np.ndarray  # (arms,) int64
    cost_curves: np.ndarray  # (jobs, arms) float64, noise-free expected cost up to a constant factor
    cheapest_arm: np.ndarray  # (jobs,) int64, argmin of cost_curves
    play_counts: np.ndarray  # (jobs, arms) int64, how often the optimizer chose each arm
    random_play_counts: np.ndarray  # (jobs, arms) int64, the same for the uniform-random baseline
    last_choice: np.ndarray  # (jobs,) int64 arm index chosen in the final round
    compile_seconds: float  # warm-up: numba compile or cache load of every kernel used
    register_seconds: float
    predict_seconds: float
    observe_seconds: float

    @property
    def decisions(self) -> int:
        """Decisions made: one per job per round."""
        return self.jobs * self.rounds

    @property
    def run_seconds(self) -> float:
        """Time inside ``predict_many`` and ``observe_many`` (compile excluded)."""
        return self.predict_seconds + self.observe_seconds

    @property
    def decisions_per_second(self) -> float:
        """Decisions per second of the predict-then-observe round trip."""
        return self.decisions / self.run_seconds if self.run_seconds > 0 else math.inf

    @property
    def most_played_arm(self) -> np.ndarray:
        """Each job's most-played arm (the lowest index on ties)."""
        return np.argmax(self.play_counts, axis=1)

    @property
    def random_most_played_arm(self) -> np.ndarray:
        return np.argmax(self.random_play_counts, axis=1)

    @property
    def fraction_most_played_cheapest(self) -> float:
        """Fraction of jobs whose most-played arm is their truly cheapest arm."""
        return float(np.mean(self.most_played_arm == self.cheapest_arm))

    @property
    def random_fraction_most_played_cheapest(self) -> float:
        """The same fraction for the uniform-random baseline (about 1/arms)."""
        return float(np.mean(self.random_most_played_arm == self.cheapest_arm))

    def _excess(self, arm: np.ndarray) -> float:
        rows = np.arange(self.jobs)
        best = self.cost_curves[rows, self.cheapest_arm]
        return float(np.mean(self.cost_curves[rows, arm] / best - 1.0))

    @property
    def excess_cost_most_played(self) -> float:
        """Mean relative cost of each job's most-played arm above its cheapest arm."""
        return self._excess(self.most_played_arm)

    @property
    def random_excess_cost_most_played(self) -> float:
        return self._excess(self.random_most_played_arm)

    @property
    def excess_cost_last_round(self) -> float:
        """Mean relative cost of the final round's choices above each job's cheapest arm."""
        return self._excess(self.last_choice)

    def summary(self) -> dict[str, Any]:
        """The scalar results, JSON-ready."""
        return {
            "jobs": self.jobs,
            "arms": self.arms,
            "rounds": self.rounds,
            "policy": self.policy,
            "seed": self.seed,
            "noise": self.noise,
            "reward_precision": self.reward_precision,
            "batch_sizes": self.batch_sizes.tolist(),
            "decisions": self.decisions,
            "compile_seconds": self.compile_seconds,
            "register_seconds": self.register_seconds,
            "predict_seconds": self.predict_seconds,
            "observe_seconds": self.observe_seconds,
            "run_seconds": self.run_seconds,
            "decisions_per_second": self.decisions_per_second,
            "fraction_most_played_cheapest": self.fraction_most_played_cheapest,
            "random_fraction_most_played_cheapest": self.random_fraction_most_played_cheapest,
            "chance_fraction": 1.0 / self.arms,
            "excess_cost_most_played": self.excess_cost_most_played,
            "random_excess_cost_most_played": self.random_excess_cost_most_played,
            "excess_cost_last_round": self.excess_cost_last_round,
        }


def _make_optimizer(policy: str, reward_precision: float | None, seed: int) -> GTSBatchSizeOptimizer:
    if policy == "gts":
        return GTSBatchSizeOptimizer(learn_reward_precision=True, seed=seed, verbose=False)
    return GTSBatchSizeOptimizer(
        learn_reward_precision=False, reward_precision=reward_precision, seed=seed, verbose=False
    )


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def run_demo(
    jobs: int = 10_000,
    arms: int = 8,
    rounds: int = 50,
    *,
    seed: int = 0,
    policy: str = "gts",
    noise: float = 0.1,
    reward_precision: float | None = None,
    progress: ProgressCallback | None = None,
) -> DemoResult:
    """Drive a synthetic fleet through ``rounds`` batched predict/observe rounds.

    Args:
        jobs: Number of jobs in the fleet.
        arms: Batch sizes per job (8, 16, ... doubling).
        rounds: Rounds; every job runs once per round.
        seed: Seeds the cost curves, the noise, the baseline and the optimizer.
        policy: ``"gts"`` learns each arm's reward precision; ``"gts-known"``
            uses a known ``reward_precision``.
        noise: Standard deviation of the log-normal multiplicative cost noise.
        reward_precision: For ``"gts-known"``: the reward (= -cost) precision.
            Defaults to ``1 / (noise * median job scale)**2``, the precision
            of the noise at a typical job's cost.
        progress: Called as ``progress(rounds_done, rounds)``: with 0 once the
            kernels are ready, then after each round.
    """
    jobs = _check_int("jobs", jobs, 1)
    arms = _check_int("arms", arms, 2, MAX_ARMS)
    rounds = _check_int("rounds", rounds, 1)
    seed = _check_int("seed", seed, 0, 2**64 - 1)
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0.0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if policy == "gts-known":
        if reward_precision is None:
            if noise == 0.0:
                raise ValueError("gts-known with noise 0 needs an explicit reward_precision")
            reward_precision = 1.0 / (noise * 1000.0) ** 2
        reward_precision = float(reward_precision)
        if not (reward_precision > 0.0):
            raise ValueError(f"reward_precision must be > 0, got {reward_precision!r}")
    else:
        reward_precision = None

    curve_seq, noise_seq, baseline_seq = np.random.SeedSequence(seed).spawn(3)
    batch_sizes = batch_sizes_for(arms)
    curves = make_cost_curves(jobs, arms, np.random.default_rng(curve_seq))
    cheapest = np.argmin(curves, axis=1)
    noise_rng = np.random.default_rng(noise_seq)
    baseline_rng = np.random.default_rng(baseline_seq)

    # Warm-up on a throwaway one-job optimizer: compiles (or loads from the
    # cache) every kernel the fleet will call, with the same argument types.
    t0 = time.perf_counter()
    warm = _make_optimizer(policy, reward_precision, seed)
    warm_rows = warm.register_jobs([0], batch_sizes[None, :])
    warm.observe_many(warm_rows, warm.predict_many(warm_rows), np.ones(1))
    compile_seconds = time.perf_counter() - t0
    logger.info("kernels ready in %.2f s (numba compile or cache load)", compile_seconds)

    optimizer = _make_optimizer(policy, reward_precision, seed)
    t0 = time.perf_counter()
    rows = optimizer.register_jobs(range(jobs), np.broadcast_to(batch_sizes, (jobs, arms)))
    register_seconds = time.perf_counter() - t0
    logger.info("registered %d jobs x %d batch sizes in %.3f s", jobs, arms, register_seconds)

    play_counts = np.zeros((jobs, arms), np.int64)
    random_counts = np.zeros((jobs, arms), np.int64)
    flat_base = np.arange(jobs, dtype=np.int64) * arms
    job_index = np.arange(jobs)
    predict_seconds = observe_seconds = 0.0
    if progress is not None:
        progress(0, rounds)
    choice = np.zeros(jobs, np.int64)
    for r in range(rounds):
        t0 = time.perf_counter()
        chosen = optimizer.predict_many(rows)
        predict_seconds += time.perf_counter() - t0

        choice = np.searchsorted(batch_sizes, chosen)
        play_counts.reshape(-1)[flat_base + choice] += 1
        costs = curves[job_index, choice] * np.exp(noise * noise_rng.standard_normal(jobs))

        t0 = time.perf_counter()
        optimizer.observe_many(rows, chosen, costs)
        observe_seconds += time.perf_counter() - t0

        random_choice = baseline_rng.integers(0, arms, size=jobs)
        random_counts.reshape(-1)[flat_base + random_choice] += 1
        if progress is not None:
            progress(r + 1, rounds)

    result = DemoResult(
        jobs=jobs,
        arms=arms,
        rounds=rounds,
        policy=policy,
        seed=seed,
        noise=noise,
        reward_precision=reward_precision,
        batch_sizes=batch_sizes,
        cost_curves=curves,
        cheapest_arm=cheapest,
        play_counts=play_counts,
        random_play_counts=random_counts,
        last_choice=choice,
        compile_seconds=compile_seconds,
        register_seconds=register_seconds,
        predict_seconds=predict_seconds,
        observe_seconds=observe_seconds,
    )
    logger.info(
        "%d decisions in %.3f s; most-played arm is the cheapest for %.1f%% of jobs",
        result.decisions,
        result.run_seconds,
        100 * result.fraction_most_played_cheapest,
    )
    return result

"""Fleets the benchmark cases drive: banditfleet optimizers and, when the reference is
installed, ``zeus==0.16.0`` optimizers holding the same jobs, built in lockstep.

The lockstep build checks every decision of banditfleet against the
reference's while it warms the fleet up, so a timed comparison always compares
optimizers in the same state. The reference may hold only the first
``n_ref`` of the ``n`` jobs (its loops are slow); those jobs see exactly the
same costs on both sides.

Everything here is shared by :mod:`banditfleet.bench.cases` (``banditfleet
bench``) and the pytest-benchmark suites in ``benchmarks/``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from banditfleet.demo import batch_sizes_for
from banditfleet.gts import GTSBatchSizeOptimizer
from banditfleet.job import Job
from banditfleet.power import JITPowerLimitOptimizer
from banditfleet.pruning import PruningGTSBatchSizeOptimizer

__all__ = [
    "REFERENCE_VERSION",
    "KNOWN_REWARD_PRECISION",
    "POWER_LIMITS",
    "reference",
    "quiet",
    "arm_values",
    "default_bs",
    "make_jobs",
    "CostModel",
    "PairedFleet",
    "gts_fleet",
    "random_gts_fleet",
    "pruning_fleet",
    "PowerFleet",
    "reaches_target",
]

REFERENCE_VERSION = "0.16.0"
#: Reward precision of the known-precision GTS fleets (costs are ~1000 with ~15% noise).
KNOWN_REWARD_PRECISION = 1e-4
POWER_LIMITS = (300, 275, 250, 225, 200)


def reference() -> tuple[Any, str | None]:
    """``(zeus._legacy.policy.optimizer, None)``, or ``(None, why it cannot be used)``."""
    try:
        zeus = importlib.import_module("zeus")
        policy = importlib.import_module("zeus._legacy.policy.optimizer")
    except ImportError as exc:
        return None, f"zeus=={REFERENCE_VERSION} is not installed ({exc}); pip install 'banditfleet[test]'"
    version = getattr(zeus, "__version__", "unknown")
    if version != REFERENCE_VERSION:
        return None, f"zeus {version} is installed; the reference is zeus=={REFERENCE_VERSION}"
    return policy, None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow the reference's prints and warnings."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def arm_values(arms: int) -> np.ndarray:
    """The batch sizes of every benchmark job: 8, 16, 32, ... doubling (the demo's) up to
    20 arms; 8, 16, 24, ... beyond, where doubling would overflow int64."""
    if arms <= 20:
        return batch_sizes_for(arms)
    return 8 * np.arange(1, arms + 1, dtype=np.int64)


def default_bs(arms: int) -> int:
    """The default batch size: the middle one (128 of 8 ... 1024)."""
    values = arm_values(arms)
    return int(values[len(values) // 2])


def make_jobs(n: int, tag: str, default: int) -> list[Job]:
    return [Job("imagenet", f"{tag}-{i}", "adam", 0.7, 100, default_bs=default) for i in range(n)]


def reaches_target(batch_sizes: np.ndarray, arms: int) -> np.ndarray:
    """Whether a run reaches the target: every batch size up to twice the default does."""
    return np.asarray(batch_sizes) <= 2 * default_bs(arms)


class CostModel:
    """Deterministic energy-time costs: a bowl around the default batch size, times
    per-(round, job) log-normal noise."""

    def __init__(self, n_jobs: int, rounds: int, default: int = 128, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.noise = rng.lognormal(0.0, 0.15, size=(rounds, n_jobs))
        self.job_scale = rng.uniform(0.5, 2.0, size=n_jobs)
        self.default = default

    def __call__(self, batch_sizes: np.ndarray, k: int, n: int | None = None) -> np.ndarray:
        """Costs of the first ``n`` jobs (all by default) running ``batch_sizes`` in round ``k``."""
        n = len(batch_sizes) if n is None else n
        shape = 1.0 + 0.25 * np.log2(np.asarray(batch_sizes, np.float64) / self.default) ** 2
        return 1000.0 * self.job_scale[:n] * shape * self.noise[k % self.noise.shape[0], :n]


class PairedFleet:
    """A banditfleet optimizer over ``jobs`` and, optionally, a reference optimizer over
    ``jobs[:n_ref]``, driven in lockstep (their decisions must agree)."""

    def __init__(self, ours: Any, rows: np.ndarray, ref: Any, jobs: list[Job], n_ref: int, arms: int, costs: CostModel) -> None:
        self.ours, self.rows, self.ref, self.jobs = ours, rows, ref, jobs
        self.n_ref = n_ref if ref is not None else 0
        self.ref_jobs = jobs[: self.n_ref]
        self.arms = arms
        self.costs = costs
        self.k = 0

    def round(self, converged: bool | np.ndarray | None = None) -> np.ndarray:
        """predict + observe every job on both sides; returns banditfleet's decisions."""
        bs = self.ours.predict_many(self.rows)
        if self.ref is not None:
            with quiet():
                ref_bs = [self.ref.predict(job) for job in self.ref_jobs]
            if bs[: self.n_ref].tolist() != ref_bs:
                raise AssertionError("banditfleet and the reference decided differently")
        cost = self.costs(bs, self.k)
        if isinstance(converged, (bool, np.bool_)):
            converged = np.full(len(self.jobs), bool(converged))
        self.ours.observe_many(self.rows, bs, cost, converged)
        if self.ref is not None:
            flags = [None] * self.n_ref if converged is None else converged[: self.n_ref].tolist()
            with quiet():
                for job, b, c, f in zip(self.ref_jobs, bs.tolist(), cost.tolist(), flags):
                    self.ref.observe(job, b, c, f)
        self.k += 1
        return bs

    # The loops the cases time.
    def ours_predict(self) -> np.ndarray:
        return self.ours.predict_many(self.rows)

    def ref_predict(self) -> list[int]:
        predict = self.ref.predict
        with quiet():
            return [predict(job) for job in self.ref_jobs]

    def observations(self) -> list[tuple[np.ndarray, np.ndarray, list[int], list[float]]]:
        """One observation batch per arm; in batch ``a`` job ``i`` ran arm ``(a + i) % arms``.

        The observe cases cycle through them, so every arm's reward history
        grows alike on both sides (learned precisions refit on the history).
        """
        values = arm_values(self.arms)
        n = len(self.jobs)
        out = []
        for a in range(self.arms):
            bs = values[(a + np.arange(n)) % self.arms]
            cost = self.costs(bs, self.k + a)
            out.append((bs, cost, bs[: self.n_ref].tolist(), cost[: self.n_ref].tolist()))
        return out

    def observe_every_arm(self) -> None:
        """One observation of every arm of every job, on both sides (one batch per arm)."""
        ours, ref = self.observe_loops()
        for _ in range(self.arms):
            ours()
            if ref is not None:
                ref()
        self.k += self.arms

    def observe_loops(self) -> tuple[Callable[[], None], Callable[[], None] | None]:
        """(ours, reference): each call observes the next of :meth:`observations` for every job."""
        batches = self.observations()
        state = {"ours": 0, "ref": 0}

        def ours() -> None:
            bs, cost, _, _ = batches[state["ours"] % len(batches)]
            state["ours"] += 1
            self.ours.observe_many(self.rows, bs, cost)

        def ref() -> None:
            _, _, bs, cost = batches[state["ref"] % len(batches)]
            state["ref"] += 1
            observe = self.ref.observe
            with quiet():
                for job, b, c in zip(self.ref_jobs, bs, cost):
                    observe(job, b, c)

        return ours, (ref if self.ref is not None else None)


def gts_fleet(n: int, arms: int = 8, n_ref: int = 0, learn: bool = True, policy: Any = None) -> PairedFleet:
    """GTS (learned or known reward precision), warmed into Thompson sampling: one
    exploration round per arm, one more observation of every arm (so that every
    learned precision is finite and the posteriors still overlap, the costlier
    state for a decision), then as many sampled rounds as arms."""
    default = default_bs(arms)
    jobs = make_jobs(n, "gts", default)
    values = arm_values(arms)
    kwargs = dict(learn_reward_precision=learn, reward_precision=0.0 if learn else KNOWN_REWARD_PRECISION, verbose=False)
    ours = GTSBatchSizeOptimizer(**kwargs)
    rows = ours.register_jobs(jobs, np.tile(values, (n, 1)))
    ref = None
    if policy is not None and n_ref:
        ref = policy.GTSBatchSizeOptimizer(**kwargs)
        for job in jobs[:n_ref]:
            ref.register_job(job, values.tolist())
    fleet = PairedFleet(ours, rows, ref, jobs, n_ref, arms, CostModel(n, 64, default))
    for _ in range(arms):
        fleet.round()
    fleet.observe_every_arm()
    for _ in range(arms):
        fleet.round()
    return fleet


class _PerJobReference:
    """The reference with one optimizer per job (each with the job's own seed), behind the
    ``predict(job)`` / ``observe(job, ...)`` of one optimizer (a dict lookup per call)."""

    def __init__(self, optimizers: dict[Any, Any]) -> None:
        self.optimizers = optimizers

    def predict(self, job: Any) -> int:
        return self.optimizers[job].predict(job)

    def observe(self, job: Any, *args: Any) -> None:
        self.optimizers[job].observe(job, *args)


class _RaggedCostModel(CostModel):
    """:class:`CostModel` with a bowl around each job's own default batch size."""

    def __init__(self, n_jobs: int, rounds: int, defaults: np.ndarray, seed: int = 7) -> None:
        super().__init__(n_jobs, rounds, 128, seed)
        self.defaults = np.asarray(defaults, np.float64)

    def __call__(self, batch_sizes: np.ndarray, k: int, n: int | None = None) -> np.ndarray:
        n = len(batch_sizes) if n is None else n
        shape = 1.0 + 0.25 * np.log2(np.asarray(batch_sizes, np.float64) / self.defaults[:n]) ** 2
        return 1000.0 * self.job_scale[:n] * shape * self.noise[k % self.noise.shape[0], :n]


def random_gts_fleet(n: int, arms: int = 8, n_ref: int = 0, policy: Any = None, seed: int = 3) -> PairedFleet:
    """GTS with learned precision where every job has its own stream (seed), its own
    number of batch sizes (uniform in ``arms // 2 .. arms + arms // 2``, mean ``arms``),
    its own cost bowl and scale: the jobs draw different numbers and their posteriors
    differ, so no branch of a decision repeats from job to job. Warmed up as
    :func:`gts_fleet`: exploration, a second observation of every arm, then ``arms``
    sampled rounds. The reference holds one optimizer per job (seeded alike)."""
    rng = np.random.default_rng(seed)
    lo, hi = max(1, arms // 2), arms + arms // 2
    counts = rng.integers(lo, hi + 1, n)
    per_job = [arm_values(int(c)) for c in counts]
    defaults = np.array([v[rng.integers(0, len(v))] for v in per_job], np.int64)
    seeds = rng.integers(0, 2**63, n).astype(np.uint64)
    jobs = [Job("imagenet", f"rgts-{i}", "adam", 0.7, 100, default_bs=int(d)) for i, d in enumerate(defaults)]
    kwargs = dict(learn_reward_precision=True, reward_precision=0.0, verbose=False)
    ours = GTSBatchSizeOptimizer(**kwargs)
    rows = ours.register_jobs(jobs, [v.tolist() for v in per_job], seeds=seeds)
    ref = None
    if policy is not None and n_ref:
        refs = {}
        for job, values, s in zip(jobs[:n_ref], per_job, seeds[:n_ref].tolist()):
            refs[job] = policy.GTSBatchSizeOptimizer(seed=int(s), **kwargs)
            refs[job].register_job(job, values.tolist())
        ref = _PerJobReference(refs)
    fleet = PairedFleet(ours, rows, ref, jobs, n_ref, arms, _RaggedCostModel(n, 64, defaults, seed + 1))
    fleet.arm_counts = counts
    for _ in range(int(counts.max())):
        fleet.round()
    # a second observation of every arm, arm index by arm index
    for a in range(int(counts.max())):
        idx = np.flatnonzero(counts > a)
        bs = np.array([per_job[i][a] for i in idx.tolist()], np.int64)
        noise = fleet.costs.noise[fleet.k % fleet.costs.noise.shape[0], idx]
        cost = 1000.0 * fleet.costs.job_scale[idx] * (1.0 + 0.25 * np.log2(bs / defaults[idx]) ** 2) * noise
        ours.observe_many(rows[idx], bs, cost)
        if ref is not None:
            with quiet():
                for i, b, c in zip(idx.tolist(), bs.tolist(), cost.tolist()):
                    if i < n_ref:
                        ref.observe(jobs[i], b, c)
        fleet.k += 1
    for _ in range(arms):
        fleet.round()
    return fleet


def pruning_fleet(n: int, arms: int = 8, n_ref: int = 0, window: int = 10, policy: Any = None, ts_rounds: int = 4) -> PairedFleet:
    """PruningGTS (``window_size=window``) driven through both pruning rounds, where every
    batch size reaches the target, into Thompson sampling over all ``arms`` survivors."""
    default = default_bs(arms)
    jobs = make_jobs(n, "pruning", default)
    values = arm_values(arms)
    ours = PruningGTSBatchSizeOptimizer(window_size=window, verbose=False)
    rows = ours.register_jobs(jobs, np.tile(values, (n, 1)))
    ref = None
    if policy is not None and n_ref:
        ref = policy.PruningGTSBatchSizeOptimizer(window_size=window, verbose=False)
        with quiet():
            for job in jobs[:n_ref]:
                ref.register_job(job, values.tolist())
    fleet = PairedFleet(ours, rows, ref, jobs, n_ref, arms, CostModel(n, 64, default))
    for _ in range(2 * arms):  # two pruning rounds over batch sizes that all reach the target
        fleet.round(converged=True)
    for _ in range(ts_rounds):  # the first predict builds the bandit over the survivors
        fleet.round(converged=True)
    if ours.pruning_state(jobs[0]).stage != "thompson":
        raise AssertionError("the pruning fleet did not reach Thompson sampling")
    return fleet


class PowerFleet:
    """``n`` jobs x ``arms`` batch sizes, each profiled at every power limit, on both sides
    (the reference holds the first ``n_ref`` jobs)."""

    def __init__(self, n: int, arms: int = 8, n_ref: int = 0, policy: Any = None) -> None:
        values = arm_values(arms)
        self.jobs = make_jobs(n, "power", default_bs(arms))
        self.n_ref = n_ref if policy is not None else 0
        self.ref_jobs = self.jobs[: self.n_ref]
        self.ours = JITPowerLimitOptimizer(verbose=False)
        self.ref = policy.JITPowerLimitOptimizer(verbose=False) if self.n_ref else None
        self.rows = self.ours.rows(self.jobs)
        rng = np.random.default_rng(5)
        for bs in values.tolist():
            for pl in POWER_LIMITS:
                cost = rng.gamma(4.0, 250.0, n)
                self.ours.observe_many(self.rows, np.full(n, bs), np.full(n, pl), cost)
                if self.ref is not None:
                    for job, c in zip(self.ref_jobs, cost[: self.n_ref].tolist()):
                        self.ref.observe(job, bs, pl, c)
        self.bs = values[rng.integers(0, arms, n)]
        self.pl = np.array(POWER_LIMITS, np.int64)[rng.integers(0, len(POWER_LIMITS), n)]
        self.cost = rng.gamma(4.0, 250.0, n)
        m = self.n_ref
        self.bs_list, self.pl_list, self.cost_list = self.bs[:m].tolist(), self.pl[:m].tolist(), self.cost[:m].tolist()
        if self.ref is not None and self.ours.predict_many(self.rows, self.bs)[:m].tolist() != self.ref_predict():
            raise AssertionError("banditfleet and the reference chose different power limits")

    def ours_predict_rows(self) -> np.ndarray:
        return self.ours.predict_many(self.rows, self.bs)

    def ours_predict_keys(self) -> np.ndarray:
        return self.ours.predict_many(self.jobs, self.bs)

    def ref_predict(self) -> list[int | None]:
        predict = self.ref.predict
        return [predict(job, b) for job, b in zip(self.ref_jobs, self.bs_list)]

    def ours_observe_rows(self) -> None:
        self.ours.observe_many(self.rows, self.bs, self.pl, self.cost)

    def ours_observe_keys(self) -> None:
        self.ours.observe_many(self.jobs, self.bs, self.pl, self.cost)

    def ref_observe(self) -> None:
        observe = self.ref.observe
        for job, b, p, c in zip(self.ref_jobs, self.bs_list, self.pl_list, self.cost_list):
            observe(job, b, p, c)

"""Replay whole fleets of recurring-job groups, for one or several settings at once.

A :class:`Fleet` is a set of job groups (each a list of timed submissions of
one workload), read from a Zeus-format groups table or generated
(:mod:`banditfleet.replay.synthetic`). :func:`replay_fleet` replays every
(setting, group) pair as one unit of the engine: its own rows in the
optimizers (one ``PruningGTSBatchSizeOptimizer(concurrency=True)`` and one
``JITPowerLimitOptimizer`` per distinct optimizer setting) and its own
simulator stream. As the Zeus artifacts' ``run_alibaba.py`` does, a group's
optimizer and simulator are seeded with the Adler-32 checksum of its group
id, so each group's history equals ``Simulator.simulate_one_alibaba_group``
of the reference with those seeds.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from banditfleet.errors import TraceError
from banditfleet.job import Job
from banditfleet.kernels.replay import ERR_NONE, MODE_GROUP
from banditfleet.power import JITPowerLimitOptimizer
from banditfleet.gts import GTSBatchSizeOptimizer
from banditfleet.pruning import PruningGTSBatchSizeOptimizer
from banditfleet.replay.engine import Partition, UnitsResult, make_units, run_units
from banditfleet.replay.policies import (
    FIXED_POLICIES,
    FixedBatchSizeOptimizer,
    FixedPowerLimitOptimizer,
    GridSearchBatchSizeOptimizer,
    OracleTable,
    check_policy,
    oracle_table,
)
from banditfleet.replay.simulator import HistoryEntry, check_knobs
from banditfleet.replay.traces import Trace, Workloads, build_workloads, jobs_for, read_groups

__all__ = ["Setting", "Fleet", "FleetResult", "group_seed", "group_seeds", "replay_fleet", "sweep"]

logger = logging.getLogger("banditfleet")


def group_seed(group_id: str, replicate: int = 0) -> int:
    """Seed of a group's optimizer and simulator: ``zlib.adler32`` of its id, as ``run_alibaba.py``.

    Replicate ``r > 0`` (another seed of a sweep) hashes ``"<group id>/<r>"`` instead.
    """
    text = group_id if replicate == 0 else f"{group_id}/{replicate}"
    return zlib.adler32(text.encode("utf-8"))


def group_seeds(group_ids: Sequence[str], replicate: int = 0) -> np.ndarray:
    """:func:`group_seed` of every id, as uint64, computed over all ids at once.

    Adler-32 of a byte string ``d`` of length ``n`` is ``(B << 16) | A`` with
    ``A = 1 + sum(d) mod 65521`` and ``B = n + sum((n - k) d[k]) mod 65521``;
    the sums are taken per id with ``np.bincount`` (exact: every partial sum
    stays far below 2**53 for ids shorter than 100,000 bytes). Ids that are not
    ASCII, or very long, go through ``zlib.adler32`` one by one.
    """
    texts = list(group_ids) if replicate == 0 else [f"{g}/{replicate}" for g in group_ids]
    n = len(texts)
    lens = np.fromiter(map(len, texts), np.int64, n)
    joined = "".join(texts)
    if not joined.isascii() or (n and int(lens.max()) >= 100_000):
        return np.fromiter((zlib.adler32(t.encode("utf-8")) for t in texts), np.uint64, n)
    data = np.frombuffer(joined.encode("ascii"), np.uint8).astype(np.float64)
    seg = np.repeat(np.arange(n, dtype=np.int64), lens)
    ends = np.cumsum(lens)
    weight = (ends[seg] - np.arange(data.shape[0], dtype=np.int64)).astype(np.float64)  # n - k
    a = (1 + np.bincount(seg, weights=data, minlength=n).astype(np.int64)) % 65521
    b = (lens + np.bincount(seg, weights=data * weight, minlength=n).astype(np.int64)) % 65521
    return ((b << 16) | a).astype(np.uint64)


@dataclass(frozen=True)
class Setting:
    """One replay setting: the policy, the knobs, the optimizer's parameters and a seed replicate.

    ``policy`` is one of :data:`~banditfleet.replay.policies.POLICIES`
    (``pruning-gts``, Zeus's, by default); ``reward_precision`` is the known
    precision of ``gts-known`` (0 for every other policy). ``window_size``
    applies to ``pruning-gts`` and ``gts``, the priors to the GTS policies;
    ``default`` and ``oracle`` ignore ``beta_knob`` (they never stop early).
    ``seed=0`` seeds every group as the Zeus artifacts do (:func:`group_seed`).
    """

    eta_knob: float = 0.5
    beta_knob: float = 2.0
    window_size: int = 0
    prior_mean: float = 0.0
    prior_precision: float = 0.0
    seed: int = 0
    policy: str = "pruning-gts"
    reward_precision: float = 0.0

    def __post_init__(self) -> None:
        check_knobs(self.beta_knob, self.eta_knob)
        check_policy(self.policy, self.reward_precision)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise TraceError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def label(self) -> str:
        """``policy=...,`` (left out for ``pruning-gts``), the knobs, the optimizer's non-default
        parameters, the seed: e.g. ``eta=0.5,beta=2,seed=0``, ``policy=gts,eta=0.5,beta=2,seed=1``."""
        parts = [] if self.policy == "pruning-gts" else [f"policy={self.policy}"]
        if self.policy == "gts-known":
            parts.append(f"precision={self.reward_precision:g}")
        parts += [f"eta={self.eta_knob:g}", f"beta={self.beta_knob:g}"]
        if self.window_size:
            parts.append(f"window={self.window_size}")
        if self.prior_mean or self.prior_precision:
            parts.append(f"prior={self.prior_mean:g}/{self.prior_precision:g}")
        parts.append(f"seed={self.seed}")
        return ",".join(parts)

    def optimizer_key(self) -> tuple[str, float, int, float, float]:
        """Settings with equal keys share one pair of optimizers in a replay."""
        return (self.policy, float(self.reward_precision), int(self.window_size), float(self.prior_mean), float(self.prior_precision))


def sweep(
    eta_knobs: Sequence[float] = (0.5,),
    beta_knobs: Sequence[float] = (2.0,),
    seeds: Sequence[int] = (0,),
    policies: Sequence[str] = ("pruning-gts",),
    **optimizer: Any,
) -> list[Setting]:
    """Every combination of the policies, knobs and seeds (policy outermost; optimizer parameters fixed).

    ``reward_precision`` in ``optimizer`` goes to the ``gts-known`` settings only.
    """
    rp = optimizer.pop("reward_precision", 0.0)
    return [
        Setting(eta, beta, seed=seed, policy=p, reward_precision=rp if p == "gts-known" else 0.0, **optimizer)
        for p in policies
        for eta in eta_knobs
        for beta in beta_knobs
        for seed in seeds
    ]


@dataclass
class Fleet:
    """Job groups over workloads: submissions in CSR arrays, one workload per group."""

    workloads: Workloads
    group_ids: list[str]
    group_wl: np.ndarray  # int64 per group
    sub_start: np.ndarray  # int64 per group
    sub_count: np.ndarray  # int64 per group
    start_time: np.ndarray  # float64 per submission
    end_time: np.ndarray
    runtime_ratio: np.ndarray
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.group_ids)

    @property
    def n_submissions(self) -> int:
        return int(self.sub_count.sum())

    def dataset_of(self, g: int) -> str:
        return self.workloads.jobs[int(self.group_wl[g])].dataset

    def group_frame(self, g: int) -> pd.DataFrame:
        """Group ``g`` as the reference's ``group_df``."""
        a, n = int(self.sub_start[g]), int(self.sub_count[g])
        return pd.DataFrame(
            {
                "group": [self.group_ids[g]] * n,
                "start_time": self.start_time[a : a + n],
                "end_time": self.end_time[a : a + n],
                "dataset": [self.dataset_of(g)] * n,
                "runtime_ratio": self.runtime_ratio[a : a + n],
            }
        )

    def groups_frame(self) -> pd.DataFrame:
        """All groups in the Zeus groups format (one row per submission)."""
        wl = np.repeat(self.group_wl, self.sub_count)
        names = np.array([j.dataset for j in self.workloads.jobs], dtype=object)
        return pd.DataFrame(
            {
                "group": np.repeat(np.array(self.group_ids, dtype=object), self.sub_count),
                "start_time": self.start_time,
                "end_time": self.end_time,
                "dataset": names[wl] if len(wl) else np.zeros(0, object),
                "runtime_ratio": self.runtime_ratio,
            }
        )

    def subset(self, groups: Sequence[int] | np.ndarray) -> Fleet:
        """The fleet of the given groups only (same workloads)."""
        idx = np.asarray(groups, np.int64)
        counts = self.sub_count[idx]
        if (
            idx.size
            and idx[-1] - idx[0] == idx.size - 1
            and (np.diff(idx) == 1).all()
            and (self.sub_start[idx[1:]] == self.sub_start[idx[:-1]] + counts[:-1]).all()
        ):
            # a contiguous range of groups: its submissions are one slice
            a, b = int(idx[0]), int(idx[-1]) + 1
            lo, hi = int(self.sub_start[a]), int(self.sub_start[b - 1] + self.sub_count[b - 1])
            return Fleet(
                self.workloads, self.group_ids[a:b], self.group_wl[a:b].copy(), self.sub_start[a:b] - lo, counts.copy(),
                self.start_time[lo:hi].copy(), self.end_time[lo:hi].copy(), self.runtime_ratio[lo:hi].copy(), self.source, dict(self.meta),
            )
        take = np.concatenate([np.arange(self.sub_start[g], self.sub_start[g] + self.sub_count[g]) for g in idx.tolist()]) if idx.size else np.zeros(0, np.int64)
        starts = np.zeros(idx.size, np.int64)
        if idx.size:
            np.cumsum(counts[:-1], out=starts[1:])
        return Fleet(
            self.workloads, [self.group_ids[g] for g in idx.tolist()], self.group_wl[idx].copy(), starts, counts.copy(),
            self.start_time[take], self.end_time[take], self.runtime_ratio[take], self.source, dict(self.meta),
        )

    @classmethod
    def from_frames(cls, trace: Trace, groups: str | Any, jobs: Mapping[str, Job] | None = None, source: str = "") -> Fleet:
        """Groups from a Zeus groups table over ``trace``; job specs from ``jobs`` or the Zeus defaults.

        Raises :class:`TraceError` for unknown datasets or job specs the trace cannot run.
        """
        known = set(trace.datasets()) if jobs is None else set(jobs)
        df = read_groups(groups, sorted(known))
        datasets = list(pd.unique(df.dataset))
        specs = jobs_for(trace, datasets, jobs)
        workloads = build_workloads([(trace, specs[d]) for d in datasets])
        wl_of = {d: i for i, d in enumerate(datasets)}
        codes, uniques = pd.factorize(df.group, sort=False)
        counts = np.bincount(codes, minlength=len(uniques)).astype(np.int64)
        starts = np.zeros(len(uniques), np.int64)
        if len(uniques):
            np.cumsum(counts[:-1], out=starts[1:])
        first = df.groupby(codes, sort=True).dataset.first()
        return cls(
            workloads=workloads,
            group_ids=[str(g) for g in uniques],
            group_wl=np.array([wl_of[d] for d in first.tolist()], np.int64),
            sub_start=starts,
            sub_count=counts,
            start_time=df.start_time.to_numpy(np.float64),
            end_time=df.end_time.to_numpy(np.float64),
            runtime_ratio=df.runtime_ratio.to_numpy(np.float64),
            source=source,
        )


@dataclass
class FleetResult:
    """The histories of a fleet replay, per (setting, group)."""

    fleet: Fleet
    settings: list[Setting]
    result: UnitsResult

    def unit(self, setting: int, group: int) -> int:
        return setting * len(self.fleet) + group

    def history(self, setting: int, group: int) -> list[HistoryEntry]:
        """One group's history under one setting, as the reference returns it."""
        r = self.result
        u = self.unit(setting, group)
        a, b = int(r.offsets[u]), int(r.offsets[u + 1])
        return [
            HistoryEntry(bs, pl, e, re, t)
            for bs, pl, e, re, t in zip(r.bs[a:b].tolist(), r.pl[a:b].tolist(), r.energy[a:b].tolist(), r.reached[a:b].tolist(), r.time[a:b].tolist())
        ]

    @property
    def n_runs(self) -> int:
        return int(self.result.unit.shape[0])

    def errors(self) -> pd.DataFrame:
        """Units that stopped on an error: setting, group, error code."""
        r = self.result
        bad = np.flatnonzero(r.error != ERR_NONE)
        g = len(self.fleet)
        return pd.DataFrame(
            {"setting": [self.settings[u // g].label for u in bad.tolist()], "group": [self.fleet.group_ids[u % g] for u in bad.tolist()], "error": r.error[bad]}
        )

    # ------------------------------------------------------------ oracle, regret
    def oracle_tables(self) -> list[OracleTable]:
        """Per setting: the oracle of every workload at the setting's ``eta_knob``
        (:func:`~banditfleet.replay.policies.oracle_table`)."""
        cache = self.__dict__.setdefault("_oracle_cache", {})
        out = []
        for s in self.settings:
            if s.eta_knob not in cache:
                cache[s.eta_knob] = oracle_table(self.fleet.workloads.tables, s.eta_knob)
            out.append(cache[s.eta_knob])
        return out

    def oracle(self) -> pd.DataFrame:
        """One row per (setting, workload): the oracle's batch size and power limit (W) and the
        expected energy (J), time (s) and energy-time cost of one submission of runtime ratio 1."""
        names = [j.dataset for j in self.fleet.workloads.jobs]
        rows = []
        for s, o in zip(self.settings, self.oracle_tables()):
            for w, name in enumerate(names):
                rows.append({"setting": s.label, "policy": s.policy, "eta_knob": s.eta_knob, "dataset": name,
                             "batch_size": int(o.bs[w]), "power_limit": int(o.pl[w]), "energy_J": float(o.energy[w]),
                             "time_s": float(o.time[w]), "cost": float(o.cost[w])})
        return pd.DataFrame(rows)

    def submission_oracle_costs(self) -> np.ndarray:
        """float64 (settings, submissions): the oracle's expected cost of each submission of the
        fleet (in the fleet's submission order), its runtime ratio times the workload's oracle cost."""
        f = self.fleet
        wl = np.repeat(f.group_wl, f.sub_count)
        return np.stack([o.cost[wl] * f.runtime_ratio for o in self.oracle_tables()]) if self.settings else np.zeros((0, f.n_submissions))

    def submission_costs(self) -> np.ndarray:
        """float64 (settings, submissions): the replayed energy-time cost of each submission, all its
        runs (retries included) summed; NaN for the submissions of (setting, group) pairs that failed."""
        f = self.fleet
        r = self.result
        G, S, N = len(f), len(self.settings), f.n_submissions
        group = r.unit % G if G else r.unit
        setting = r.unit // G if G else r.unit
        eta = np.array([s.eta_knob for s in self.settings], np.float64)[setting]
        cost = eta * r.energy + (1.0 - eta) * f.workloads.tables.wl_max_power[f.group_wl[group]] * r.time
        key = setting * N + f.sub_start[group] + r.sub
        out = np.bincount(key, weights=cost, minlength=S * N).reshape(S, N)
        failed = (r.error != ERR_NONE).reshape(S, G)
        out[np.repeat(failed, f.sub_count, axis=1)] = np.nan
        return out

    def submission_regret(self) -> np.ndarray:
        """float64 (settings, submissions): each submission's cost minus the oracle's
        (energy-time cost; NaN where the pair failed). ``[:, fleet.sub_start[g] + k]`` is the
        k-th recurrence of group ``g``."""
        return self.submission_costs() - self.submission_oracle_costs()

    def group_costs(self) -> np.ndarray:
        """float64 (settings, groups): each group's replayed energy-time cost (NaN: failed)."""
        return self._per_group(self.submission_costs())

    def oracle_costs(self) -> np.ndarray:
        """float64 (settings, groups): each group's oracle cost, the sum of its runtime ratios
        times its workload's oracle cost per submission (never NaN)."""
        return self._per_group(self.submission_oracle_costs())

    def regret(self) -> np.ndarray:
        """float64 (settings, groups): group cost minus oracle cost (energy-time cost; NaN: failed)."""
        return self.group_costs() - self.oracle_costs()

    def _per_group(self, per_sub: np.ndarray) -> np.ndarray:
        f = self.fleet
        S, G = per_sub.shape[0], len(f)
        if not f.n_submissions:
            return np.zeros((S, G))
        starts = np.minimum(f.sub_start, max(f.n_submissions - 1, 0))
        out = np.add.reduceat(per_sub, starts, axis=1) if G else np.zeros((S, 0))
        out[:, f.sub_count == 0] = 0.0
        return out

    def history_frame(self) -> pd.DataFrame:
        """One row per simulated run, the columns of :data:`~banditfleet.replay.outputs.HISTORY_COLUMNS`.

        setting, group and dataset are categoricals; energy in J, time in s,
        cost (``eta*energy + (1-eta)*max_power*time``) in J, power limit in W.
        """
        from banditfleet.replay.outputs import history_table

        return history_table(self).to_pandas()


# Pruning-GTS partitions replay in the compiled driver (engine.run_units(compiled=True));
# False replays them through the Python driver (the tests compare the two).
_COMPILED_DRIVER = True

#: Fewest groups per thread: below this, a replay runs on fewer threads.
MIN_GROUPS_PER_THREAD = 256


def replay_fleet(
    fleet: Fleet,
    settings: Sequence[Setting] | None = None,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
) -> FleetResult:
    """Replay every group of ``fleet`` under every setting; see the module docstring.

    Args:
        fleet: The groups to replay.
        settings: Settings to replay every group under (default: one default setting).
        progress: Called with (units done, units) as units end (from worker threads too).
        threads: Threads to replay on (default: ``numba.get_num_threads()``, every
            local core unless ``NUMBA_NUM_THREADS`` or ``numba.set_num_threads``
            says otherwise). The groups are cut into one contiguous shard per
            thread; each shard has its own optimizers, and a group's history
            depends only on its own rows and stream, so the result is the same
            for any number of threads.
    """
    settings = list(settings) if settings is not None else [Setting()]
    if not settings:
        raise TraceError("no setting to replay")
    n_threads = _thread_count(threads, len(fleet))
    if n_threads > 1:
        return _replay_threaded(fleet, settings, progress, n_threads)
    t = fleet.workloads.tables
    G = len(fleet)
    S = len(settings)
    n = S * G
    wl = np.tile(fleet.group_wl, S)
    eta = np.repeat([s.eta_knob for s in settings], G).astype(np.float64)
    beta = np.repeat([s.beta_knob for s in settings], G).astype(np.float64)
    n_rec = np.tile(fleet.sub_count, S)
    sub_start = np.tile(fleet.sub_start, S)
    units = make_units(
        t, wl, np.full(n, MODE_GROUP, np.int64), eta, beta, n_rec,
        sub_start, fleet.start_time, fleet.end_time, fleet.runtime_ratio,
    )
    seeds = np.zeros(n, np.uint64)
    for si, s in enumerate(settings):
        seeds[si * G : (si + 1) * G] = group_seeds(fleet.group_ids, s.seed)
    defaults = t.arm_bs[t.wl_default_arm[wl]]
    arm_lists = [np.asarray(a, np.int64) for a in fleet.workloads.arms]
    first_arm = t.wl_default_arm[wl].astype(np.int64)
    fixed_pl = np.full(n, -1, np.int64)
    oracles: dict[float, OracleTable] = {}
    for si, s in enumerate(settings):
        if s.policy not in FIXED_POLICIES:
            continue
        part = slice(si * G, (si + 1) * G)
        beta[part] = np.inf  # the baseline and the oracle never stop early
        if s.policy == "oracle":
            if s.eta_knob not in oracles:
                oracles[s.eta_knob] = oracle_table(t, s.eta_knob)
            o = oracles[s.eta_knob]
            # a workload without a feasible cell keeps its default (its runs then fail as the trace says)
            first_arm[part] = np.where(o.arm[fleet.group_wl] >= 0, o.arm[fleet.group_wl], first_arm[part])
        fixed_pl[part] = t.cell_pl[t.arm_cell_start[first_arm[part]]]
        if s.policy == "oracle":
            o = oracles[s.eta_knob]
            fixed_pl[part] = np.where(o.arm[fleet.group_wl] >= 0, o.pl[fleet.group_wl], fixed_pl[part])
    units = units._replace(beta=beta)
    partitions: list[Partition] = []
    by_key: dict[tuple, list[int]] = {}
    for si, s in enumerate(settings):
        by_key.setdefault(s.optimizer_key(), []).append(si)
    for (policy, reward_precision, window, prior_mean, prior_precision), members in by_key.items():
        us = np.concatenate([np.arange(si * G, (si + 1) * G, dtype=np.int64) for si in members])
        if policy in FIXED_POLICIES:
            bso: Any = FixedBatchSizeOptimizer()
            plo: Any = FixedPowerLimitOptimizer()
            bso_rows = bso.register_jobs(us.tolist(), t.arm_bs[first_arm[us]])
            plo_rows = plo.register_jobs(us.tolist(), fixed_pl[us])
            partitions.append(Partition(bso, plo, us, bso_rows, plo_rows))
            continue
        if policy == "pruning-gts":
            bso = PruningGTSBatchSizeOptimizer(
                prior_mean=prior_mean, prior_precision=prior_precision, window_size=window, concurrency=True, verbose=False
            )
        elif policy in ("gts", "gts-known"):
            bso = GTSBatchSizeOptimizer(
                learn_reward_precision=policy == "gts", reward_precision=reward_precision, prior_mean=prior_mean,
                prior_precision=prior_precision, window_size=window if policy == "gts" else 0, verbose=False,
            )
        else:
            bso = GridSearchBatchSizeOptimizer()
        plo = JITPowerLimitOptimizer(verbose=False)
        # One registration per workload: its units share one batch-size list (a 2-D array).
        for w in range(len(arm_lists)):
            idx = np.flatnonzero(wl[us] == w)
            if idx.size:
                mine = us[idx]
                arms2d = np.tile(arm_lists[w], (idx.size, 1))
                if policy in ("gts", "gts-known"):
                    bso.register_jobs(mine.tolist(), arms2d, seeds=seeds[mine])
                else:
                    bso.register_jobs(mine.tolist(), arms2d, default_bs=defaults[mine], seeds=seeds[mine])
        # The compiled driver answers a pruning partition's power limits from the trace (what
        # its JIT optimizer would answer): that optimizer needs no rows then.
        plo_rows = None if policy == "pruning-gts" and _COMPILED_DRIVER else plo.rows(us)
        partitions.append(Partition(bso, plo, us, bso.rows(us), plo_rows))
    logger.info("replaying %d groups x %d settings (%d submissions each pass)", G, S, fleet.n_submissions)
    result = run_units(t, units, seeds, partitions, progress=progress, first_arm=first_arm, compiled=_COMPILED_DRIVER)
    return FleetResult(fleet, settings, result)


def _thread_count(threads: int | None, n_groups: int) -> int:
    if threads is None:
        import numba

        threads = numba.get_num_threads()
    elif isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise TraceError(f"threads must be a positive integer, got {threads!r}")
    return int(max(1, min(int(threads), n_groups // MIN_GROUPS_PER_THREAD)))


def _replay_threaded(fleet: Fleet, settings: list[Setting], progress: Callable[[int, int], None] | None, n_threads: int) -> FleetResult:
    """One contiguous shard of groups per thread (the kernels release the GIL), merged in unit order."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from banditfleet.replay.engine import merge_shards

    G = len(fleet)
    edges = np.linspace(0, G, n_threads + 1).round().astype(np.int64)
    bounds = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    lock = threading.Lock()
    done = [0] * len(bounds)
    total = G * len(settings)

    def shard_progress(i: int) -> Callable[[int, int], None] | None:
        if progress is None:
            return None

        def report(d: int, _n: int) -> None:
            with lock:
                done[i] = d
                progress(sum(done), total)

        return report

    def run(i: int) -> UnitsResult:
        a, b = bounds[i]
        return replay_fleet(fleet.subset(np.arange(a, b, dtype=np.int64)), settings, shard_progress(i), threads=1).result

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(bounds), thread_name_prefix="banditfleet-replay") as pool:
        parts = list(pool.map(run, range(len(bounds))))
    result = merge_shards(parts, bounds, G, len(settings))
    result.seconds = time.perf_counter() - t0
    logger.info("replayed %d groups x %d settings on %d threads in %.2f s", G, len(settings), len(bounds), result.seconds)
    return FleetResult(fleet, settings, result)

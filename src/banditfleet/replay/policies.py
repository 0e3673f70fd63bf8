"""The replay's policies beyond Zeus's own: grid search, fixed configurations and the oracle.

A *policy* names the pair of optimizers a replay unit learns with
(:data:`POLICIES`):

* ``pruning-gts``: :class:`~banditfleet.PruningGTSBatchSizeOptimizer` with
  ``concurrency=True`` and :class:`~banditfleet.JITPowerLimitOptimizer`, as
  the Zeus artifacts' ``run_alibaba.py`` (the default);
* ``gts``: :class:`~banditfleet.GTSBatchSizeOptimizer` learning each arm's
  reward precision, with JIT power limits;
* ``gts-known``: the same with a known reward precision (``Setting.reward_precision``);
* ``grid-search``: :class:`GridSearchBatchSizeOptimizer` (every batch size in
  turn, then the best), with JIT power limits;
* ``default``: every run at the default batch size and its highest power
  limit, without early stopping (the Zeus paper's baseline, replayed);
* ``oracle``: every run at the group's best fixed (batch size, power limit) in
  hindsight (:func:`oracle_table`), without early stopping.

The oracle is defined on the trace's path distribution, not on one replay's
draws: a run of cell ``c`` (a batch size at a power limit) draws one of the
cell's ``n`` training paths uniformly; a path that reaches the target runs
``target_epoch`` epochs, one that does not runs ``max_epochs`` and is retried.
With ``k`` of the ``n`` paths reaching the target, the expected energy of one
submission of runtime ratio 1 is ``sum(epochs_i * energy_per_epoch_i) / k``
over all ``n`` paths (the number of tries is geometric with mean ``n / k``),
likewise its time, and its cost ``eta * energy + (1 - eta) * max_power *
time``. The oracle's cell minimizes that cost among the cells with ``k > 0``
(ties: the smaller batch size, then the higher power limit); its cost for a
group is that minimum times the sum of the group's runtime ratios.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from banditfleet.errors import ConfigurationError, InvalidArmsError, InvalidObservationError, UnknownBatchSizeError, UnknownJobError
from banditfleet.kernels.replay import ReplayTables
from banditfleet.rows import Rows, RowSpace

__all__ = [
    "POLICIES",
    "LEARNING_POLICIES",
    "FIXED_POLICIES",
    "GridSearchBatchSizeOptimizer",
    "OracleTable",
    "oracle_table",
    "check_policy",
]

#: Every policy name a replay setting takes.
POLICIES = ("pruning-gts", "gts", "gts-known", "grid-search", "default", "oracle")
#: Policies that learn (JIT power limits, the setting's early stopping).
LEARNING_POLICIES = ("pruning-gts", "gts", "gts-known", "grid-search")
#: Policies that run one fixed configuration (no profiling, no early stopping).
FIXED_POLICIES = ("default", "oracle")


def check_policy(policy: Any, reward_precision: Any = 0.0) -> tuple[str, float]:
    """``policy`` one of :data:`POLICIES`; ``reward_precision`` > 0 and finite for ``gts-known``, else 0."""
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ConfigurationError(f"policy must be one of {list(POLICIES)}, got {policy!r}")
    try:
        rp = float(reward_precision)
    except (TypeError, ValueError):
        raise ConfigurationError(f"reward_precision must be a number, got {reward_precision!r}") from None
    if isinstance(reward_precision, bool) or math.isnan(rp) or rp < 0 or math.isinf(rp):
        raise ConfigurationError(f"reward_precision must be a finite number >= 0, got {reward_precision!r}")
    if policy == "gts-known" and rp <= 0:
        raise ConfigurationError(f"policy 'gts-known' needs a reward_precision > 0 (1 / variance of -cost), got {reward_precision!r}")
    if policy != "gts-known" and rp != 0:
        raise ConfigurationError(f"reward_precision applies only to policy 'gts-known' (got {rp:g} with {policy!r})")
    return policy, rp


# --------------------------------------------------------------------- oracle
class OracleTable:
    """Per workload: the oracle's cell and the expected energy (J), time (s) and cost of one
    submission of runtime ratio 1 at every cell (``inf`` where no path reaches the target)."""

    def __init__(self, arm: np.ndarray, pl: np.ndarray, bs: np.ndarray, energy: np.ndarray, time: np.ndarray, cost: np.ndarray) -> None:
        self.arm = arm  # int64 per workload: global arm of the best cell (-1: none feasible)
        self.pl = pl  # int64 per workload: its power limit (W)
        self.bs = bs  # int64 per workload: its batch size
        self.energy = energy  # float64 per workload: expected energy of one submission (J)
        self.time = time  # float64 per workload: expected time of one submission (s)
        self.cost = cost  # float64 per workload: expected energy-time cost of one submission


def cell_expectations(t: ReplayTables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: expected energy (J) and time (s) of one submission until it reaches the target
    (``inf`` when no path does), and the number of paths that reach it."""
    n_cells = t.cell_pl.shape[0]
    cell_arm = np.repeat(np.arange(t.arm_bs.shape[0], dtype=np.int64), t.arm_cell_count)
    arm_wl = np.repeat(np.arange(t.wl_arm_start.shape[0], dtype=np.int64), t.wl_arm_count)
    path_cell = np.repeat(np.arange(n_cells, dtype=np.int64), t.cell_path_count)
    max_ep = t.wl_max_epochs[arm_wl[cell_arm[path_cell]]] if path_cell.size else np.zeros(0)
    te = t.path_target_epoch
    reached = ~np.isnan(te) & (te <= max_ep)
    epochs = np.where(reached, te, max_ep)
    e_sum = np.bincount(path_cell, weights=epochs * t.path_epe, minlength=n_cells)
    t_sum = np.bincount(path_cell, weights=epochs * t.path_tpe, minlength=n_cells)
    k = np.bincount(path_cell, weights=reached, minlength=n_cells).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        energy = np.where(k > 0, e_sum / np.maximum(k, 1), np.inf)
        time = np.where(k > 0, t_sum / np.maximum(k, 1), np.inf)
    return energy, time, k


def oracle_table(t: ReplayTables, eta_knob: float) -> OracleTable:
    """The oracle of every workload of ``t`` for one ``eta_knob`` (see the module docstring)."""
    energy, time, k = cell_expectations(t)
    n_wl = t.wl_arm_start.shape[0]
    cell_arm = np.repeat(np.arange(t.arm_bs.shape[0], dtype=np.int64), t.arm_cell_count)
    out = OracleTable(np.full(n_wl, -1, np.int64), np.full(n_wl, -1, np.int64), np.full(n_wl, -1, np.int64),
                      np.full(n_wl, np.inf), np.full(n_wl, np.inf), np.full(n_wl, np.inf))
    for w in range(n_wl):
        a0, na = int(t.wl_arm_start[w]), int(t.wl_arm_count[w])
        if not na:
            continue
        c0 = int(t.arm_cell_start[a0])
        c1 = int(t.arm_cell_start[a0 + na - 1] + t.arm_cell_count[a0 + na - 1])
        if c1 <= c0:
            continue
        mp = t.wl_max_power[w]
        with np.errstate(invalid="ignore"):
            cost = eta_knob * energy[c0:c1] + (1.0 - eta_knob) * mp * time[c0:c1]
        cost = np.where(k[c0:c1] > 0, cost, np.inf)
        # cells are ordered by batch size ascending, then power limit descending:
        # argmin takes the first of equal costs, the documented tie rule.
        j = int(np.argmin(cost))
        if not np.isfinite(cost[j]):
            continue
        c = c0 + j
        out.arm[w] = cell_arm[c]
        out.pl[w] = t.cell_pl[c]
        out.bs[w] = t.arm_bs[cell_arm[c]]
        out.energy[w] = energy[c]
        out.time[w] = time[c]
        out.cost[w] = cost[j]
    return out


# --------------------------------------------------------------- optimizers
class _KeyedRows:
    """Job keys to dense rows with a :class:`RowSpace`, shared by the small optimizers below."""

    def __init__(self, owner: str) -> None:
        self._space = RowSpace(owner)
        self._row: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []

    def _new_rows(self, jobs: Sequence[Hashable]) -> tuple[np.ndarray, list[int]]:
        rows = np.empty(len(jobs), np.int64)
        fresh: list[int] = []
        for i, job in enumerate(jobs):
            r = self._row.get(job)
            if r is None:
                r = len(self._keys)
                self._row[job] = r
                self._keys.append(job)
                fresh.append(i)
            rows[i] = r
        return rows, fresh

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, job: Hashable) -> bool:
        return job in self._row

    def rows(self, jobs: Sequence[Hashable] | Rows) -> Rows:
        """The tagged rows of registered ``jobs`` (:class:`UnknownJobError` names a missing one)."""
        if isinstance(jobs, Rows):
            self._space.check(jobs)
            return jobs
        out = np.empty(len(jobs), np.int64)
        for i, job in enumerate(jobs):
            r = self._row.get(job)
            if r is None:
                raise UnknownJobError(f"job {job!r} is not registered with {self._space.owner}")
            out[i] = r
        return self._space.tag(out)

    def _resolve(self, jobs: Sequence[Hashable] | Rows) -> np.ndarray:
        return self._space.check(jobs) if isinstance(jobs, Rows) else self.rows(jobs)._a


class GridSearchBatchSizeOptimizer(_KeyedRows):
    """Grid search over batch sizes: every batch size in turn, then the best.

    Per job, :meth:`predict` returns the first batch size in the *exploration
    order* (the default batch size first when one is given, then the others
    ascending) that has no observation yet. Once every batch size has one, it
    returns the batch size with the lowest mean cost over its observations
    that reached the target metric (ties: the smaller batch size); when none
    reached it, the lowest mean cost over all observations. With JIT power
    limits this tries every (batch size, power limit) pair once, as the Zeus
    paper's grid-search baseline, then exploits. Costs are energy-time costs.

    Deterministic: there is no random stream, so seeds are accepted and ignored.
    """

    def __init__(self, verbose: bool = False) -> None:
        super().__init__("GridSearchBatchSizeOptimizer")
        self.verbose = bool(verbose)
        self._cap = 0
        self._width = 0
        self._bs = np.zeros((0, 0), np.int64)  # per row: batch sizes ascending, padded with -1
        self._order = np.zeros((0, 0), np.int64)  # per row: exploration order (column indices)
        self._n = np.zeros(0, np.int64)  # per row: batch sizes
        self._obs = np.zeros((0, 0), np.int64)
        self._ok = np.zeros((0, 0), np.int64)
        self._ok_sum = np.zeros((0, 0), np.float64)
        self._all_sum = np.zeros((0, 0), np.float64)

    @property
    def name(self) -> str:
        return "GridSearch BSO"

    def _grow(self, rows: int, width: int) -> None:
        if rows <= self._cap and width <= self._width:
            return
        cap = max(rows, 2 * self._cap, 16)
        wid = max(width, self._width)

        def grown(a: np.ndarray, fill: Any) -> np.ndarray:
            b = np.full((cap, wid), fill, a.dtype)
            b[: a.shape[0], : a.shape[1]] = a
            return b

        self._bs = grown(self._bs, -1)
        self._order = grown(self._order, 0)
        self._obs = grown(self._obs, 0)
        self._ok = grown(self._ok, 0)
        self._ok_sum = grown(self._ok_sum, 0.0)
        self._all_sum = grown(self._all_sum, 0.0)
        n = np.zeros(cap, np.int64)
        n[: self._n.shape[0]] = self._n
        self._n = n
        self._cap, self._width = cap, wid

    def register_job(self, job: Hashable, batch_sizes: Sequence[int], default_bs: int | None = None) -> None:
        """Register one job (again: a no-op when the batch sizes are the same). Without
        ``default_bs``, the job's own ``default_bs`` attribute (a :class:`~banditfleet.Job`'s)
        is explored first, if it has one."""
        if default_bs is None:
            default_bs = getattr(job, "default_bs", None)
        self.register_jobs([job], [list(batch_sizes)], default_bs=None if default_bs is None else [default_bs])

    def register_jobs(self, jobs: Sequence[Hashable], batch_sizes: Sequence[Sequence[int]] | np.ndarray, default_bs: Any = None, seeds: Any = None) -> Rows:
        """Register many jobs; one batch-size list per job (or a 2-D array). ``default_bs``
        (one per job, optional) is explored first; ``seeds`` is ignored (nothing is random)."""
        jobs = list(jobs)
        lists = [sorted(int(b) for b in bs) for bs in batch_sizes]
        if len(lists) != len(jobs):
            raise InvalidArmsError(f"{len(jobs)} jobs but {len(lists)} batch-size lists")
        defaults = [None] * len(jobs) if default_bs is None else [None if d is None else int(d) for d in np.broadcast_to(np.asarray(default_bs, object), (len(jobs),))]
        for job, bs, d in zip(jobs, lists, defaults):
            if not bs or len(set(bs)) != len(bs) or bs[0] <= 0:
                raise InvalidArmsError(f"job {job!r}: batch sizes must be distinct positive integers, got {bs}")
            if d is not None and d not in bs:
                raise InvalidArmsError(f"job {job!r}: default batch size {d} is not among {bs}")
            r = self._row.get(job)
            if r is not None and self._bs[r, : self._n[r]].tolist() != bs:
                raise InvalidArmsError(f"job {job!r} is registered with {self._bs[r, : self._n[r]].tolist()}, not {bs}")
        rows, fresh = self._new_rows(jobs)
        if fresh:
            self._grow(len(self._keys), max(len(lists[i]) for i in fresh))
            for i in fresh:
                r, bs, d = int(rows[i]), lists[i], defaults[i]
                n = len(bs)
                self._bs[r, :n] = bs
                first = bs.index(d) if d is not None else 0
                self._order[r, :n] = [first, *(j for j in range(n) if j != first)]
                self._n[r] = n
        return self._space.tag(rows)

    def _columns(self, rows: np.ndarray, batch_sizes: np.ndarray) -> np.ndarray:
        hit = self._bs[rows] == batch_sizes[:, None]
        col = hit.argmax(axis=1)
        bad = ~hit[np.arange(rows.shape[0]), col]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UnknownBatchSizeError(f"job {self._keys[rows[i]]!r}: unknown batch size {int(batch_sizes[i])}")
        return col

    def predict_many(self, jobs: Sequence[Hashable] | Rows) -> np.ndarray:
        """The batch size each job runs next (int64); see the class docstring."""
        rows = self._resolve(jobs)
        if not rows.size:
            return np.zeros(0, np.int64)
        w = self._width
        valid = np.arange(w)[None, :] < self._n[rows][:, None]
        obs = self._obs[rows]
        order = self._order[rows]
        untried_in_order = (np.take_along_axis(obs, order, axis=1) == 0) & valid
        explore = untried_in_order.any(axis=1)
        col = np.take_along_axis(order, untried_in_order.argmax(axis=1)[:, None], axis=1)[:, 0]
        ok = self._ok[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_ok = np.where((ok > 0) & valid, self._ok_sum[rows] / np.maximum(ok, 1), np.inf)
            mean_all = np.where((obs > 0) & valid, self._all_sum[rows] / np.maximum(obs, 1), np.inf)
        mean = np.where((ok > 0).any(axis=1)[:, None], mean_ok, mean_all)
        col = np.where(explore, col, mean.argmin(axis=1))
        return self._bs[rows, col]

    def observe_many(self, jobs: Sequence[Hashable] | Rows, batch_sizes: Any, costs: Any, converged: Any = None) -> None:
        """Record each (job, batch size, energy-time cost, reached target) in order; validated whole first."""
        rows = self._resolve(jobs)
        bs = np.asarray(batch_sizes, np.int64).reshape(-1)
        cost = np.asarray(costs, np.float64).reshape(-1)
        reached = np.ones(rows.shape[0], bool) if converged is None else np.asarray(converged, bool).reshape(-1)
        if not (bs.shape[0] == cost.shape[0] == reached.shape[0] == rows.shape[0]):
            raise InvalidObservationError(f"observe_many: {rows.shape[0]} jobs, {bs.shape[0]} batch sizes, {cost.shape[0]} costs, {reached.shape[0]} flags")
        bad = ~np.isfinite(cost) | (cost < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidObservationError(f"job {self._keys[rows[i]]!r}: cost must be a finite number >= 0, got {cost[i]!r}")
        col = self._columns(rows, bs)
        np.add.at(self._obs, (rows, col), 1)
        np.add.at(self._all_sum, (rows, col), cost)
        np.add.at(self._ok, (rows[reached], col[reached]), 1)
        np.add.at(self._ok_sum, (rows[reached], col[reached]), cost[reached])

    def predict(self, job: Hashable) -> int:
        """The batch size ``job`` runs next."""
        return int(self.predict_many([job])[0])

    def observe(self, job: Hashable, batch_size: int, cost: float, converged: bool | None = None) -> None:
        """Record one run of ``job`` (cost in energy-time cost units)."""
        self.observe_many([job], [batch_size], [cost], None if converged is None else [bool(converged)])


class FixedBatchSizeOptimizer(_KeyedRows):
    """Always the batch size given at registration (internal: the ``default`` and ``oracle`` policies)."""

    def __init__(self) -> None:
        super().__init__("FixedBatchSizeOptimizer")
        self._fixed = np.zeros(0, np.int64)

    def register_jobs(self, jobs: Sequence[Hashable], batch_sizes: np.ndarray) -> Rows:
        rows, _ = self._new_rows(list(jobs))
        fixed = np.zeros(len(self._keys), np.int64)
        fixed[: self._fixed.shape[0]] = self._fixed
        fixed[rows] = np.asarray(batch_sizes, np.int64)
        self._fixed = fixed
        return self._space.tag(rows)

    def predict_many(self, jobs: Sequence[Hashable] | Rows) -> np.ndarray:
        return self._fixed[self._resolve(jobs)]

    def observe_many(self, jobs: Sequence[Hashable] | Rows, batch_sizes: Any, costs: Any, converged: Any = None) -> None:
        self._resolve(jobs)


class FixedPowerLimitOptimizer(_KeyedRows):
    """Always the power limit given at registration, whatever the batch size; never profiles
    (internal: the ``default`` and ``oracle`` policies)."""

    def __init__(self) -> None:
        super().__init__("FixedPowerLimitOptimizer")
        self._fixed = np.zeros(0, np.int64)

    def register_jobs(self, jobs: Sequence[Hashable], power_limits: np.ndarray) -> Rows:
        rows, _ = self._new_rows(list(jobs))
        fixed = np.zeros(len(self._keys), np.int64)
        fixed[: self._fixed.shape[0]] = self._fixed
        fixed[rows] = np.asarray(power_limits, np.int64)
        self._fixed = fixed
        return self._space.tag(rows)

    def predict_many(self, jobs: Sequence[Hashable] | Rows, batch_sizes: Any = None) -> np.ndarray:
        return self._fixed[self._resolve(jobs)]

    def observe_many(self, jobs: Sequence[Hashable] | Rows, batch_sizes: Any, power_limits: Any, costs: Any) -> None:
        self._resolve(jobs)

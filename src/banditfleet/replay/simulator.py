"""The reference-shaped simulator: ``zeus._legacy.simulate.Simulator``'s API over the fleet replay.

:class:`Simulator` takes the same arguments as the reference and returns the
same histories. Each call replays one unit with
:func:`banditfleet.replay.engine.run_one` (the fleet's compiled event kernel,
with the optimizers' scalar calls) on copies of the optimizers it was given,
so, as in the reference, every call starts from the optimizers' state at
construction time and leaves them untouched. The optimizers may be
banditfleet's or any with the reference's interface, zeus's included.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from banditfleet._codes import replay_error
from banditfleet.errors import ReplayError, TraceError
from banditfleet.kernels.replay import (
    ERR_EXHAUSTED,
    ERR_NONE,
    MAX_TRIES,
    MODE_GROUP,
    MODE_SEQUENTIAL,
)
from banditfleet.replay.engine import Partition, UnitsResult, make_units, run_one, run_units
from banditfleet.replay.traces import Trace, Workloads, build_workloads

__all__ = ["HistoryEntry", "Simulator", "check_knobs"]

logger = logging.getLogger("banditfleet")


@dataclass
class HistoryEntry:
    """One simulated run that started: batch size, power limit, energy (J), whether it
    reached the target metric, and time (s)."""

    bs: int
    pl: int
    energy: float
    reached: bool
    time: float


def check_knobs(beta_knob: Any, eta_knob: Any) -> tuple[float, float]:
    """``beta_knob`` > 0 (``inf`` turns early stopping off) and ``eta_knob`` in [0, 1]."""
    try:
        beta = float(beta_knob)
        eta = float(eta_knob)
    except (TypeError, ValueError):
        raise TraceError(f"beta_knob and eta_knob must be numbers, got {beta_knob!r} and {eta_knob!r}") from None
    if isinstance(beta_knob, bool) or math.isnan(beta) or beta <= 0:
        raise TraceError(f"beta_knob must be > 0 (inf: no early stopping), got {beta_knob!r}")
    if isinstance(eta_knob, bool) or not 0.0 <= eta <= 1.0:
        raise TraceError(f"eta_knob must be in [0, 1], got {eta_knob!r}")
    return beta, eta


def clone_optimizer(opt: Any) -> Any:
    """A deep copy that shares nothing with ``opt`` (a journal folder is not carried over)."""
    folder = getattr(opt, "_folder", None)
    memo = {id(folder): None} if folder is not None else {}
    return copy.deepcopy(opt, memo)


def raise_unit_error(result: UnitsResult, u: int, job: Any, bso: Any, key: Any) -> None:
    """Raise the error the reference raises (or would) for a unit that stopped on one."""
    code = int(result.error[u])
    if code == ERR_NONE:
        return
    if code == ERR_EXHAUSTED:
        # raises the optimizer's own PruningExhaustedError
        bso.predict(key) if callable(getattr(bso, "predict", None)) else bso.predict_many(bso.rows([key]))
    raise replay_error(code, job=job, default_bs=job.default_bs, max_tries=MAX_TRIES, target_metric=job.target_metric)


def _float_column(df: pd.DataFrame, name: str) -> np.ndarray:
    """A column as a writable float64 array; what is not a number becomes NaN."""
    col = df[name]
    if col.dtype.kind in "fiu":
        return np.array(col.to_numpy(), np.float64)  # a copy: numba types read-only arrays apart
    return pd.to_numeric(col, errors="coerce").to_numpy(np.float64, copy=True)


_BSO_SCALAR = ("register_job", "predict", "observe")
_PLO_SCALAR = ("predict", "observe")
_BSO_BATCH = ("register_job", "rows", "predict_many", "observe_many")
_PLO_BATCH = ("rows", "predict_many", "observe_many")


def _has(opt: Any, methods: tuple[str, ...]) -> bool:
    return all(callable(getattr(opt, m, None)) for m in methods)


class Simulator:
    """Trace-driven simulation of recurring jobs, shaped like the reference's ``Simulator``.

    Args:
        summary_train: Path to or DataFrame of the train trace.
        summary_power: Path to or DataFrame of the power trace.
        batch_size_optimizer: A banditfleet batch-size optimizer
            (:class:`~banditfleet.PruningGTSBatchSizeOptimizer`,
            :class:`~banditfleet.GTSBatchSizeOptimizer`,
            :class:`~banditfleet.replay.policies.GridSearchBatchSizeOptimizer`),
            or any optimizer with the reference's interface (``register_job``,
            ``predict``, ``observe``), zeus's own included (the slow path: the
            time goes into zeus's own calls), with the same results as the
            reference simulator.
        power_limit_optimizer: A :class:`~banditfleet.JITPowerLimitOptimizer`,
            or one with the reference's interface (``predict`` returning None
            until profiled, ``observe``), such as zeus's.
        seed: Seed of the simulator's stream, from which each run samples its
            training path. Every call starts from this seed again.
        verbose: Log each call's outcome through the ``banditfleet`` logger.
    """

    def __init__(
        self,
        summary_train: str | os.PathLike | pd.DataFrame,
        summary_power: str | os.PathLike | pd.DataFrame,
        batch_size_optimizer: Any,
        power_limit_optimizer: Any,
        seed: int = 123456,
        verbose: bool = True,
    ) -> None:
        self._scalar = _has(batch_size_optimizer, _BSO_SCALAR) and _has(power_limit_optimizer, _PLO_SCALAR)
        if not self._scalar:
            for name, opt, batch, scalar in (
                ("batch_size_optimizer", batch_size_optimizer, _BSO_BATCH, _BSO_SCALAR),
                ("power_limit_optimizer", power_limit_optimizer, _PLO_BATCH, _PLO_SCALAR),
            ):
                if not _has(opt, batch):
                    missing = [m for m in scalar if not callable(getattr(opt, m, None))]
                    raise TypeError(
                        f"{name} must be a banditfleet optimizer or have the reference's interface {list(scalar)} "
                        f"(it lacks {missing}); got {type(opt).__name__}"
                    )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
            raise TraceError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        self.trace = Trace(summary_train, summary_power)
        self.df = self.trace.df
        self.bso = batch_size_optimizer
        self.plo = power_limit_optimizer
        self.seed = int(seed)
        self.verbose = bool(verbose)
        self._workloads: dict[Any, Workloads] = {}

    def _workload(self, job: Any) -> Workloads:
        w = self._workloads.get(job)
        if w is None:
            w = build_workloads([(self.trace, job)])
            self._workloads[job] = w
        return w

    def _replay(self, job: Any, mode: int, n_rec: int, beta: float, eta: float, subs: tuple | None) -> list[HistoryEntry]:
        w = self._workload(job)
        bso = clone_optimizer(self.bso)
        plo = clone_optimizer(self.plo)
        bso.register_job(job, list(w.arms[0]))
        if subs is None:
            units = make_units(w.tables, np.zeros(1, np.int64), np.array([mode]), np.array([eta]), np.array([beta]), np.array([n_rec]))
        else:
            t0, t1, ratio = subs
            units = make_units(
                w.tables, np.zeros(1, np.int64), np.array([mode]), np.array([eta]), np.array([beta]), np.array([n_rec]),
                np.zeros(1, np.int64), t0, t1, ratio,
            )
        if self._scalar:
            result = run_one(w.tables, units, self.seed, bso, plo, job)
        else:  # optimizers with the batch API only: the fleet driver
            part = Partition(bso, plo, np.zeros(1, np.int64), bso.rows([job]), plo.rows([job]))
            result = run_units(w.tables, units, np.array([self.seed], np.uint64), [part])
        raise_unit_error(result, 0, job, bso, job)
        history = [
            HistoryEntry(bs, pl, energy, reached, time)
            for bs, pl, energy, reached, time in zip(
                result.bs.tolist(), result.pl.tolist(), result.energy.tolist(), result.reached.tolist(), result.time.tolist()
            )
        ]
        if self.verbose:
            logger.info("[Simulator] %s: %d runs, %d in the history", job, int(result.runs[0]), len(history))
        return history

    def simulate_one_job(self, job: Any, num_recurrence: int, beta_knob: float, eta_knob: float) -> list[HistoryEntry]:
        """Replay ``job`` recurring ``num_recurrence`` times, one run at a time, with early stopping.

        Raises :class:`~banditfleet.errors.ReplayError` where the reference raises
        ``RuntimeError``: the default batch size failing in the first recurrence,
        or no run reaching the target in 20 tries.
        """
        beta, eta = check_knobs(beta_knob, eta_knob)
        if isinstance(num_recurrence, bool) or not isinstance(num_recurrence, (int, np.integer)) or num_recurrence < 0:
            raise TraceError(f"num_recurrence must be a non-negative integer, got {num_recurrence!r}")
        return self._replay(job, MODE_SEQUENTIAL, int(num_recurrence), beta, eta, None)

    def simulate_one_alibaba_group(self, job: Any, group_df: pd.DataFrame, beta_knob: float, eta_knob: float) -> list[HistoryEntry]:
        """Replay one group's submissions (columns start_time, end_time, runtime_ratio, in start order).

        Submissions that start while others run use the best known batch size;
        failed runs are retried when they end, with the same runtime. Refuses
        (:class:`~banditfleet.errors.TraceError`) a group not sorted by start
        time, negative times or an end before its start.
        """
        beta, eta = check_knobs(beta_knob, eta_knob)
        if getattr(job, "default_bs", None) is None:
            raise TraceError("You must give the job a default batch size.")
        missing = [c for c in ("start_time", "end_time", "runtime_ratio") if c not in group_df.columns]
        if missing:
            raise TraceError(f"group_df: missing column(s) {missing}")
        t0, t1, ratio = (_float_column(group_df, c) for c in ("start_time", "end_time", "runtime_ratio"))
        if not (np.isfinite(t0).all() and np.isfinite(t1).all() and np.isfinite(ratio).all()):
            raise TraceError("group_df: start_time, end_time and runtime_ratio must be finite numbers")
        if (t0 < 0).any() or (t1 < t0).any():
            raise TraceError("group_df: times must be >= 0 and every end_time >= its start_time")
        if (ratio <= 0).any():
            raise TraceError("group_df: runtime_ratio must be positive")
        if (np.diff(t0) < 0).any():
            raise TraceError("group_df: submissions must be sorted by start_time (the reference assumes it)")
        return self._replay(job, MODE_GROUP, len(group_df), beta, eta, (t0, t1, ratio))

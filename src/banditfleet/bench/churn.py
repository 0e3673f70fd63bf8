"""A fleet under churn: many registrations, a bounded number of live jobs.

:func:`churn_fleet` registers ``registrations`` jobs in rounds, predicts and
observes every live job once per round, and removes random live jobs so that
at most ``max_live`` remain (``remove=False`` does the same registrations and
observations without removing anything: the fleet before this feature).
:func:`churn_figures` compares the result with a fresh fleet that holds only
the live jobs, fed the same observations: checkpoint bytes and allocated
array bytes, the figures of docs/performance.md ("Memory under churn").
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from banditfleet.gts import GTSBatchSizeOptimizer

__all__ = ["churn_fleet", "fresh_twin", "churn_figures"]


def _arms(n_arms: int) -> np.ndarray:
    return (8 * 2 ** np.arange(n_arms)).astype(np.int64)


def churn_fleet(
    registrations: int,
    max_live: int,
    n_arms: int = 8,
    rounds: int = 25,
    seed: int = 0,
    remove: bool = True,
    record: bool = False,
) -> tuple[GTSBatchSizeOptimizer, list[int], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """``(optimizer, live keys in registration order, log)``; ``log`` (with ``record``) holds
    each round's ``(keys, batch sizes, costs)``. GTS with learned reward precision: every
    reward is kept (the unbounded history pool), the state that grows the most."""
    opt = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    rng = np.random.default_rng(seed)
    arms = _arms(n_arms)
    per_round = -(-registrations // rounds)
    live = np.zeros(0, np.int64)
    log: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    next_key = 0
    while next_key < registrations:
        new = np.arange(next_key, min(next_key + per_round, registrations), dtype=np.int64)
        next_key += new.shape[0]
        opt.register_jobs(new.tolist(), np.tile(arms, (new.shape[0], 1)))
        live = np.concatenate([live, new])
        keys = live.tolist()
        bs = opt.predict_many(keys)
        costs = rng.gamma(4.0, 25.0, live.shape[0]) + np.abs(np.log2(bs) - 5.0) * 20.0
        opt.observe_many(keys, bs, costs)
        if record:
            log.append((live.copy(), bs, costs))
        if live.shape[0] > max_live:
            # Down to 80% of the bound, so each round registers into room it freed.
            gone = rng.choice(live.shape[0], size=live.shape[0] - int(0.8 * max_live), replace=False)
            mask = np.ones(live.shape[0], bool)
            mask[gone] = False
            if remove:
                opt.remove_jobs(live[~mask].tolist())
            live = live[mask]
    return opt, live.tolist(), log


def fresh_twin(live: list[int], log: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_arms: int = 8) -> GTSBatchSizeOptimizer:
    """A fleet that only ever held the ``live`` jobs, fed their observations of ``log``."""
    opt = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    opt.register_jobs(live, np.tile(_arms(n_arms), (len(live), 1)))
    wanted = np.zeros(max(live, default=0) + 1, bool)
    wanted[live] = True
    for keys, bs, costs in log:
        keep = (keys < wanted.shape[0]) & wanted[np.minimum(keys, wanted.shape[0] - 1)]
        got = opt.predict_many(keys[keep].tolist())
        if not np.array_equal(got, bs[keep]):
            raise AssertionError("the fresh twin decided differently from the churned fleet")
        opt.observe_many(keys[keep].tolist(), bs[keep], costs[keep])
    return opt


def _live_bytes(opt: GTSBatchSizeOptimizer) -> int:
    return int(sum(a.nbytes for a in opt._store.export_arrays().values()))


def churn_figures(registrations: int, max_live: int, n_arms: int = 8, workdir: str | None = None) -> dict[str, Any]:
    """Checkpoint and allocated bytes of a churned fleet, a fresh fleet with its live jobs, and
    the same churn without removal; the ratios the issue bounds (checkpoint <= 1.2x the fresh
    fleet's, allocated arrays <= 2x the live state)."""
    churned, live, log = churn_fleet(registrations, max_live, n_arms, record=True)
    grown, _, _ = churn_fleet(registrations, max_live, n_arms, remove=False)
    fresh = fresh_twin(live, log, n_arms)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        sizes = {name: opt.save(os.path.join(tmp, name)) for name, opt in (("churned", churned), ("fresh", fresh), ("no_removal", grown))}
    live_bytes = _live_bytes(fresh)
    allocated = {name: opt.memory_report()["allocated_bytes"] for name, opt in (("churned", churned), ("fresh", fresh), ("no_removal", grown))}
    return {
        "registrations": registrations,
        "max_live": max_live,
        "live_jobs": len(live),
        "checkpoint_bytes": sizes,
        "allocated_bytes": allocated,
        "live_state_bytes": live_bytes,
        "checkpoint_vs_fresh": sizes["churned"] / sizes["fresh"],
        "allocated_vs_live": allocated["churned"] / live_bytes,
        "no_removal_checkpoint_vs_fresh": sizes["no_removal"] / sizes["fresh"],
        "no_removal_allocated_vs_live": allocated["no_removal"] / live_bytes,
    }

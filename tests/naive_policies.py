"""Naive models of the replay's extra policies, written from their documented definitions
(docs/replay.md, "Policies and the oracle"), with the reference optimizers' interface
(register_job / predict / observe) so that zeus's own Simulator can drive them."""

from __future__ import annotations

import math

import pandas as pd


class NaiveGridSearch:
    """Default batch size first, then the others ascending, each until it has one
    observation; then the lowest mean cost among the batch sizes that reached the target
    (ties: smaller batch size), or among all when none did."""

    name = "naive grid search"

    def __init__(self):
        self.order = {}
        self.obs = {}

    def register_job(self, job, batch_sizes):
        if job in self.order:
            return
        bs = sorted(int(b) for b in batch_sizes)
        d = getattr(job, "default_bs", None)
        self.order[job] = ([d] if d in bs else []) + [b for b in bs if b != d]
        self.obs[job] = {b: [] for b in bs}

    def predict(self, job):
        obs = self.obs[job]
        for b in self.order[job]:
            if not obs[b]:
                return b
        ok = {b: [c for c, r in o if r] for b, o in obs.items()}
        pool = {b: sum(v) / len(v) for b, v in ok.items() if v}
        if not pool:
            pool = {b: sum(c for c, _ in o) / len(o) for b, o in obs.items()}
        best = min(pool.values())
        return min(b for b, m in pool.items() if m == best)

    def observe(self, job, batch_size, cost, converged=None):
        self.obs[job][int(batch_size)].append((float(cost), True if converged is None else bool(converged)))


class FixedBatchSize:
    """Always one batch size."""

    name = "fixed batch size"

    def __init__(self, bs):
        self.bs = int(bs)

    def register_job(self, job, batch_sizes):
        assert self.bs in [int(b) for b in batch_sizes]

    def predict(self, job):
        return self.bs

    def observe(self, job, batch_size, cost, converged=None):
        assert int(batch_size) == self.bs


class FixedPowerLimit:
    """Always one power limit: never asks for profiling."""

    name = "fixed power limit"

    def __init__(self, pl):
        self.pl = int(pl)

    def predict(self, job, batch_size):
        return self.pl

    def observe(self, job, batch_size, power_limit, cost):
        raise AssertionError("a fixed power limit is never profiled")


def naive_oracle(train: pd.DataFrame, power: pd.DataFrame, job, eta: float) -> tuple[int, int, float, float, float]:
    """Brute force over every (batch size, power limit) of the job in the merged trace:
    (batch size, power limit, expected energy, time and cost of one submission of ratio 1)."""
    df = train.merge(power, how="inner")
    df = df.loc[(df.dataset == job.dataset) & (df.network == job.network) & (df.optimizer == job.optimizer) & (df.target_metric == job.target_metric)]
    # the cost's MaxPower is the whole trace's largest power limit, as the reference's
    max_power = float(train.merge(power, how="inner").power_limit.max())
    best = None
    for (bs, pl), paths in sorted(df.groupby(["batch_size", "power_limit"]), key=lambda kv: (kv[0][0], -kv[0][1])):
        e_sum = t_sum = 0.0
        k = 0
        for te, tpe, avg in zip(paths.target_epoch, paths.time_per_epoch, paths.average_power):
            reached = not math.isnan(te) and te <= job.max_epochs
            epochs = te if reached else job.max_epochs
            e_sum += epochs * (tpe * avg)
            t_sum += epochs * tpe
            k += reached
        if not k:
            continue
        energy, time = e_sum / k, t_sum / k
        cost = eta * energy + (1 - eta) * max_power * time
        if best is None or cost < best[4]:
            best = (int(bs), int(pl), energy, time, cost)
    return best

"""A slow, obviously correct model of the GTS batch-size policy, one dict per job.

Written from the policy's description: every job has its own numpy
``default_rng(seed)``; predict draws a random order of the arms with
``choice(arms, k, replace=False)``, explores the first arm observed fewer
than ``num_exploration`` times, else samples N(mean, 1/precision) per arm and
takes the first maximum. Observations fold -cost into a conjugate Gaussian
posterior (known reward precision) or refit the arm from the prior with
precision 1/var(all its rewards) (learned precision). Used to test the
kernels fast, without the installed reference.
"""

from __future__ import annotations

import math

import numpy as np


class NaiveGTS:
    def __init__(self, learn, reward_precision=0.0, prior_mean=0.0, prior_precision=0.0, num_exploration=1, seed=123456):
        self.learn = learn
        self.reward_precision = reward_precision
        self.prior_mean = prior_mean
        self.prior_precision = prior_precision
        self.num_exploration = num_exploration
        self.seed = seed
        self.jobs = {}

    def register(self, job, arms):
        if job in self.jobs:
            return
        self.jobs[job] = {
            "arms": list(arms),
            "rng": np.random.default_rng(self.seed),
            "mean": {a: self.prior_mean for a in arms},
            "prec": {a: self.prior_precision for a in arms},
            "count": {a: 0 for a in arms},
            "rewards": {a: [] for a in arms},
        }

    def predict(self, job):
        j = self.jobs[job]
        order = j["rng"].choice(np.array(j["arms"]), len(j["arms"]), replace=False)
        for arm in order:
            if j["count"][int(arm)] < self.num_exploration:
                return int(arm)
        best_arm, best = None, None
        for arm in j["arms"]:
            draw = j["rng"].normal(j["mean"][arm], math.sqrt(1.0 / j["prec"][arm]) if j["prec"][arm] else math.inf)
            if best is None or draw > best:
                best_arm, best = arm, draw
        return best_arm

    def observe(self, job, arm, cost):
        j = self.jobs[job]
        reward = -cost
        if not self.learn:
            rp = self.reward_precision
            if rp == math.inf:
                j["mean"][arm], j["prec"][arm] = np.array([reward]).mean(), math.inf
            else:
                prec = j["prec"][arm] + rp
                j["mean"][arm] = (j["prec"][arm] * j["mean"][arm] + rp * np.array([reward]).sum()) / prec
                j["prec"][arm] = prec
            j["count"][arm] += 1
            return
        j["rewards"][arm].append(reward)
        r = np.array(j["rewards"][arm])
        var = np.var(r)
        rp = math.inf if var == 0.0 else 1.0 / var
        if rp == math.inf:
            j["mean"][arm], j["prec"][arm] = r.mean(), math.inf
        else:
            prec = self.prior_precision + len(r) * rp
            j["mean"][arm] = (self.prior_precision * self.prior_mean + rp * r.sum()) / prec
            j["prec"][arm] = prec
        j["count"][arm] = len(r)

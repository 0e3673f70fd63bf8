"""Deterministic little fleets for the pre-per-job-settings checkpoint fixtures.

``tests/data/make_pre_settings_checkpoints.py`` ran these with banditfleet's
code from before per-job settings (main at 074be13) and saved the optimizers
after ``PREFIX`` steps; ``tests/test_job_settings.py`` loads those files with
the current code, continues, and compares every decision with the zeus
reference driven through the same calls from the start.
"""

from __future__ import annotations

PREFIX = 9

JOBS = {
    "a": ([8, 16, 32], 16),
    "b": ([16, 64], 64),
    "c": ([8, 32, 128, 256], 32),
}

# name -> (optimizer class name, constructor settings)
SCENARIOS = {
    "gts-learned": ("GTSBatchSizeOptimizer", dict(learn_reward_precision=True, seed=11)),
    "gts-known": ("GTSBatchSizeOptimizer", dict(learn_reward_precision=False, reward_precision=0.5, prior_precision=0.01, num_exploration=2, seed=5)),
    "pruning-w3": ("PruningGTSBatchSizeOptimizer", dict(window_size=3, prior_precision=0.001, seed=9)),
    "pruning-w0": ("PruningGTSBatchSizeOptimizer", dict(window_size=0, prior_mean=-20.0, seed=13)),
}


def cost(job: str, bs: int, t: int) -> float:
    """A deterministic energy-time cost with some spread per arm."""
    base = 10.0 + (bs % 37) + 3.0 * "abc".index(job)
    return base * (1.0 + 0.1 * ((t * 7 + bs) % 5))


def converged(bs: int) -> bool:
    return bs <= 64


def register(opt, pruning: bool, key=lambda name: name) -> None:
    for name, (arms, default) in JOBS.items():
        if pruning:
            opt.register_job(key(name), list(arms), default) if key(name) == name else opt.register_job(key(name), list(arms))
        else:
            opt.register_job(key(name), list(arms))


def drive(opt, t0: int, t1: int, key=lambda name: name) -> list[int]:
    """Steps ``t0 .. t1 - 1``: every job predicts, then observes its cost."""
    out = []
    for t in range(t0, t1):
        for name in JOBS:
            bs = int(opt.predict(key(name)))
            opt.observe(key(name), bs, cost(name, bs, t), converged(bs))
            out.append(bs)
    return out

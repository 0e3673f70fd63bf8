"""Reward statistics and conjugate Gaussian posterior updates.

Sums follow numpy's pairwise summation (blocks of 8 partial sums, halving
above 128 elements, added to the reduction identity 0.0), so ``mean``,
``population_variance`` and the posterior means are bit-identical to what the
reference computes with ``np.var``, ``ndarray.mean`` and ``ndarray.sum``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "pairwise_sum",
    "array_sum",
    "array_mean",
    "population_variance",
    "precision_from_variance",
    "fit_reset",
    "fit_increment",
]

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_BLOCK = 128


@numba.njit(**_JIT)
def _pairwise_leaf(values, start, n):
    # numpy's base cases: a plain loop below 8, else 8 running partial sums.
    if n < 8:
        res = 0.0
        for i in range(n):
            res += values[start + i]
        return res
    r0 = values[start]
    r1 = values[start + 1]
    r2 = values[start + 2]
    r3 = values[start + 3]
    r4 = values[start + 4]
    r5 = values[start + 5]
    r6 = values[start + 6]
    r7 = values[start + 7]
    i = 8
    stop = n - (n % 8)
    while i < stop:
        r0 += values[start + i]
        r1 += values[start + i + 1]
        r2 += values[start + i + 2]
        r3 += values[start + i + 3]
        r4 += values[start + i + 4]
        r5 += values[start + i + 5]
        r6 += values[start + i + 6]
        r7 += values[start + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += values[start + i]
        i += 1
    return res


@numba.njit(**_JIT)
def pairwise_sum(values, start, n):
    """numpy's ``pairwise_sum`` of ``values[start:start + n]`` (no identity added).

    Above 128 elements numpy recurses on halves rounded to a multiple of 8;
    the same tree is walked here with a small explicit stack (numba's cached
    recursion is not reliable), so the additions happen in numpy's order.
    """
    if n <= _BLOCK:
        return _pairwise_leaf(values, start, n)
    frame_start = np.empty(128, np.int64)
    frame_n = np.empty(128, np.int64)
    frame_stage = np.empty(128, np.int8)
    partial = np.empty(128, np.float64)
    depth = 0
    n_partial = 0
    frame_start[0] = start
    frame_n[0] = n
    frame_stage[0] = 0
    while depth >= 0:
        s = frame_start[depth]
        m = frame_n[depth]
        if m <= _BLOCK:
            partial[n_partial] = _pairwise_leaf(values, s, m)
            n_partial += 1
            depth -= 1
            continue
        half = m // 2
        half -= half % 8
        stage = frame_stage[depth]
        if stage == 2:
            right = partial[n_partial - 1]
            left = partial[n_partial - 2]
            n_partial -= 1
            partial[n_partial - 1] = left + right
            depth -= 1
            continue
        frame_stage[depth] = stage + 1
        depth += 1
        frame_stage[depth] = 0
        if stage == 0:
            frame_start[depth] = s
            frame_n[depth] = half
        else:
            frame_start[depth] = s + half
            frame_n[depth] = m - half
    return partial[0]


@numba.njit(**_JIT)
def array_sum(values, n):
    """``np.sum(values[:n])``: the identity 0.0 plus the pairwise sum."""
    return 0.0 + pairwise_sum(values, 0, n)


@numba.njit(**_JIT)
def array_mean(values, n):
    """``values[:n].mean()``."""
    return array_sum(values, n) / n


@numba.njit(**_JIT)
def population_variance(values, n, scratch):
    """``np.var(values[:n])`` (ddof=0): two passes, squared deviations summed pairwise.

    ``scratch`` holds at least ``n`` doubles.
    """
    mean = array_mean(values, n)
    for i in range(n):
        d = values[i] - mean
        scratch[i] = d * d
    return array_sum(scratch, n) / n


@numba.njit(**_JIT)
def precision_from_variance(variance):
    """Reward precision from a window's variance: ``1/var``, infinite when the variance is 0."""
    if variance == 0.0:
        return np.inf
    return 1.0 / variance


@numba.njit(**_JIT)
def fit_reset(rewards, n, reward_precision, prior_mean, prior_precision):
    """Posterior (mean, precision) after resetting to the prior and fitting ``rewards[:n]``.

    With infinite reward precision the posterior collapses on the rewards' mean.
    ``n == 0`` leaves the prior.
    """
    if n == 0:
        return prior_mean, prior_precision
    if reward_precision == np.inf:
        return array_mean(rewards, n), np.inf
    new_precision = prior_precision + n * reward_precision
    new_mean = (prior_precision * prior_mean + reward_precision * array_sum(rewards, n)) / new_precision
    return new_mean, new_precision


@numba.njit(**_JIT)
def fit_increment(mean, precision, reward, reward_precision):
    """Posterior (mean, precision) after one more reward, without reset."""
    if reward_precision == np.inf:
        # ndarray.mean() of one reward: (0.0 + reward) / 1.
        return (0.0 + reward) / 1.0, np.inf
    new_precision = precision + reward_precision
    # ndarray.sum() of a single reward is 0.0 + reward.
    new_mean = (precision * mean + reward_precision * (0.0 + reward)) / new_precision
    return new_mean, new_precision

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
    "SUM_STACK_DEPTH",
    "allocate_sum_stack",
    "pairwise_sum_with",
    "sum_with",
    "mean_with",
    "variance_with",
    "fit_reset_with",
    "window_fit_with",
    "pairwise_sum",
    "array_sum",
    "array_mean",
    "population_variance",
    "precision_from_variance",
    "fit_reset",
    "fit_increment",
]

from ._config import INLINE as _INLINE, JIT as _JIT, JIT_HELPER as _JIT_HELPER

_BLOCK = 128


@numba.njit(**_INLINE)
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


# Depth of the explicit stack that walks numpy's pairwise-summation tree:
# each level at least halves the span, so 128 frames cover any array.
SUM_STACK_DEPTH = 128


def allocate_sum_stack() -> tuple[np.ndarray, np.ndarray]:
    """Working space for the ``*_with`` functions: (frames int64[3, depth], partials float64[depth])."""
    return np.empty((3, SUM_STACK_DEPTH), np.int64), np.empty(SUM_STACK_DEPTH, np.float64)


@numba.njit(**_JIT_HELPER)
def pairwise_sum_with(values, start, n, frames, partial):
    """numpy's ``pairwise_sum`` of ``values[start:start + n]`` (no identity added),
    walking the tree with caller-provided stack space (no allocation).

    Above 128 elements numpy recurses on halves rounded down to a multiple of
    8; the same tree is walked here with an explicit stack (numba's cached
    recursion is not reliable), so the additions happen in numpy's order.
    """
    if n <= _BLOCK:
        return _pairwise_leaf(values, start, n)
    depth = 0
    n_partial = 0
    frames[0, 0] = start
    frames[1, 0] = n
    frames[2, 0] = 0
    while depth >= 0:
        s = frames[0, depth]
        m = frames[1, depth]
        if m <= _BLOCK:
            partial[n_partial] = _pairwise_leaf(values, s, m)
            n_partial += 1
            depth -= 1
            continue
        half = m // 2
        half -= half % 8
        stage = frames[2, depth]
        if stage == 2:
            right = partial[n_partial - 1]
            left = partial[n_partial - 2]
            n_partial -= 1
            partial[n_partial - 1] = left + right
            depth -= 1
            continue
        frames[2, depth] = stage + 1
        depth += 1
        frames[2, depth] = 0
        if stage == 0:
            frames[0, depth] = s
            frames[1, depth] = half
        else:
            frames[0, depth] = s + half
            frames[1, depth] = m - half
    return partial[0]


@numba.njit(**_INLINE)
def sum_with(values, n, frames, partial):
    """``np.sum(values[:n])`` with caller-provided stack space."""
    if n <= _BLOCK:  # numpy's leaf, without a call into the tree walk
        return 0.0 + _pairwise_leaf(values, 0, n)
    return 0.0 + pairwise_sum_with(values, np.int64(0), n, frames, partial)


@numba.njit(**_INLINE)
def mean_with(values, n, frames, partial):
    """``values[:n].mean()`` with caller-provided stack space."""
    return sum_with(values, n, frames, partial) / n


@numba.njit(**_INLINE)
def variance_with(values, n, scratch, frames, partial):
    """``np.var(values[:n])`` (ddof=0) with caller-provided space: two passes,
    squared deviations summed pairwise. ``scratch`` holds at least ``n`` doubles."""
    mean = mean_with(values, n, frames, partial)
    for i in range(n):
        d = values[i] - mean
        scratch[i] = d * d
    return sum_with(scratch, n, frames, partial) / n


@numba.njit(**_INLINE)
def fit_reset_with(rewards, n, reward_precision, prior_mean, prior_precision, frames, partial):
    """:func:`fit_reset` with caller-provided stack space."""
    if n == 0:
        return prior_mean, prior_precision
    if reward_precision == np.inf:
        return mean_with(rewards, n, frames, partial), np.inf
    new_precision = prior_precision + n * reward_precision
    new_mean = (prior_precision * prior_mean + reward_precision * sum_with(rewards, n, frames, partial)) / new_precision
    return new_mean, new_precision


@numba.njit(**_INLINE)
def _pairwise_leaf_sq(values, start, n, mean):
    # _pairwise_leaf over (values[start + i] - mean) ** 2, each square computed
    # as numpy's var does (d = x - mean; d * d) and added in the same order.
    if n < 8:
        res = 0.0
        for i in range(n):
            d = values[start + i] - mean
            res += d * d
        return res
    d0 = values[start] - mean
    d1 = values[start + 1] - mean
    d2 = values[start + 2] - mean
    d3 = values[start + 3] - mean
    d4 = values[start + 4] - mean
    d5 = values[start + 5] - mean
    d6 = values[start + 6] - mean
    d7 = values[start + 7] - mean
    r0 = d0 * d0
    r1 = d1 * d1
    r2 = d2 * d2
    r3 = d3 * d3
    r4 = d4 * d4
    r5 = d5 * d5
    r6 = d6 * d6
    r7 = d7 * d7
    i = 8
    stop = n - (n % 8)
    while i < stop:
        d0 = values[start + i] - mean
        d1 = values[start + i + 1] - mean
        d2 = values[start + i + 2] - mean
        d3 = values[start + i + 3] - mean
        d4 = values[start + i + 4] - mean
        d5 = values[start + i + 5] - mean
        d6 = values[start + i + 6] - mean
        d7 = values[start + i + 7] - mean
        r0 += d0 * d0
        r1 += d1 * d1
        r2 += d2 * d2
        r3 += d3 * d3
        r4 += d4 * d4
        r5 += d5 * d5
        r6 += d6 * d6
        r7 += d7 * d7
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        d = values[start + i] - mean
        res += d * d
        i += 1
    return res


@numba.njit(**_INLINE)
def window_fit_with(values, start, n, scratch, frames, partial, prior_mean, prior_precision):
    """The learned-precision refit of a window ``values[start:start + n]`` (``n >= 1``),
    read in place: ``(reward precision, posterior mean, posterior precision)``.

    Bit for bit what :func:`variance_with`, :func:`precision_from_variance` and
    :func:`fit_reset_with` compute on a copy of the window (the reference's
    ``1/np.var(window)`` then ``fit_arm(window, reset=True)``), in two passes
    instead of five: the window's sum ``0.0 + pairwise(window)`` is computed
    once (the mean is ``sum / n`` and the fit uses the same sum), and the
    squared deviations are summed as they are computed, in numpy's pairwise
    order, without a scratch copy. Windows over 128 rewards walk numpy's
    summation tree over ``scratch`` (at least ``n`` doubles).
    """
    if n <= _BLOCK:
        total = 0.0 + _pairwise_leaf(values, start, n)
        mean = total / n
        var = (0.0 + _pairwise_leaf_sq(values, start, n, mean)) / n
    else:
        total = 0.0 + pairwise_sum_with(values, start, n, frames, partial)
        mean = total / n
        for i in range(n):
            d = values[start + i] - mean
            scratch[i] = d * d
        var = (0.0 + pairwise_sum_with(scratch, np.int64(0), n, frames, partial)) / n
    if var == 0.0:
        # A constant window: infinite precision, the posterior collapses on the mean.
        return np.inf, mean, np.inf
    precision = 1.0 / var
    if precision == np.inf:
        return precision, mean, np.inf
    new_precision = prior_precision + n * precision
    return precision, (prior_precision * prior_mean + precision * total) / new_precision, new_precision


@numba.njit(**_JIT)
def pairwise_sum(values, start, n):
    """numpy's ``pairwise_sum`` of ``values[start:start + n]`` (no identity added)."""
    if n <= _BLOCK:
        return _pairwise_leaf(values, start, n)
    frames = np.empty((3, SUM_STACK_DEPTH), np.int64)
    partial = np.empty(SUM_STACK_DEPTH, np.float64)
    return pairwise_sum_with(values, start, n, frames, partial)


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


@numba.njit(**_INLINE)
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


@numba.njit(**_INLINE)
def fit_increment(mean, precision, reward, reward_precision):
    """Posterior (mean, precision) after one more reward, without reset."""
    if reward_precision == np.inf:
        # ndarray.mean() of one reward: (0.0 + reward) / 1.
        return (0.0 + reward) / 1.0, np.inf
    new_precision = precision + reward_precision
    # ndarray.sum() of a single reward is 0.0 + reward.
    new_mean = (precision * mean + reward_precision * (0.0 + reward)) / new_precision
    return new_mean, new_precision

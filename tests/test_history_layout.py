"""The learned-precision refit read in place (``window_fit_with``, ``refit_history``)
equals numpy's ``np.var`` / the naive twins bit for bit, over random windows,
every history layout (rings before and after they wrap, unbounded history within
and beyond its first chunk, windows over 128 rewards) and duplicate jobs in a batch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from hypothesis_budget import examples
from banditfleet import GTSBatchSizeOptimizer
from banditfleet.kernels.stats import allocate_sum_stack, window_fit_with

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _bits(x: float) -> bytes:
    return np.float64(x).tobytes()


def _naive_refit(window: list[float], prior_mean: float, prior_precision: float) -> tuple[float, float, float]:
    var = naive.population_variance(window)
    precision = naive.precision_from_variance(var)
    mean, prec = naive.fit_reset(window, precision, prior_mean, prior_precision)
    return precision, mean, prec


def _numpy_var(window: list[float]) -> float:
    return float(np.var(np.array(window, np.float64)))


@settings(max_examples=examples(40), deadline=None)
@given(
    n=st.integers(1, 300),
    start=st.integers(0, 20),
    scale=st.sampled_from([1e-3, 1.0, 1e3, 1e150]),
    constant=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    prior=st.sampled_from([(0.0, 0.0), (-5.0, 0.25), (100.0, 3.0)]),
)
def test_window_fit_in_place_matches_numpy_and_naive(n, start, scale, constant, seed, prior):
    rng = np.random.default_rng(seed)
    values = rng.normal(-2.0 * scale, scale, size=start + n + 7)
    if constant:
        values[start : start + n] = values[start]
    window = values[start : start + n].tolist()
    frames, partial = allocate_sum_stack()
    precision, mean, prec = window_fit_with(values, start, n, np.empty(n), frames, partial, prior[0], prior[1])
    want = _naive_refit(window, prior[0], prior[1])
    assert _bits(precision) == _bits(naive.precision_from_variance(_numpy_var(window)))
    assert (_bits(precision), _bits(mean), _bits(prec)) == tuple(_bits(w) for w in want)


class _WindowedModel:
    """Per arm: the rewards, the last ``window`` of them (all with 0), np.var refit."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.rewards: dict[tuple[int, int], list[float]] = {}

    def observe(self, row: int, arm: int, cost: float) -> tuple[float, float, float, int]:
        r = self.rewards.setdefault((row, arm), [])
        r.append(-cost)
        w = r if self.window == 0 else r[-self.window :]
        precision, mean, prec = _naive_refit(w, 0.0, 0.0)
        assert (precision == math.inf) == (_numpy_var(w) == 0.0)
        return precision, mean, prec, len(w)


@pytest.mark.parametrize("window", [0, 2, 3, 10, 130])
@settings(max_examples=examples(6), deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_observe_many_refits_like_numpy_in_every_layout(window, seed):
    """Random batches (jobs repeated within a batch, every arm), histories long enough
    to wrap the rings and outgrow the first chunk of unbounded history."""
    rng = np.random.default_rng(seed)
    n_jobs, arms = 5, 3
    values = np.array([8, 16, 32], np.int64)
    opt = GTSBatchSizeOptimizer(learn_reward_precision=True, window_size=window, verbose=False)
    keys = [f"j{i}" for i in range(n_jobs)]
    rows = opt.register_jobs(keys, np.tile(values, (n_jobs, 1)))
    model = _WindowedModel(window)
    s = opt._store
    for step in range(12 if window < 100 else 6):
        size = int(rng.integers(1, 40))
        idx = rng.integers(0, n_jobs, size=size)
        arm = rng.integers(0, arms, size=size)
        costs = rng.choice([1.0, 2.0, 1e3], size=size) * rng.lognormal(0.0, 0.5, size=size)
        if step % 4 == 3:
            costs[:] = 7.5  # constant stretches: zero variance windows
        if step % 2:
            opt.observe_many([keys[i] for i in idx], values[arm], costs)
        else:
            for i, a, c in zip(idx.tolist(), arm.tolist(), costs.tolist()):
                opt.observe(keys[i], int(values[a]), float(c))
        want = {}
        for i, a, c in zip(idx.tolist(), arm.tolist(), costs.tolist()):
            want[(i, a)] = model.observe(i, a, c)
        for (i, a), (precision, mean, prec, count) in want.items():
            slot = int(s.arm_start[i]) + a
            got = (s.reward_precision[slot], s.posterior_mean[slot], s.posterior_precision[slot])
            assert tuple(_bits(g) for g in got) == (_bits(precision), _bits(mean), _bits(prec)), (window, i, a)
            assert int(s.observation_count[slot]) == count
    assert rows is not None

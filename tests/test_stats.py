"""The statistics kernels are bit-identical to numpy's reductions and zeus's fits.

Floats are compared by their IEEE bytes (so -0.0 != 0.0 and NaN payloads
must agree), against numpy/zeus and against the pure-Python twins in
``naive`` (where only "both NaN" is required, as Python cannot reproduce the
hardware NaN payload without help).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import naive
from banditfleet.kernels.stats import (
    array_mean,
    array_sum,
    fit_increment,
    fit_reset,
    pairwise_sum,
    population_variance,
    precision_from_variance,
)

# numpy warns on empty means and overflow; the values are what is compared
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

MAX_FLOAT = np.finfo(np.float64).max
TINY = 5e-324

# ---------------------------------------------------------------------------
# strategies

special_floats = st.sampled_from(
    [0.0, -0.0, TINY, -TINY, 2.2250738585072014e-308, 1e-300, -1e-300, 1.0, -1.0, 1e300, -1e300, MAX_FLOAT, -MAX_FLOAT]
)
finite_floats = st.one_of(
    special_floats,
    st.floats(allow_nan=False, allow_infinity=False),  # huge, tiny, subnormal, -0.0
    st.floats(-1e6, 1e6, allow_nan=False),  # everyday rewards
    st.integers(-100, 100).map(float),  # exact cancellations and ties
)
# rewards a bandit actually sees: moderate, with some signed zeros
reward_floats = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([0.0, -0.0, 1.0, -2.5]))

# magnitudes from subnormal up to 1e150: squared deviations of up to 600 of
# them stay finite, so np.var's exact rounding is exercised, not its overflow
wide_safe_floats = st.one_of(
    st.floats(-1e150, 1e150, allow_nan=False),
    st.sampled_from([0.0, -0.0, TINY, -TINY, 1e-300, 1e150, -1e150]),
)

# lengths around numpy's unroll (8) and block (128) boundaries, and anything up to 600
lengths = st.one_of(
    st.sampled_from([0, 1, 2, 7, 8, 9, 15, 16, 17, 127, 128, 129, 135, 136, 137, 255, 256, 257, 263, 264, 599, 600]),
    st.integers(0, 600),
)


def float_arrays(elements=finite_floats, shape=lengths):
    return arrays(np.float64, shape, elements=elements)


@st.composite
def padded(draw, elements=finite_floats):
    """(buffer, start, n): values live in buffer[start:start + n]; the rest is NaN bait."""
    values = draw(float_arrays(elements))
    start = draw(st.integers(0, 3))
    tail = draw(st.integers(0, 3))
    buf = np.full(start + values.size + tail, np.nan)
    buf[start : start + values.size] = values
    return buf, start, values.size


# ---------------------------------------------------------------------------
# comparisons


def bits(x) -> bytes:
    return np.float64(x).tobytes()


def assert_bits(ours, expected, what):
    assert bits(ours) == bits(expected), f"{what}: {ours!r} ({bits(ours).hex()}) != {expected!r} ({bits(expected).hex()})"


def assert_close_twin(ours, twin, what):
    """Bit-identical, except that two NaNs match whatever their payload."""
    if math.isnan(ours) and math.isnan(twin):
        return
    assert bits(ours) == bits(twin), f"{what}: {ours!r} != twin {twin!r}"


@pytest.fixture(autouse=True)
def _quiet_float_warnings():
    with np.errstate(all="ignore"):
        yield


# ---------------------------------------------------------------------------
# sums, means, variances


@given(values=float_arrays())
def test_array_sum_matches_numpy(values):
    n = values.size
    assert_bits(array_sum(values, n), np.sum(values), "array_sum")
    assert_close_twin(array_sum(values, n), naive.array_sum(values.tolist()), "array_sum")


@given(data=padded())
def test_pairwise_sum_on_a_window(data):
    buf, start, n = data
    ours = pairwise_sum(buf, start, n)
    assert_close_twin(ours, naive.pairwise_sum(buf[start : start + n].tolist()), "pairwise_sum")
    assert_bits(0.0 + ours, np.sum(buf[start : start + n]), "0.0 + pairwise_sum")


@given(data=padded())
def test_prefix_only_is_read(data):
    buf, start, n = data
    window = buf[start:]  # values first, NaN bait after n
    assert_bits(array_sum(window, n), np.sum(window[:n]), "array_sum prefix")
    if n:
        assert_bits(array_mean(window, n), window[:n].mean(), "array_mean prefix")
        scratch = np.full(n + 2, np.nan)
        assert_bits(population_variance(window, n, scratch), np.var(window[:n]), "population_variance prefix")


@given(values=float_arrays())
def test_array_mean_matches_numpy(values):
    n = values.size
    ours = array_mean(values, n)
    assert_bits(ours, values.mean(), "array_mean")
    assert_close_twin(ours, naive.array_mean(values.tolist()), "array_mean")


@given(values=float_arrays())
def test_population_variance_matches_numpy(values):
    n = values.size
    scratch = np.empty(n, np.float64)
    ours = population_variance(values, n, scratch)
    assert_bits(ours, np.var(values), "population_variance")
    assert_close_twin(ours, naive.population_variance(values.tolist()), "population_variance")


@given(values=float_arrays(reward_floats))
def test_statistics_of_everyday_rewards(values):
    """Moderate rewards: no overflow anywhere, results must still be exact."""
    n = values.size
    assert_bits(array_sum(values, n), values.sum(), "array_sum")
    assert_bits(array_mean(values, n), values.mean(), "array_mean")
    assert_bits(population_variance(values, n, np.empty(n)), np.var(values), "population_variance")


@st.composite
def one_scale_arrays(draw):
    """Values of similar magnitude 2**e, e anywhere from subnormal to 2**500."""
    base = draw(float_arrays(st.floats(-1.0, 1.0, allow_nan=False)))
    exponent = draw(st.integers(-1074, 500))
    return base * np.ldexp(1.0, exponent)


@given(values=st.one_of(float_arrays(wide_safe_floats), one_scale_arrays()))
def test_statistics_over_wide_finite_ranges(values):
    n = values.size
    assert_bits(array_sum(values, n), values.sum(), "array_sum")
    assert_bits(array_mean(values, n), values.mean(), "array_mean")
    ours = population_variance(values, n, np.empty(n))
    assert_bits(ours, np.var(values), "population_variance")
    assert_close_twin(ours, naive.population_variance(values.tolist()), "population_variance")


def test_signed_zeros():
    for values in ([-0.0], [-0.0] * 9, [-0.0] * 200, [0.0, -0.0]):
        a = np.array(values)
        assert_bits(array_sum(a, a.size), np.sum(a), f"sum {values[:3]}")
        assert_bits(array_mean(a, a.size), a.mean(), f"mean {values[:3]}")
        assert_bits(population_variance(a, a.size, np.empty(a.size)), np.var(a), f"var {values[:3]}")


def test_empty_mean_and_variance_are_nan_like_numpy():
    a = np.empty(0)
    assert_bits(array_mean(a, 0), a.mean(), "mean of nothing")
    assert_bits(population_variance(a, 0, np.empty(0)), np.var(a), "var of nothing")


def test_pairwise_order_is_numpy_not_sequential():
    # A case where naive left-to-right summation differs from numpy's
    # pairwise order; guards against the kernel degrading to a plain loop.
    a = np.array([1.0] + [1e-16] * 200 + [-1.0] * 0)
    seq = 0.0
    for v in a:
        seq += v
    assert bits(np.sum(a)) != bits(seq)
    assert_bits(array_sum(a, a.size), np.sum(a), "sum")


# ---------------------------------------------------------------------------
# precision and posterior fits

variances = st.one_of(
    st.sampled_from([0.0, TINY, 1e-300, 1.0, MAX_FLOAT, math.inf, math.nan]),
    st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
)


def zeus_precision(variance):
    """zeus's ``np.inf if variance == 0.0 else np.reciprocal(variance)``."""
    variance = np.float64(variance)
    return np.inf if variance == 0.0 else np.reciprocal(variance)


@given(variance=variances)
def test_precision_from_variance(variance):
    ours = precision_from_variance(variance)
    assert_bits(ours, zeus_precision(variance), "precision_from_variance")
    assert_close_twin(ours, naive.precision_from_variance(variance), "precision_from_variance")


@given(values=float_arrays(reward_floats))
def test_precision_of_a_window(values):
    n = values.size
    ours = precision_from_variance(population_variance(values, n, np.empty(n)))
    assert_bits(ours, zeus_precision(np.var(values)), "precision of np.var")


reward_precisions = st.one_of(
    st.sampled_from([0.0, 1.0, math.inf, 1e-300, 1e300]),
    st.floats(min_value=0.0, max_value=1e12, allow_nan=False),
    variances.map(lambda v: float(zeus_precision(v))),
)
prior_means = st.one_of(st.sampled_from([0.0, -0.0, 1.0]), st.floats(-1e6, 1e6, allow_nan=False))
prior_precisions = st.one_of(st.sampled_from([0.0, 1.0, 1e-6]), st.floats(min_value=0.0, max_value=1e6, allow_nan=False))


def reference_fit(mean, prec, rewards: np.ndarray, reward_prec):
    """zeus 0.16 ``GaussianTS.fit_arm`` after its optional reset, verbatim."""
    if len(rewards) == 0:
        return mean, prec
    if reward_prec == np.inf:
        new_prec = np.inf
        new_mean = rewards.mean()
    else:
        new_prec = prec + len(rewards) * reward_prec
        new_mean = (prec * mean + reward_prec * rewards.sum()) / new_prec
    return new_mean, new_prec


@given(
    rewards=float_arrays(reward_floats),
    reward_precision=reward_precisions,
    prior_mean=prior_means,
    prior_precision=prior_precisions,
)
def test_fit_reset_matches_reference(rewards, reward_precision, prior_mean, prior_precision):
    n = rewards.size
    buf = np.concatenate([rewards, [np.nan, 1e300]])  # only rewards[:n] may be read
    mean, prec = fit_reset(buf, n, reward_precision, prior_mean, prior_precision)
    ref_mean, ref_prec = reference_fit(prior_mean, prior_precision, rewards, reward_precision)
    assert_bits(mean, ref_mean, "posterior mean")
    assert_bits(prec, ref_prec, "posterior precision")
    twin_mean, twin_prec = naive.fit_reset(rewards.tolist(), reward_precision, prior_mean, prior_precision)
    assert_close_twin(mean, twin_mean, "posterior mean")
    assert_close_twin(prec, twin_prec, "posterior precision")


@given(
    start_mean=prior_means,
    start_prec=prior_precisions,
    rewards=st.lists(reward_floats, max_size=30),
    reward_precision=reward_precisions,
)
def test_fit_increment_chain_matches_reference(start_mean, start_prec, rewards, reward_precision):
    mean, prec = start_mean, start_prec
    ref_mean, ref_prec = start_mean, start_prec
    twin_mean, twin_prec = start_mean, start_prec
    for i, reward in enumerate(rewards):
        mean, prec = fit_increment(mean, prec, reward, reward_precision)
        ref_mean, ref_prec = reference_fit(ref_mean, ref_prec, np.array([reward]), reward_precision)
        twin_mean, twin_prec = naive.fit_increment(twin_mean, twin_prec, reward, reward_precision)
        assert_bits(mean, ref_mean, f"mean after reward {i}")
        assert_bits(prec, ref_prec, f"precision after reward {i}")
        assert_close_twin(mean, twin_mean, f"mean after reward {i}")
        assert_close_twin(prec, twin_prec, f"precision after reward {i}")


@pytest.mark.reference
@given(
    history=st.lists(st.lists(reward_floats, max_size=40), min_size=1, max_size=5),
    resets=st.lists(st.booleans(), min_size=5, max_size=5),
    learn_precision=st.booleans(),
    fixed_precision=reward_precisions,
    prior_mean=prior_means,
    prior_precision=prior_precisions,
)
def test_fits_match_installed_zeus(history, resets, learn_precision, fixed_precision, prior_mean, prior_precision):
    """Drive the real zeus GaussianTS.fit_arm through rounds of reset and incremental fits."""
    mab_module = pytest.importorskip("zeus._legacy.policy.mab")
    mab = mab_module.GaussianTS(
        arms=[0],
        reward_precision=fixed_precision,
        prior_mean=prior_mean,
        prior_precision=prior_precision,
        verbose=False,
    )
    mean, prec = prior_mean, prior_precision
    seen: list[float] = []
    for rewards, reset in zip(history, resets):
        seen_before = len(seen)
        seen.extend(rewards)
        if learn_precision:
            # as the legacy optimizer does: re-estimate from the whole history, then refit
            window = np.array(seen)
            n = window.size
            if n:
                var_kernel = population_variance(window, n, np.empty(n))
                mab.arm_reward_prec[0] = zeus_precision(np.var(window))
                assert_bits(precision_from_variance(var_kernel), mab.arm_reward_prec[0], "learned precision")
            mab.fit_arm(0, window, reset=True)
            mean, prec = fit_reset(window, n, float(mab.arm_reward_prec[0]), prior_mean, prior_precision)
        elif reset:
            arr = np.array(rewards)
            mab.fit_arm(0, arr, reset=True)
            mean, prec = fit_reset(arr, arr.size, fixed_precision, prior_mean, prior_precision)
        else:
            for reward in seen[seen_before:]:
                mab.fit_arm(0, np.array([reward]), reset=False)
                mean, prec = fit_increment(mean, prec, reward, fixed_precision)
        assert_bits(mean, mab.arm_param_mean[0], "mean vs zeus")
        assert_bits(prec, mab.arm_param_prec[0], "precision vs zeus")

"""GTSBatchSizeOptimizer: kernels vs the naive model, batch == scalar loop, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from naive_gts import NaiveGTS

from banditfleet import GTSBatchSizeOptimizer
from banditfleet.errors import (
    BanditFleetError,
    ConfigurationError,
    InvalidArmsError,
    InvalidObservationError,
    JobConflictError,
    UnknownBatchSizeError,
    UnknownJobError,
)

BATCH_SIZES = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024]


@st.composite
def configs(draw):
    learn = draw(st.booleans())
    cfg = dict(
        learn_reward_precision=learn,
        reward_precision=0.0 if learn else draw(st.sampled_from([0.0, 0.01, 1.0, 3.5, math.inf])),
        prior_mean=draw(st.floats(-500, 500)),
        prior_precision=draw(st.sampled_from([0.0, 1e-4, 0.5, 2.0])),
        num_exploration=draw(st.integers(0, 3)),
        seed=draw(st.integers(0, 2**64 - 1)),
    )
    if not learn and cfg["reward_precision"] == 0.0 and cfg["prior_precision"] == 0.0:
        cfg["prior_precision"] = 1.0
    return cfg


@st.composite
def fleets(draw, max_jobs=5):
    n = draw(st.integers(1, max_jobs))
    return [draw(st.permutations(BATCH_SIZES).map(lambda p: p[: draw(st.integers(1, len(BATCH_SIZES)))])) for _ in range(n)]


def _state(opt):
    """Every array of the optimizer's store, copied, for before/after comparison."""
    s = opt._store
    arrays = {k: v.copy() for k, v in vars(s).items() if isinstance(v, np.ndarray)}
    arrays.update({f"stream_{i}": a.copy() for i, a in enumerate(s.streams)})
    return arrays, s.n_jobs, s.n_arms


def _assert_same_state(before, after):
    (a, ja, na), (b, jb, nb) = before, after
    assert (ja, na) == (jb, nb)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


@given(cfg=configs(), arms=fleets(), data=st.data())
def test_matches_naive_model(cfg, arms, data):
    ours = GTSBatchSizeOptimizer(verbose=False, **cfg)
    naive = NaiveGTS(cfg["learn_reward_precision"], cfg["reward_precision"], cfg["prior_mean"], cfg["prior_precision"], cfg["num_exploration"], cfg["seed"])
    for j, a in enumerate(arms):
        ours.register_job(j, a)
        naive.register(j, a)
    for _ in range(data.draw(st.integers(1, 40))):
        j = data.draw(st.integers(0, len(arms) - 1))
        bs = ours.predict(j)
        assert bs == naive.predict(j)
        cost = data.draw(st.floats(0.0, 1e6))
        ours.observe(j, bs, cost)
        naive.observe(j, bs, cost)
        for arm, state in ours.arm_state(j).items():
            assert state.posterior_mean == naive.jobs[j]["mean"][arm]
            assert state.posterior_precision == naive.jobs[j]["prec"][arm]
            assert state.observations == naive.jobs[j]["count"][arm]


@given(cfg=configs(), arms=fleets(), data=st.data())
def test_batch_equals_loop_of_scalar_calls(cfg, arms, data):
    batch = GTSBatchSizeOptimizer(verbose=False, **cfg)
    loop = GTSBatchSizeOptimizer(verbose=False, **cfg)
    keys = [("job", j) for j in range(len(arms))]
    rows = batch.register_jobs(keys, arms)
    for k, a in zip(keys, arms):
        loop.register_job(k, a)
    for _ in range(data.draw(st.integers(1, 8))):
        # Repeated jobs in one batch must behave like consecutive calls.
        idx = data.draw(st.lists(st.integers(0, len(arms) - 1), min_size=1, max_size=12))
        use_rows = data.draw(st.booleans())
        jobs = rows[idx] if use_rows else [keys[i] for i in idx]
        got = batch.predict_many(jobs)
        want = [loop.predict(keys[i]) for i in idx]
        assert got.dtype == np.int64
        assert got.tolist() == want
        costs = data.draw(st.lists(st.floats(0.0, 1e4), min_size=len(idx), max_size=len(idx)))
        batch.observe_many(jobs, got, costs)
        for i, bs, c in zip(idx, want, costs):
            loop.observe(keys[i], bs, c)
    for k in keys:
        assert batch.arm_state(k) == loop.arm_state(k)


def _fleet(learn=True):
    opt = GTSBatchSizeOptimizer(learn_reward_precision=learn, reward_precision=1.0, verbose=False)
    opt.register_jobs(["a", "b", "c"], [[8, 16, 32], [32, 64], [128]])
    rows = opt.rows(["a", "b", "c"])
    for _ in range(3):
        opt.observe_many(rows, opt.predict_many(rows), [10.0, 20.0, 30.0])
    return opt


@pytest.mark.parametrize("learn", [True, False])
@pytest.mark.parametrize(
    "jobs, batch_sizes, costs, error, words",
    [
        (["a", "b"], [8, 32], [1.0, float("nan")], InvalidObservationError, ["'b'", "nan"]),
        (["a", "b"], [8, 32], [float("inf"), 1.0], InvalidObservationError, ["'a'", "inf"]),
        (["a", "b"], [8, 32], [1.0, -float("inf")], InvalidObservationError, ["'b'", "-inf"]),
        (["a", "zz"], [8, 32], [1.0, 2.0], UnknownJobError, ["'zz'"]),
        (["a", "b"], [8, 33], [1.0, 2.0], UnknownBatchSizeError, ["'b'", "33"]),
        (["a", "b"], [8, 32], [1.0], InvalidObservationError, ["expected 2"]),
        (["a", "b"], [8], [1.0, 2.0], InvalidObservationError, ["expected 2"]),
        (["a", "b"], ["8", "32"], [1.0, 2.0], InvalidObservationError, ["'a'", "'8'", "integer"]),
        (["a", "b"], [8.5, 32], [1.0, 2.0], InvalidObservationError, ["'a'", "8.5", "integer"]),
        (["a", "b"], [8, 32], ["x", 1.0], InvalidObservationError, ["'a'", "'x'", "real"]),
    ],
)
def test_bad_observation_batches_change_nothing(learn, jobs, batch_sizes, costs, error, words):
    opt = _fleet(learn)
    before = _state(opt)
    with pytest.raises(error) as info:
        opt.observe_many(jobs, batch_sizes, costs)
    assert isinstance(info.value, BanditFleetError)
    for w in words:
        assert w in str(info.value)
    _assert_same_state(before, _state(opt))


def test_bad_rows_and_keys_change_nothing():
    opt = _fleet()
    before = _state(opt)
    for jobs in (np.array([0, 3]), np.array([-1]), ["nope"], [["unhashable"]]):
        with pytest.raises(UnknownJobError):
            opt.predict_many(jobs)
    with pytest.raises(UnknownJobError, match="nope"):
        opt.predict("nope")
    with pytest.raises(KeyError):  # reference-compatible: a KeyError subclass
        opt.observe("nope", 8, 1.0)
    _assert_same_state(before, _state(opt))


@pytest.mark.parametrize(
    "arms, error, words",
    [
        ([], InvalidArmsError, ["'new'", "empty"]),
        ([8, 16, 8], InvalidArmsError, ["'new'", "8", "more than once"]),
        ([8, 0], InvalidArmsError, ["'new'", "0"]),
        ([8, -16], InvalidArmsError, ["'new'", "-16"]),
        ([8, 1.5], InvalidArmsError, ["'new'", "1.5"]),
        ([8, "16"], InvalidArmsError, ["'new'", "16"]),
    ],
)
def test_bad_arm_lists_are_refused_whole(arms, error, words):
    opt = _fleet()
    before = _state(opt)
    with pytest.raises(error) as info:
        opt.register_jobs(["fine", "new"], [[8, 16], arms])
    for w in words:
        assert w in str(info.value)
    _assert_same_state(before, _state(opt))
    assert "fine" not in opt


def test_reregistration_same_is_noop_different_is_conflict():
    opt = _fleet()
    before = _state(opt)
    opt.register_job("a", [8, 16, 32])
    _assert_same_state(before, _state(opt))
    with pytest.raises(JobConflictError, match="'a'"):
        opt.register_job("a", [8, 16])
    with pytest.raises(JobConflictError, match="'a'"):
        opt.register_job("a", [16, 8, 32])  # order decides exploration: a different job
    _assert_same_state(before, _state(opt))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(learn_reward_precision=False, reward_precision=0.0, prior_precision=0.0),
        dict(learn_reward_precision=True, prior_precision=-1.0),
        dict(learn_reward_precision=True, prior_mean=float("nan")),
        dict(learn_reward_precision=True, num_exploration=-1),
        dict(learn_reward_precision=True, seed=-5),
        dict(learn_reward_precision=True, seed=2**64),
    ],
)
def test_configurations_that_cannot_work_are_refused(kwargs):
    with pytest.raises(ConfigurationError):
        GTSBatchSizeOptimizer(verbose=False, **kwargs)


def test_million_job_registration_and_rows():
    opt = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    n = 1_000_000
    arms = np.tile(np.array([8, 16, 32, 64, 128, 256, 512, 1024]), (n, 1))
    rows = opt.register_jobs(range(n), arms)
    assert rows.array.tolist() == list(range(n))
    assert opt.rows([5, n - 1, 0]).array.tolist() == [5, n - 1, 0]
    assert opt.batch_sizes_of(n - 1) == arms[0].tolist()
    # Every job starts from the same seeded stream, like the reference.
    first = opt.predict_many(np.array([0, n - 1]))
    assert first[0] == first[1] == np.random.default_rng(123456).choice(arms[0], 8, replace=False)[0]


def test_per_job_seeds_equal_separate_optimizers():
    seeds = [0, 7, 2**40 + 3, 2**64 - 1]
    fleet = GTSBatchSizeOptimizer(learn_reward_precision=True, verbose=False)
    rows = fleet.register_jobs(["a", "b", "c", "d"], [[8, 16, 32]] * 4, seeds=seeds)
    solos = []
    for k, seed in zip("abcd", seeds):
        solo = GTSBatchSizeOptimizer(learn_reward_precision=True, seed=seed, verbose=False)
        solo.register_job(k, [8, 16, 32])
        solos.append(solo)
    rng = np.random.default_rng(0)
    for _ in range(10):
        got = fleet.predict_many(rows)
        want = [s.predict(k) for s, k in zip(solos, "abcd")]
        assert got.tolist() == want
        costs = rng.gamma(2.0, 5.0, size=4)
        fleet.observe_many(rows, got, costs)
        for s, k, b, c in zip(solos, "abcd", want, costs):
            s.observe(k, b, c)
    with pytest.raises(ConfigurationError):
        fleet.register_jobs(["e"], [[8]], seeds=[-1])
    with pytest.raises(ConfigurationError):
        fleet.register_jobs(["e", "f"], [[8], [8]], seeds=[1])
    assert "e" not in fleet

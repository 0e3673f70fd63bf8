"""Differential tests: the pruning policy against the installed reference (zeus==0.16.0).

A small trace simulator drives ``zeus._legacy.policy.optimizer.PruningGTSBatchSizeOptimizer``
and ours side by side on the same fleet: every prediction must be identical,
and every Thompson-sampling arm's posterior (mean, precision, reward precision,
observation count) and random stream bit-identical. With concurrency the
simulator behaves like the reference's trace simulator: while runs of a job are
in flight, further submissions use the cheapest converged batch size seen so
far instead of asking the optimizer, and runs finish in any order, so pruning
sometimes gets results it did not ask for. Fleets where the reference itself
breaks (a pruning round in which nothing reaches the target) must make ours
raise :class:`PruningExhaustedError` at the same call; such a job then retires.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("zeus", reason="differential tests need the reference package zeus==0.16.0")

from zeus._legacy.job import Job as ZeusJob  # noqa: E402
from zeus._legacy.policy.optimizer import PruningExploreManager as RefManager  # noqa: E402
from zeus._legacy.policy.optimizer import PruningGTSBatchSizeOptimizer as RefOptimizer  # noqa: E402

from banditfleet import PruningExploreManager, PruningGTSBatchSizeOptimizer  # noqa: E402
from banditfleet.errors import PruningExhaustedError  # noqa: E402
from banditfleet.rng_state import export_state  # noqa: E402

pytestmark = pytest.mark.reference

BATCH_SIZES = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
COSTS = [1.0, 2.0, 2.5, 3.0, 10.0]


@contextlib.contextmanager
def quiet():
    """The reference prints even with verbose=False in places, and numpy warns on 1/0."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _outcome(fn, *args):
    try:
        with quiet():
            return ("ok", fn(*args))
    except StopIteration as stop:
        return ("stop", stop.value)
    except Exception as err:  # noqa: BLE001 - the reference raises assorted errors
        return ("error", err)


# ---------------------------------------------------------------------------
# PruningExploreManager


def _observable(m):
    return m.expecting, m.default, list(m.batch_sizes)


@settings(max_examples=150)
@given(
    arms=st.lists(st.sampled_from(BATCH_SIZES), min_size=1, max_size=9, unique=True),
    rounds=st.integers(1, 3),
    data=st.data(),
)
def test_manager_matches_reference(arms, rounds, data):
    default = data.draw(st.sampled_from(arms))
    ref = RefManager(list(arms), default, rounds)
    ours = PruningExploreManager(list(arms), default, rounds)
    assert _observable(ours) == _observable(ref)
    for _ in range(3 * len(arms) * rounds + 2):
        want = _outcome(ref.next_batch_size)
        got = _outcome(ours.next_batch_size)
        if want[0] == "error":
            # The reference's generator dies on a round where nothing reached.
            assert isinstance(want[1], ValueError)
            assert got[0] == "error" and isinstance(got[1], PruningExhaustedError)
            return
        assert got == want
        if want[0] == "stop":
            assert _observable(ours) == _observable(ref)
            return
        assert _observable(ours) == _observable(ref)
        cost = data.draw(st.sampled_from(COSTS))
        reached = data.draw(st.integers(0, 4).map(lambda x: x > 0))
        ref.report_batch_size_result(want[1], cost, reached)
        ours.report_batch_size_result(want[1], cost, reached)
        assert _observable(ours) == _observable(ref)
    raise AssertionError("pruning did not end")


# ---------------------------------------------------------------------------
# PruningGTSBatchSizeOptimizer


def _compare_job(ref, ours, job, predicted):
    mab = ref.mabs.get(job)
    if mab is None:
        assert ours.survivors(job) is None
        if predicted:  # before the first predict the reference shows its default
            assert ours.pruning_state(job).expecting == ref.exp_manager[job].expecting
        return
    assert ours.survivors(job) == list(mab.arms)
    state = ours.arm_state(job)
    for arm in mab.arms:
        got = state[arm]
        assert got.posterior_mean == mab.arm_param_mean[arm], arm
        assert got.posterior_precision == mab.arm_param_prec[arm], arm
        assert got.reward_precision == mab.arm_reward_prec[arm], arm
        assert got.observations == mab.arm_num_observations[arm], arm
    assert export_state(ours._store.streams, int(ours.rows([job]).array[0])) == mab.rng.bit_generator.state


@st.composite
def scenarios(draw):
    n_jobs = draw(st.sampled_from([1, 2, 3, 4]))
    jobs = []
    for i in range(n_jobs):
        arms = draw(st.lists(st.sampled_from(BATCH_SIZES), min_size=1, max_size=8, unique=True))
        jobs.append((arms, draw(st.sampled_from(arms))))
    return dict(
        cfg=dict(
            prior_mean=draw(st.sampled_from([0.0, -50.0, 10.5])),
            prior_precision=draw(st.sampled_from([0.0, 0.0, 1e-3, 0.1])),
            window_size=draw(st.sampled_from([0, 0, 2, 3, 4, 8])),
            concurrency=draw(st.booleans()),
            seed=draw(st.one_of(st.sampled_from([123456, 0, 2**64 - 1]), st.integers(0, 2**64 - 1))),
        ),
        jobs=jobs,
        fail_default=draw(st.sampled_from([0.0, 0.02, 0.1])),
        fail_other=draw(st.sampled_from([0.0, 0.2, 0.4, 0.7])),
        max_in_flight=draw(st.integers(1, 4)),
        steps=draw(st.sampled_from([60, 150, 300])),
        rng_seed=draw(st.integers(0, 2**32 - 1)),
    )


def run_scenario(sc):
    """Drive both optimizers through one simulated trace; returns coverage counters."""
    cfg = sc["cfg"]
    rng = np.random.default_rng(sc["rng_seed"])
    with quiet():
        ref = RefOptimizer(verbose=False, **cfg)
    ours = PruningGTSBatchSizeOptimizer(verbose=False, **cfg)
    sims = []
    for i, (arms, default) in enumerate(sc["jobs"]):
        job = ZeusJob("data", f"net{i}", "adam", 0.5, 10, default_bs=default)
        given = list(rng.permutation(arms).tolist())  # the reference sorts them
        with quiet():
            ref.register_job(job, given)
        ours.register_job(job, given)
        fail = {bs: (sc["fail_default"] if bs == default else sc["fail_other"]) for bs in arms}
        base = {bs: float(rng.uniform(1.0, 100.0)) for bs in arms}
        sims.append(dict(job=job, fail=fail, base=base, in_flight=[], best_bs=default, min_cost=np.inf, alive=True, predicted=False))
    stats = dict(predictions=0, thompson=0, exhausted=0, unasked=0, best_known=0)
    for _ in range(sc["steps"]):
        sim = sims[int(rng.integers(len(sims)))]
        if not sim["alive"]:
            continue
        job = sim["job"]
        finish = sim["in_flight"] and (
            not cfg["concurrency"] or len(sim["in_flight"]) >= sc["max_in_flight"] or rng.random() < 0.5
        )
        if finish:
            bs = sim["in_flight"].pop(int(rng.integers(len(sim["in_flight"]))))
            reached = bool(rng.random() >= sim["fail"][bs])
            cost = sim["base"][bs] * float(rng.uniform(0.8, 1.25))
            if rng.random() < 0.3:
                cost = float(round(cost))  # equal costs happen
            if job not in ref.mabs and ref.exp_manager[job].expecting != bs:
                stats["unasked"] += 1
            with quiet():
                ref.observe(job, bs, cost, reached)
            ours.observe(job, bs, cost, reached)
            if reached and sim["min_cost"] > cost:
                sim["min_cost"], sim["best_bs"] = cost, bs
        elif sim["in_flight"]:
            # Concurrent submission: the simulator uses the best known batch size.
            bs = sim["best_bs"]
            if ours.survivors(job) is None and ours.pruning_state(job).expecting:
                assert ours.predict(job) == bs
                stats["best_known"] += 1
            sim["in_flight"].append(bs)
        else:
            want = _outcome(ref.predict, job)
            got = _outcome(ours.predict, job)
            if want[0] == "error":
                assert isinstance(want[1], ValueError), want
                assert got[0] == "error" and isinstance(got[1], PruningExhaustedError), got
                sim["alive"] = False
                stats["exhausted"] += 1
                continue
            assert got == want
            stats["predictions"] += 1
            sim["predicted"] = True
            sim["in_flight"].append(want[1])
        _compare_job(ref, ours, job, sim["predicted"])
    for sim in sims:
        if sim["alive"]:
            _compare_job(ref, ours, sim["job"], sim["predicted"])
        stats["thompson"] += sim["job"] in ref.mabs
    return stats


@settings(max_examples=200)
@given(sc=scenarios())
def test_optimizer_matches_reference(sc):
    run_scenario(sc)


def test_scenarios_cover_thompson_sampling_failures_and_concurrency():
    """The generated traces really reach the interesting states."""
    totals = dict(predictions=0, thompson=0, exhausted=0, unasked=0, best_known=0)
    jobs = 0
    rng = np.random.default_rng(2024)
    for k in range(30):
        n_jobs = 1 + k % 3
        sc = dict(
            cfg=dict(prior_mean=0.0, prior_precision=0.0, window_size=[0, 2, 5][k % 3], concurrency=k % 2 == 1, seed=123456 + k),
            jobs=[],
            fail_default=0.02,
            fail_other=[0.2, 0.4][k % 2],
            max_in_flight=3,
            steps=200,
            rng_seed=k,
        )
        for _ in range(n_jobs):
            arms = rng.choice(BATCH_SIZES, int(rng.integers(2, 8)), replace=False).tolist()
            sc["jobs"].append((arms, arms[int(rng.integers(len(arms)))]))
        jobs += n_jobs
        for key, value in run_scenario(sc).items():
            totals[key] += value
    assert totals["thompson"] >= jobs // 2, totals
    assert totals["exhausted"] >= 1, totals
    assert totals["unasked"] >= 10, totals
    assert totals["best_known"] >= 10, totals


@given(
    cfg=st.fixed_dictionaries(
        dict(
            prior_mean=st.sampled_from([0.0, -3.0]),
            prior_precision=st.sampled_from([0.0, 0.01]),
            window_size=st.sampled_from([0, 3]),
            seed=st.integers(0, 2**64 - 1),
        )
    ),
    n_jobs=st.sampled_from([2, 5, 12]),
    rng_seed=st.integers(0, 2**32 - 1),
)
def test_fleet_batches_match_reference(cfg, n_jobs, rng_seed):
    """Whole-fleet predict_many / observe_many ticks equal the reference's per-job calls."""
    rng = np.random.default_rng(rng_seed)
    with quiet():
        ref = RefOptimizer(verbose=False, **cfg)
    ours = PruningGTSBatchSizeOptimizer(verbose=False, **cfg)
    jobs, fails = [], []
    arm_lists, defaults = [], []
    for i in range(n_jobs):
        arms = rng.choice(BATCH_SIZES, int(rng.integers(1, 7)), replace=False).tolist()
        default = arms[int(rng.integers(len(arms)))]
        job = ZeusJob("data", f"net{i}", "sgd", 0.9, 5, default_bs=default)
        with quiet():
            ref.register_job(job, arms)
        jobs.append(job)
        arm_lists.append(arms)
        defaults.append(default)
        fails.append({bs: 0.0 if bs == default else 0.3 for bs in arms})
    rows = ours.register_jobs(jobs, arm_lists)
    assert [ours.batch_sizes_of(j) for j in jobs] == [sorted(a) for a in arm_lists]
    alive = np.ones(n_jobs, bool)
    for _ in range(25):
        tick = np.flatnonzero(alive & (rng.random(n_jobs) < 0.7))
        if tick.size == 0:
            continue
        want = []
        for i in tick:
            out = _outcome(ref.predict, jobs[i])
            if out[0] == "error":
                alive[i] = False
            want.append(out)
        if not all(o[0] == "ok" for o in want):
            with pytest.raises(PruningExhaustedError):
                ours.predict_many(rows[tick])
            # Retire the jobs the reference broke; replay the others one by one.
            kept = [(i, o[1]) for i, o in zip(tick, want) if o[0] == "ok"]
            got = [ours.predict(jobs[i]) for i, _ in kept]
            assert got == [bs for _, bs in kept]
            tick = np.array([i for i, _ in kept], np.int64)
            bss = np.array([bs for _, bs in kept], np.int64)
        else:
            bss = ours.predict_many(rows[tick])
            assert bss.tolist() == [o[1] for o in want]
        if tick.size == 0:
            continue
        costs = rng.uniform(1.0, 50.0, tick.size)
        reached = np.array([rng.random() >= fails[i][int(b)] for i, b in zip(tick, bss)])
        with quiet():
            for i, b, c, r in zip(tick, bss, costs, reached):
                ref.observe(jobs[i], int(b), float(c), bool(r))
        ours.observe_many(rows[tick], bss, costs, reached)
    for i, job in enumerate(jobs):
        if alive[i]:
            _compare_job(ref, ours, job, True)

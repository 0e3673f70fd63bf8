"""GTSBatchSizeOptimizer side by side with the installed reference, zeus==0.16.0."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("zeus", reason="the reference zeus==0.16.0 is not installed (pip install '.[test]')")
from zeus._legacy.job import Job as RefJob  # noqa: E402
from zeus._legacy.policy.optimizer import GTSBatchSizeOptimizer as RefGTS  # noqa: E402

from banditfleet import GTSBatchSizeOptimizer, Job  # noqa: E402
from test_gts import configs, fleets  # noqa: E402


@contextlib.contextmanager
def _quiet():
    # The reference prints even with verbose=False in places and warns on cold arms.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _same(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


@given(cfg=configs(), arms=fleets(max_jobs=6), data=st.data())
def test_decisions_and_posteriors_identical(cfg, arms, data):
    with _quiet():
        ref = RefGTS(verbose=False, **cfg)
    ours = GTSBatchSizeOptimizer(verbose=False, **cfg)
    keys = [RefJob("cifar100", f"net{j}", "adam", 0.5, 10, default_bs=a[0]) for j, a in enumerate(arms)]
    for k, a in zip(keys, arms):
        with _quiet():
            ref.register_job(k, list(a))
        ours.register_job(k, list(a))
    rows = ours.rows(keys)
    for _ in range(data.draw(st.integers(1, 12))):
        idx = data.draw(st.lists(st.integers(0, len(arms) - 1), min_size=1, max_size=8))
        with _quiet():
            want = [ref.predict(keys[i]) for i in idx]
        got = ours.predict_many(rows[idx])
        assert got.tolist() == [int(w) for w in want]
        costs = data.draw(st.lists(st.floats(0.0, 1e5), min_size=len(idx), max_size=len(idx)))
        with _quiet():
            for i, bs, c in zip(idx, want, costs):
                ref.observe(keys[i], bs, c)
        ours.observe_many(rows[idx], got, costs)
        for i in set(idx):
            mab = ref.mabs[keys[i]]
            for arm, state in ours.arm_state(keys[i]).items():
                assert _same(state.posterior_mean, float(mab.arm_param_mean[arm]))
                assert state.posterior_precision == float(mab.arm_param_prec[arm])
                assert state.reward_precision == float(mab.arm_reward_prec[arm])
                assert state.observations == mab.arm_num_observations[arm]


def test_reference_code_runs_unchanged_after_import_swap():
    """The reference's own calling pattern, with banditfleet's classes swapped in."""
    results = []
    for module in ("zeus._legacy.policy.optimizer", "banditfleet"):
        mod = __import__(module, fromlist=["GTSBatchSizeOptimizer"])
        job_cls = RefJob if module.startswith("zeus") else Job
        job = job_cls("imagenet", "resnet50", "adadelta", 0.65, 100, default_bs=256)
        with _quiet():
            bso = mod.GTSBatchSizeOptimizer(learn_reward_precision=True, seed=7, verbose=False)
            bso.register_job(job, [64, 128, 256, 512, 1024])
            trace = []
            for r in range(30):
                bs = bso.predict(job)
                bso.observe(job, bs, cost=1000.0 + abs(bs - 200) * 3.0 + 25.0 * np.sin(r), converged=True)
                trace.append(int(bs))
        results.append(trace)
    assert results[0] == results[1]


def test_job_hash_and_equality_follow_the_reference():
    fields = ("cifar10", "resnet18", "sgd", 0.9, 50, 128, 0.1, "/tmp")
    ours_a, ours_b = Job(*fields, command=["a"]), Job(*fields, command=["b"])
    ref_a = RefJob(*fields, command=["a"])
    assert ours_a == ours_b and hash(ours_a) == hash(ours_b)
    assert str(ours_a) == str(ref_a)
    assert ours_a.to_logdir() == ref_a.to_logdir()
    assert ours_a.scale_lr(256) == ref_a.scale_lr(256)
    assert Job(*fields[:5]) != Job(*fields[:4], 60)

"""Thompson decisions at exact ties, where a last-ulp change of a draw flips the decision.

Random tests almost never put two sampled rewards within an ulp of each other,
so a kernel that computed the sampling scale as ``1/sqrt(p)`` instead of the
reference's ``sqrt(1/p)`` would pass them (docs/testing.md, mutation
``thompson-scale-precision``). Here the scenario is built so that it cannot:
arm A keeps varied costs (a finite posterior precision ``p``), arm B always
costs the same (its learned reward precision, and so its posterior precision,
is infinite: its draw is exactly its mean). B's cost is then chosen, from the
reference's own stream, so that B's draw equals A's draw under one rounding
of the scale and not under the other. The reference decides; banditfleet must
decide the same.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

pytest.importorskip("zeus", reason="the reference zeus==0.16.0 is not installed (pip install '.[test]')")
from zeus._legacy.policy.optimizer import GTSBatchSizeOptimizer as RefGTS  # noqa: E402

from banditfleet import GTSBatchSizeOptimizer  # noqa: E402

ARMS = [64, 128]  # slot order = arm order: A first, so A wins an exact tie


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _run(optimizer, seed_costs_a, cost_b, predicts_before):
    """Observe A's costs and B's constant cost, make ``predicts_before`` predictions, and
    return the optimizer ready for the decisive one."""
    with _quiet():
        optimizer.register_job("job", ARMS)
        for c in seed_costs_a:
            optimizer.observe("job", ARMS[0], c)
        for _ in range(2):
            optimizer.observe("job", ARMS[1], cost_b)
        for _ in range(predicts_before):
            optimizer.predict("job")
    return optimizer


def _near_tie(seed: int, costs_a: list[float], predicts_before: int):
    """B's cost that puts B's draw on A's draw under exactly one rounding of A's scale,
    with the decisions each rounding makes; ``None`` when both roundings agree."""
    ref = _run(RefGTS(learn_reward_precision=True, seed=seed, verbose=False), costs_a, 1.0, predicts_before)
    mab = ref.mabs["job"]
    mean, prec = float(mab.arm_param_mean[ARMS[0]]), float(mab.arm_param_prec[ARMS[0]])
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = mab.rng.bit_generator.state
    rng.choice(np.array(ARMS), len(ARMS), replace=False)  # the exploration pass draws first
    z = rng.standard_normal()  # A's normal
    reference_draw = mean + float(np.sqrt(np.reciprocal(prec))) * z
    other_draw = mean + (1.0 / float(np.sqrt(prec))) * z
    if reference_draw == other_draw:
        return None
    # B's draw (= -cost_b) on the larger draw: the rounding that gives the smaller one
    # loses to B, the other ties and keeps A (first maximum).
    target = max(reference_draw, other_draw)
    return -target, (ARMS[0] if reference_draw == target else ARMS[1])


def _scenarios():
    found = []
    rng = np.random.default_rng(2024)
    while len(found) < 5:
        seed = int(rng.integers(0, 2**31))
        costs = [float(c) for c in rng.uniform(100.0, 200.0, 3).round(3)]
        before = int(rng.integers(0, 3))
        tie = _near_tie(seed, costs, before)
        if tie is not None:
            found.append((seed, costs, before, *tie))
    return found


@pytest.mark.parametrize("seed,costs_a,before,cost_b,reference_pick", _scenarios())
def test_decision_at_an_ulp_tie_equals_the_reference(seed, costs_a, before, cost_b, reference_pick):
    ref = _run(RefGTS(learn_reward_precision=True, seed=seed, verbose=False), costs_a, cost_b, before)
    ours = _run(GTSBatchSizeOptimizer(learn_reward_precision=True, seed=seed, verbose=False), costs_a, cost_b, before)
    assert ours.arm_state("job")[ARMS[1]].posterior_precision == float("inf")  # B's draw is exactly its mean
    with _quiet():
        want = int(ref.predict("job"))
    assert want == reference_pick  # the scenario really is the constructed tie
    assert ours.predict("job") == want

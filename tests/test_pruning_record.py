"""The packed pruning record: checkpoints written before it (per-field arrays in memory,
by main's code of that time) load, continue like the reference, and save back unchanged.

``tests/data/prepacked_pruning.bfc`` was written by ``tests/data/make_prepacked_pruning.py``
with the code before the record: jobs mid-round with a pending result, one awaiting a
result, one past pruning.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np
import pytest

from banditfleet import PruningGTSBatchSizeOptimizer
from banditfleet.checkpoint import read_checkpoint

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "prepacked_pruning.bfc"


def _maker():
    spec = importlib.util.spec_from_file_location("make_prepacked_pruning", DATA / "make_prepacked_pruning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_old_checkpoint_saves_back_array_for_array(tmp_path):
    """Loading then saving changes no array of the old file (same names, dtypes, bytes)."""
    _, keys, old = read_checkpoint(FIXTURE, "PruningGTSBatchSizeOptimizer")
    opt = PruningGTSBatchSizeOptimizer.load(FIXTURE)
    opt.save(tmp_path / "again.bfc")
    _, keys2, new = read_checkpoint(tmp_path / "again.bfc", "PruningGTSBatchSizeOptimizer")
    assert keys2 == keys
    assert sorted(new) == sorted(old)
    for name in old:
        assert new[name].dtype == old[name].dtype, name
        assert new[name].tobytes() == old[name].tobytes(), name


def test_old_checkpoint_continues_like_the_reference():
    pytest.importorskip("zeus", reason="needs the reference package zeus==0.16.0")
    from zeus._legacy.job import Job as ZeusJob
    from zeus._legacy.policy.optimizer import PruningGTSBatchSizeOptimizer as RefOptimizer

    maker = _maker()
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = RefOptimizer(window_size=4, seed=17, verbose=False)
        zjobs = {}
        for job, (arms, default, _, _) in maker.JOBS.items():
            zjobs[job] = ZeusJob("data", job, "adam", 0.5, 10, default_bs=default)
            ref.register_job(zjobs[job], arms)
        rng = np.random.default_rng(42)
        awaited = maker.drive_prefix(
            None, lambda j: ref.predict(zjobs[j]), lambda j, b, c, f: ref.observe(zjobs[j], b, c, f), rng
        )
        ours = PruningGTSBatchSizeOptimizer.load(FIXTURE)
        assert ours.pruning_state("d").expecting == awaited
        assert ours.pruning_state("c").stage == "thompson"
        # Job d's awaited result first, then every job cycles on both sides.
        c = float(rng.uniform(1.0, 10.0))
        reach = {job: v[2] for job, v in maker.JOBS.items()}
        ref.observe(zjobs["d"], awaited, c, awaited <= reach["d"])
        ours.observe("d", awaited, c, awaited <= reach["d"])
        for _ in range(14):
            for job in maker.JOBS:
                want = ref.predict(zjobs[job])
                got = ours.predict(job)
                assert got == want, job
                c = float(rng.uniform(1.0, 10.0))
                ref.observe(zjobs[job], want, c, want <= reach[job])
                ours.observe(job, got, c, got <= reach[job])
        assert {ours.pruning_state(j).stage for j in maker.JOBS} == {"thompson"}

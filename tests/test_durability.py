"""save/load and journaled folders continue bit-identically, for the pruning optimizer too.

An optimizer that is saved and loaded (or journaled, closed and reopened) at
random points — mid-pruning, while results are awaited, under concurrency,
in the Thompson-sampling stage with windows full and partly full — must make
the same decisions and hold the same arrays as one that never stopped.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet import GTSBatchSizeOptimizer, PruningGTSBatchSizeOptimizer
from banditfleet.errors import CheckpointError

ARMS = [8, 16, 32, 64, 128, 256]


def _arrays(opt):
    return opt._store.keys(), {k: v.tobytes() for k, v in opt._store.export_arrays().items()}


def _driver(seed: int, n_steps: int, n_jobs: int, concurrency: bool):
    """Deterministic calls: (kind, rows, batch sizes or None, costs, converged)."""
    rng = np.random.default_rng(seed)
    # Whether a batch size reaches the target is fixed per run (as a trace would have it),
    # and 8..32 always do, so a pruning round never ends empty.
    failing = np.array([b for b in ARMS if b > 32 and rng.random() < 0.4], np.int64)
    yield ("failing", failing)
    for _ in range(n_steps):
        r = rng.random()
        if r < 0.1:
            yield ("pause",)
            continue
        rows = rng.choice(n_jobs, size=int(rng.integers(1, n_jobs + 1)), replace=False)
        yield ("predict", rows)
        yield ("observe", rows, rng.gamma(3.0, 40.0, size=rows.shape[0]))
        if concurrency and rng.random() < 0.3:
            # An extra run pruning did not ask for, as concurrent submissions do.
            yield ("extra", rows[:1], rng.gamma(3.0, 40.0, size=1))


def _run(opt, call, log):
    kind = call[0]
    if kind == "failing":
        log["failing"] = call[1]
        return None
    if kind == "predict":
        log["bs"] = opt.predict_many(_rows(opt, call[1]))
        return log["bs"].tolist()
    if kind == "observe":
        rows, costs = _rows(opt, call[1]), call[2]
        bs = log["bs"]
        opt.observe_many(rows, bs, costs, ~np.isin(bs, log["failing"]))
    elif kind == "extra":
        opt.observe_many(_rows(opt, call[1]), log["bs"][:1], call[2], ~np.isin(log["bs"][:1], log["failing"]))
    return None


def _rows(opt, indices):
    """The optimizer's rows of the jobs registered ``indices``-th (keys ``("job", i)``)."""
    return opt.rows([("job", int(i)) for i in indices])


def _make(kind, window, concurrency, seed):
    if kind == "pruning":
        return PruningGTSBatchSizeOptimizer(window_size=window, concurrency=concurrency, seed=seed, verbose=False)
    return GTSBatchSizeOptimizer(learn_reward_precision=True, seed=seed, verbose=False)


def _register(opt, n_jobs, kind):
    keys = [("job", i) for i in range(n_jobs)]
    if kind == "pruning":
        return opt.register_jobs(keys, [ARMS] * n_jobs, default_bs=32)
    return opt.register_jobs(keys, [ARMS] * n_jobs)


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**32),
    n_steps=st.integers(1, 40),
    n_jobs=st.integers(1, 5),
    window=st.sampled_from([0, 2, 3, 5, 10]),
    concurrency=st.booleans(),
    kind=st.sampled_from(["pruning", "pruning", "gts"]),
    journaled=st.booleans(),
)
def test_stop_and_resume_anywhere_equals_never_stopping(tmp_path_factory, seed, n_steps, n_jobs, window, concurrency, kind, journaled):
    folder = tmp_path_factory.mktemp("opt")
    cls = type(_make(kind, window, concurrency, seed))
    never = _make(kind, window, concurrency, seed)
    if journaled:
        settings_ = never._settings()
        opt = cls.open(folder / "state", **settings_)
    else:
        opt = _make(kind, window, concurrency, seed)
    _register(never, n_jobs, kind)
    _register(opt, n_jobs, kind)
    log_a: dict = {}
    log_b: dict = {}
    pauses = 0
    for call in _driver(seed, n_steps, n_jobs, concurrency and kind == "pruning"):
        if call[0] == "pause":
            pauses += 1
            if journaled:
                if pauses % 2:
                    opt.checkpoint()
                opt.close()
                opt = cls.open(folder / "state")
            else:
                path = folder / f"ckpt{pauses}.bfckpt"
                opt.save(path)
                opt = cls.load(path)
            assert _arrays(opt) == _arrays(never)
            continue
        assert _run(opt, call, log_a) == _run(never, call, log_b)
    assert _arrays(opt) == _arrays(never)
    if journaled:
        opt.close()
        assert _arrays(cls.open(folder / "state")) == _arrays(never)


def test_pruning_checkpoint_refuses_slot_references_outside_the_job(tmp_path):
    opt = PruningGTSBatchSizeOptimizer(window_size=4, verbose=False)
    opt.register_jobs(["a", "b"], [[8, 16, 32], [32, 64]], default_bs=32)
    opt.predict_many(["a", "b"])
    path = tmp_path / "p.bfckpt"
    opt.save(path)
    from banditfleet.checkpoint import read_checkpoint, write_checkpoint

    header, keys, arrays = read_checkpoint(path)
    forged = dict(arrays)
    ref = forged["job.pr_round_default"].copy()
    ref[1] = 0  # job b's default pointing into job a's slots
    forged["job.pr_round_default"] = ref
    write_checkpoint(path, header["optimizer"], header["settings"], keys, forged)
    with pytest.raises(CheckpointError, match="outside its job"):
        PruningGTSBatchSizeOptimizer.load(path)


def test_loading_the_wrong_optimizer_is_refused(tmp_path):
    opt = PruningGTSBatchSizeOptimizer(verbose=False)
    opt.save(tmp_path / "p.bfckpt")
    with pytest.raises(CheckpointError, match="PruningGTSBatchSizeOptimizer checkpoint, not a GTSBatchSizeOptimizer"):
        GTSBatchSizeOptimizer.load(tmp_path / "p.bfckpt")

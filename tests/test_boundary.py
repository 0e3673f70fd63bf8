"""Every public method refuses every invalid value its declared constraints list, with a
banditfleet error naming the job and the value, and changes nothing.

The cases are generated from the constraint declarations of banditfleet._boundary
(``@declare`` on each method): adding a parameter without a declaration fails
``test_every_public_parameter_is_declared``; adding an invalid example to a
constraint adds a case to every method that declares it.
"""

from __future__ import annotations

import inspect
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from banditfleet import (
    GTSBatchSizeOptimizer,
    JITPowerLimitOptimizer,
    OptimizerPair,
    PruningExploreManager,
    PruningGTSBatchSizeOptimizer,
    load_pair,
    open_pair,
    save_pair,
)
from banditfleet import _boundary as B
from banditfleet.errors import BanditFleetError, InvalidObservationError

ARMS = [8, 16, 32]


# ------------------------------------------------------------------ subjects
def _gts(learn: bool = True) -> GTSBatchSizeOptimizer:
    opt = GTSBatchSizeOptimizer(learn_reward_precision=learn, reward_precision=1.0, verbose=False)
    rows = opt.register_jobs(["a", "b"], [ARMS, ARMS])
    for _ in range(4):
        opt.observe_many(rows, opt.predict_many(rows), [10.0, 20.0])
    return opt


def _pruning() -> PruningGTSBatchSizeOptimizer:
    opt = PruningGTSBatchSizeOptimizer(window_size=3, concurrency=True, verbose=False)
    opt.register_jobs(["a", "b"], [ARMS, ARMS], default_bs=16)
    opt.observe_many(["a", "b"], opt.predict_many(["a", "b"]), [5.0, 6.0], [True, True])
    return opt


def _manager() -> PruningExploreManager:
    m = PruningExploreManager(ARMS, 16)
    m.next_batch_size()
    return m


def _plo() -> JITPowerLimitOptimizer:
    plo = JITPowerLimitOptimizer(verbose=False)
    plo.observe_many(["a", "b"], [8, 8], [200, 250], [1.0, 2.0])
    return plo


SUBJECTS = {
    "gts": _gts,
    "gts-known": lambda: _gts(False),
    "pruning": _pruning,
    "manager": _manager,
    "plo": _plo,
    "pair": lambda: OptimizerPair(_gts(), _plo()),
}


def _job_settings(o, n: int) -> dict:
    """Valid per-job settings keywords of register_job (n == 1: one value each) or
    register_jobs (one value per job)."""
    window = 3 if getattr(o, "learn_reward_precision", True) else 0
    out = dict(window_size=window, prior_mean=-1.5, prior_precision=2.0, num_exploration=1)
    if _pruning_like(o):
        out["num_pruning_rounds"] = 2
    if n == 1:
        out["seed"] = 7
        return out
    return {k: [v] * n for k, v in out.items()}


def _saved(obj, tmp_path):
    path = tmp_path / "ok.bfckpt"
    obj.save(path)
    return path


# Valid keyword arguments of each public method (job "a" or jobs ["a", "b"]); the tests
# replace one argument at a time with an invalid value of its declared constraint.
_BSO_VALID = {
    "__init__": lambda o, t: dict(o._settings(), verbose=False),
    "register_job": lambda o, t: dict(
        job="new", batch_sizes=[8, 16], **_job_settings(o, 1), **({"default_bs": 8} if _pruning_like(o) else {})
    ),
    "register_jobs": lambda o, t: dict(
        jobs=["new", "new2"], batch_sizes=[[8, 16], [8, 32]], seeds=[1, 2], **_job_settings(o, 2),
        **({"default_bs": [8, 8]} if _pruning_like(o) else {}),
    ),
    "predict": lambda o, t: dict(job="a"),
    "predict_many": lambda o, t: dict(
        jobs=["a", "b"], **({"parallel": False} if "parallel" in type(o).predict_many.__boundary__ else {})
    ),
    "observe": lambda o, t: dict(job="a", batch_size=16, cost=1.0, converged=True),
    "observe_many": lambda o, t: dict(
        jobs=["a", "b"], batch_sizes=[16, 16], costs=[1.0, 2.0], converged=[True, True],
        **({"parallel": False} if "parallel" in type(o).observe_many.__boundary__ else {}),
    ),
    "rows": lambda o, t: dict(jobs=["a", "b"]),
    "batch_sizes_of": lambda o, t: dict(job="a"),
    "arm_state": lambda o, t: dict(job="a"),
    "job_settings": lambda o, t: dict(job="a"),
    "pruning_state": lambda o, t: dict(job="a"),
    "survivors": lambda o, t: dict(job="a"),
    "exhausted_many": lambda o, t: dict(jobs=["a", "b"]),
    "save": lambda o, t: dict(path=t / "new.bfckpt"),
    "load": lambda o, t: dict(path=_saved(o, t), verbose=False),
    "open": lambda o, t: dict(folder=t / "folder", fsync="never", verbose=False, checkpoint_bytes=None),
    "remove_job": lambda o, t: dict(job="a"),
    "remove_jobs": lambda o, t: dict(jobs=["a", "b"]),
    "reset_job": lambda o, t: dict(job="a"),
    "reset_jobs": lambda o, t: dict(jobs=["a", "b"]),
}
VALID = {
    "gts": _BSO_VALID,
    "gts-known": _BSO_VALID,
    "pruning": _BSO_VALID,
    "manager": {
        "__init__": lambda o, t: dict(batch_sizes=[8, 16, 32], default=16, num_pruning_rounds=2),
        "report_batch_size_result": lambda o, t: dict(batch_size=16, cost=1.0, reached=True),
        "save": lambda o, t: dict(path=t / "new.bfckpt"),
        "load": lambda o, t: dict(path=_saved(o, t)),
        "remove_job": lambda o, t: dict(job=0),
        "remove_jobs": lambda o, t: dict(jobs=[0]),
        "reset_job": lambda o, t: dict(job=0),
        "reset_jobs": lambda o, t: dict(jobs=[0]),
    },
    "plo": {
        "__init__": lambda o, t: dict(verbose=False),
        "rows": lambda o, t: dict(jobs=["a", "b"], create=True),
        "predict": lambda o, t: dict(job="a", batch_size=8),
        "predict_many": lambda o, t: dict(jobs=["a", "b"], batch_sizes=[8, 8]),
        "observe": lambda o, t: dict(job="a", batch_size=8, power_limit=150, cost=0.5),
        "observe_many": lambda o, t: dict(jobs=["a", "b"], batch_sizes=[8, 8], power_limits=[150, 150], costs=[0.5, 0.5]),
        "key_of": lambda o, t: dict(row=0),
        "best_power_limit": lambda o, t: dict(job="a", batch_size=8),
        "observations": lambda o, t: dict(job="a", batch_size=8),
        "state": lambda o, t: dict(job="a"),
        "save": lambda o, t: dict(path=t / "new.bfckpt"),
        "load": lambda o, t: dict(path=_saved(o, t), verbose=False),
        "open": lambda o, t: dict(folder=t / "folder", fsync="never", verbose=False, checkpoint_bytes=None),
        "remove_job": lambda o, t: dict(job="a"),
        "remove_jobs": lambda o, t: dict(jobs=["a", "b"]),
        "reset_job": lambda o, t: dict(job="a"),
        "reset_jobs": lambda o, t: dict(jobs=["a", "b"]),
    },
    "pair": {
        "__init__": lambda o, t: dict(bso=_gts(), plo=_plo()),
        "save": lambda o, t: dict(path=t / "new.bfckpt"),
        "load": lambda o, t: dict(path=_saved(o, t), verbose=False, bso_class=GTSBatchSizeOptimizer),
        "open": lambda o, t: dict(folder=t / "folder", bso_class=GTSBatchSizeOptimizer, fsync="never", verbose=False, checkpoint_bytes=None),
        "remove_job": lambda o, t: dict(job="a"),
        "remove_jobs": lambda o, t: dict(jobs=["a", "b"]),
        "reset_job": lambda o, t: dict(job="a"),
        "reset_jobs": lambda o, t: dict(jobs=["a", "b"]),
    },
}
# Module-level functions of pairs: (function, valid arguments).
FUNCTIONS = {
    "save_pair": (save_pair, lambda t: dict(path=t / "p.bfckpt", bso=_gts(), plo=_plo())),
    "load_pair": (load_pair, lambda t: dict(path=_saved(OptimizerPair(_gts(), _plo()), t), bso_class=None, verbose=False)),
    "open_pair": (open_pair, lambda t: dict(folder=t / "folder", bso_class=GTSBatchSizeOptimizer, fsync="never", verbose=False)),
}
NO_USER_VALUES = {"next_batch_size", "checkpoint", "close"}
PER_JOB = (B.COST, B.BATCH_SIZE, B.POSITIVE_BATCH_SIZE, B.POWER_LIMIT, B.FLAG, B.OPTIONAL_FLAG, B.REACHED, B.SEEDS, B.ARM)


def _pruning_like(o) -> bool:
    return isinstance(o, PruningGTSBatchSizeOptimizer)


def _public_methods(cls):
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name != "__init__":
            continue
        if callable(member) and not isinstance(member, type):
            yield name, member


# --------------------------------------------------------------- the state
def _snapshot(obj):
    """Everything an object holds: arrays (values, dtypes, shapes, capacities), key maps, settings."""
    out = {}
    stack = [("", obj)]
    seen = set()
    while stack:
        prefix, o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        for name, v in sorted(vars(o).items()) if hasattr(o, "__dict__") else ():
            if name in ("_generation", "_entry_points", "_tuples", "_tuples_version", "_folder", "_journal_owner") or name.startswith("_one"):
                continue  # call counters, caches and one-element scratch buffers, not state
            key = f"{prefix}{name}"
            if isinstance(v, np.ndarray):
                out[key] = (v.dtype.str, v.shape, v.tobytes())
            elif isinstance(v, tuple) and v and all(isinstance(a, np.ndarray) for a in v):
                out[key] = tuple((a.dtype.str, a.shape, a.tobytes()) for a in v)
            elif isinstance(v, (dict, list)):
                out[key] = repr(v)
            elif isinstance(v, (int, float, str, bool, type(None))):
                out[key] = v
            elif hasattr(v, "__dict__") and type(v).__module__.startswith("banditfleet"):
                stack.append((key + ".", v))
            elif hasattr(v, "generation"):
                out[key + ".generation"] = v.generation
    return out


# ------------------------------------------------------------ the cases
def _batch_method(fn) -> bool:
    return "jobs" in getattr(fn, "__boundary__", {})


def _inject(method: str, param: str, constraint, bad, valid):
    """Put ``bad`` where the constraint applies: one element of a per-job batch, else the value."""
    if constraint is B.ARM and method in ("register_job", "__init__") and param == "batch_sizes":
        return [8, bad]
    if constraint is B.ARM and method == "register_jobs" and param == "batch_sizes":
        return [[8, 16], [8, bad]]
    if isinstance(valid, list) and param not in ("jobs",) and constraint is not B.JOBS:
        return [valid[0], bad]
    return bad


def _cases():
    for subject, methods in VALID.items():
        cls = type(SUBJECTS[subject]())
        for method in methods:
            if not hasattr(cls, method):
                continue
            fn = getattr(cls, method)
            for param, constraint in fn.__boundary__.items():
                for i, bad in enumerate(constraint.invalid_examples()):
                    yield pytest.param(subject, method, param, i, id=f"{subject}.{method}.{param}[{_short(bad)}]")


def _short(v) -> str:
    text = type(v).__name__ if isinstance(v, object) and type(v) is object else repr(v)
    return text[:24]


def _reprs(value) -> list[str]:
    out = {B.shown(value)}
    if isinstance(value, np.generic):
        try:
            out.add(B.shown(value.item()))
        except Exception:  # pragma: no cover - every generic has item()
            pass
    if isinstance(value, (list, tuple)):
        out.update(B.shown(v) for v in value)
    return sorted(out)


def _call(obj, method, kwargs):
    if method == "__init__":
        return type(obj)(**kwargs)
    return getattr(obj, method)(**kwargs)


@pytest.mark.parametrize("subject, method, param, index", list(_cases()))
def test_invalid_values_are_refused_by_name_and_change_nothing(tmp_path, subject, method, param, index):
    obj = SUBJECTS[subject]()
    fn = getattr(type(obj), method)
    constraint = fn.__boundary__[param]
    bad = constraint.invalid_examples()[index]
    kwargs = VALID[subject][method](obj, tmp_path)
    _call(SUBJECTS[subject](), method, dict(kwargs)) if method not in ("open", "save") else None  # the valid call works
    kwargs[param] = _inject(method, param, constraint, bad, kwargs[param])
    before = _snapshot(obj)
    files = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(BanditFleetError) as info:
        _call(obj, method, kwargs)
    err = info.value
    assert isinstance(err, (ValueError, KeyError)), type(err)
    assert isinstance(err, constraint.error) or constraint in (B.JOBS, B.KEY), (type(err), constraint.error)
    message = str(err)
    assert any(r in message for r in _reprs(bad)), message
    if constraint in PER_JOB:
        # A per-job value: the message names the job (the second one of a batch).
        if subject == "manager":
            who = "PruningExploreManager"
        elif method == "register_jobs":
            who = "'new2'"
        elif method == "register_job":
            who = "'new'"
        else:
            who = "'b'" if _batch_method(fn) else "'a'"
        assert who in message, message
    else:
        assert constraint.noun in message or constraint in (B.JOBS, B.KEY), message
    assert _snapshot(obj) == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == files  # nothing written either


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_pair_functions_refuse_invalid_values(tmp_path, name):
    fn, valid = FUNCTIONS[name]
    for param, constraint in fn.__boundary__.items():
        for bad in constraint.invalid_examples():
            kwargs = valid(tmp_path)
            kwargs[param] = bad
            files = sorted(p.name for p in tmp_path.rglob("*"))
            with pytest.raises(BanditFleetError) as info:
                fn(**kwargs)
            assert isinstance(info.value, (ValueError, KeyError))
            assert any(r in str(info.value) for r in _reprs(bad)), str(info.value)
            assert sorted(p.name for p in tmp_path.rglob("*")) == files


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_every_public_parameter_is_declared(subject):
    cls = type(SUBJECTS[subject]())
    for name, member in _public_methods(cls):
        params = [p for p in inspect.signature(member).parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        params = [p.name for p in params if p.name not in ("self", "cls")]
        if name in NO_USER_VALUES or not params:
            continue
        declared = getattr(member, "__boundary__", None)
        assert declared is not None, f"{cls.__name__}.{name} declares no constraints"
        assert set(params) == set(declared), f"{cls.__name__}.{name}: {params} vs {sorted(declared)}"
        if name in ("__init__",) or name in VALID[subject] or name in NO_USER_VALUES:
            continue
        raise AssertionError(f"{cls.__name__}.{name} has no valid call in VALID: its refusals are untested")
    for name, (fn, _) in FUNCTIONS.items():
        params = [p for p in inspect.signature(fn).parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        assert {p.name for p in params} == set(fn.__boundary__), name


# ------------------------------------------------------ the numbers, one by one
NOT_COSTS = [10**400, -(10**400), True, False, np.bool_(True), Decimal("1.5"), Fraction(1, 3), "1.0", b"1", None, math.nan, math.inf,
             -math.inf, np.float16("nan"), np.float32("inf"), np.complex64(1), 1j, np.datetime64("2024-01-01"), np.timedelta64(1, "s"),
             np.longdouble("inf"), object(), [1.0]]
COSTS = [0, 0.0, -0.0, 3, -2.5, 10**300, np.float16(1.5), np.float32(2.5), np.float64(-0.0), np.int8(-3), np.uint64(2**64 - 1),
         np.int64(7), np.longdouble(1.25)]


@pytest.mark.parametrize("subject", ["gts", "gts-known", "pruning", "plo", "manager"])
@pytest.mark.parametrize("value", NOT_COSTS, ids=lambda v: repr(v)[:20])
def test_every_optimizer_refuses_a_cost_alike(subject, value):
    """The three former copies of cost validation disagreed (10**400 was a bare OverflowError)."""
    obj = SUBJECTS[subject]()
    before = _snapshot(obj)
    with pytest.raises(InvalidObservationError, match="cost"):
        if subject == "plo":
            obj.observe("a", 8, 150, value)
        elif subject == "manager":
            obj.report_batch_size_result(16, value, True)
        else:
            obj.observe("a", 16, value, True)
    assert _snapshot(obj) == before


@pytest.mark.parametrize("value", COSTS, ids=lambda v: repr(v)[:20])
def test_costs_accepted_are_the_float_the_reference_would_use(value):
    """int, float and numpy integer/floating costs become ``float(value)``; -0.0 stays -0.0."""
    got = B.COST.check(value, "job 'a'")
    assert type(got) is float
    assert got == float(value) and math.copysign(1.0, got) == math.copysign(1.0, float(value))
    many = B.COST.check_many([value, value], 2, lambda i: f"job {i}")
    assert many.dtype == np.float64 and many.tolist() == [float(value)] * 2


def test_negative_zero_cost_is_kept_as_the_reference_keeps_it():
    """-0.0 is a valid cost: the reference stores -cost = 0.0 as the reward; the posterior
    equals that of cost 0.0 (numpy/Python arithmetic, naive model: mean = sum(rewards)/n)."""
    a = GTSBatchSizeOptimizer(learn_reward_precision=False, reward_precision=1.0, verbose=False)
    b = GTSBatchSizeOptimizer(learn_reward_precision=False, reward_precision=1.0, verbose=False)
    for o in (a, b):
        o.register_job("j", [8])
    a.observe("j", 8, -0.0)
    b.observe("j", 8, 0.0)
    assert a.arm_state("j") == b.arm_state("j")
    assert a.arm_state("j")[8].posterior_mean == 0.0 and a.arm_state("j")[8].observations == 1


@pytest.mark.parametrize("subject", ["gts", "pruning"])
def test_numpy_scalars_of_every_dtype(subject):
    """Batch sizes and flags of numpy dtypes: integers work, everything else is refused by name."""
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        obj = SUBJECTS[subject]()
        obj.observe("a", dtype(16), np.float32(1.0), np.bool_(True))
        obj.observe_many(["a", "b"], np.array([16, 16], dtype), np.array([1.0, 2.0], np.float16), np.array([1, 0], dtype))
    for bad in (np.float16(16.5), np.complex128(16), np.bool_(True), np.datetime64(16, "s"), np.timedelta64(16, "s"), np.str_("16")):
        obj = SUBJECTS[subject]()
        before = _snapshot(obj)
        with pytest.raises(InvalidObservationError, match="job 'a': batch size"):
            obj.observe("a", bad, 1.0, True)
        with pytest.raises(InvalidObservationError, match="job 'b': batch size"):
            obj.observe_many(["a", "b"], [16, bad], [1.0, 2.0], [True, True])
        assert _snapshot(obj) == before

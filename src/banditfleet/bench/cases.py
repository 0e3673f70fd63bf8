"""The benchmark cases: what ``banditfleet bench`` and ``benchmarks/bench_cases.py`` time.

A :class:`Case` is one row of the report: a name, a ``setup`` that builds the
state and returns the two timed callables (:class:`Prepared`: ``ours`` and
its ``comparison``), and the description of the comparison (the floor, or
the reference). The ratio of a row compares time *per unit* (per job,
decision, observation, draw, call or simulated run) of the two sides,
measured in the same run:

* ``kind="floor"``: the comparison is the least work the operation must do
  (numpy drawing the same random numbers, writing the same bytes); the ratio
  is ours / floor, and lower is better.
* ``kind="reference"``: the comparison is the ``zeus==0.16.0`` reference's
  per-job Python loop; the ratio is reference / ours (a speedup), higher is
  better. Without the reference installed the row is kept, with our side
  timed and the comparison marked missing with the reason.

The reference loops are slow, so they may run on the first
``Config.reference_jobs`` jobs of the fleet only; the row then says so and
the ratio is per unit (linear scaling of the reference, which holds one
independent Python object per job).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from banditfleet.bench import draws
from banditfleet.bench.fleets import (
    POWER_LIMITS,
    CostModel,
    PowerFleet,
    arm_values,
    default_bs,
    gts_fleet,
    make_jobs,
    pruning_fleet,
    quiet,
    random_gts_fleet,
    reaches_target,
    reference,
)

__all__ = ["Config", "Prepared", "Case", "CASES", "GROUPS", "select", "PRUNING_WINDOW"]

#: Window of the PruningGTS fleets (the checkpoint target's configuration).
PRUNING_WINDOW = 10


@dataclass(frozen=True)
class Config:
    """Sizes and measuring budget of a benchmark run.

    Attributes:
        jobs: Jobs of the fleet cases (rows for the draw cases).
        arms: Batch sizes per job: 8, 16, 32, ...
        reference_jobs: Jobs the reference's loops run on (the first ones of
            the fleet); fewer than ``jobs`` makes the row say it is scaled.
        checkpoint_jobs: Jobs of the checkpoint fleet.
        replay_groups: Groups of the synthetic replay fleet.
        reference_groups: Groups of it the reference simulator replays.
        cli_groups: Groups of the ``banditfleet replay`` process case.
        scalar_calls: Scalar calls per timed repeat.
        budget: Seconds to spend timing each side of a row (repeats are
            chosen from the first call's time within ``min_repeats`` and
            ``max_repeats``).
        quick: Reduced sizes and budget (``banditfleet bench --quick``).
        workdir: Folder for checkpoint files (a temporary folder inside it).
    """

    jobs: int = 10_000
    arms: int = 8
    reference_jobs: int = 10_000
    checkpoint_jobs: int = 1_000_000
    replay_groups: int = 10_000
    reference_groups: int = 100
    cli_groups: int = 100_000
    scalar_calls: int = 1_000
    budget: float = 1.0
    min_repeats: int = 5
    max_repeats: int = 50
    reference_min_repeats: int = 3
    quick: bool = False
    workdir: str | None = None

    @classmethod
    def standard(
        cls,
        quick: bool = False,
        jobs: int | None = None,
        arms: int | None = None,
        reference_jobs: int | None = None,
        **overrides: Any,
    ) -> Config:
        """The sizes of ``banditfleet bench`` (``quick``: those of ``--quick``).

        ``jobs`` sets the fleet, checkpoint and replay sizes at once. The
        reference's loops run on all the jobs up to 10,000 (200 with
        ``quick``) unless ``reference_jobs`` says otherwise.
        """
        if quick:
            base = cls(jobs=2_000, reference_jobs=200, checkpoint_jobs=20_000, replay_groups=1_000, reference_groups=5, cli_groups=2_000,
                       scalar_calls=200, budget=0.12, min_repeats=3, max_repeats=20, reference_min_repeats=2, quick=True)
        else:
            base = cls()
        changes: dict[str, Any] = {}
        if jobs is not None:
            changes.update(jobs=jobs, checkpoint_jobs=jobs, replay_groups=jobs, cli_groups=jobs)
        if arms is not None:
            changes["arms"] = arms
        n = changes.get("jobs", base.jobs)
        changes["reference_jobs"] = min(n, reference_jobs if reference_jobs is not None else base.reference_jobs)
        changes.update(overrides)
        return replace(base, **changes)


@dataclass
class Prepared:
    """What a case's setup returns: the two timed callables and how much work each does.

    ``units`` / ``comparison_units``: units of work (jobs, draws, ...) per
    call of ``ours`` / ``comparison``. ``*_before`` run untimed before every
    timed call (a fresh optimizer for one-shot work). ``same_repeats`` times
    both sides the same number of times (state that grows with every call,
    such as reward histories, then grows alike). ``max_repeats`` caps the timed
    repeats of each side (for cases of several seconds). ``missing`` says why the
    comparison cannot run; ``finalize`` runs after the timing, before the row
    is made (it may set ``note`` and ``info`` from what the calls recorded);
    ``cleanup`` runs when the row is done.
    """

    ours: Callable[[], Any]
    units: int
    comparison: Callable[[], Any] | None = None
    comparison_units: int = 0
    ours_before: Callable[[], Any] | None = None
    comparison_before: Callable[[], Any] | None = None
    same_repeats: bool = False
    max_repeats: int | None = None
    missing: str | None = None
    note: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    cleanup: Callable[[], Any] | None = None
    finalize: Callable[[], Any] | None = None


@dataclass(frozen=True)
class Case:
    """One row: ``setup(config, shared)`` returns a :class:`Prepared`.

    ``shared`` is a dict the cases of one group use to build a fleet once.
    ``target`` is the ratio the row must reach (``kind="reference"``: at
    least; ``kind="floor"``: at most), or None.
    """

    name: str
    group: str
    ours: str
    comparison: str
    kind: str
    unit: str
    floor: str
    setup: Callable[[Config, dict[str, Any]], Prepared]
    target: float | None = None
    needs_reference: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("floor", "reference"):
            raise ValueError(f"kind must be 'floor' or 'reference', got {self.kind!r}")


def _shared(shared: dict[str, Any], key: Any, build: Callable[[], Any]) -> Any:
    if key not in shared:
        shared[key] = build()
    return shared[key]


def _ref(cfg: Config) -> tuple[Any, int, str | None]:
    """(reference policy module or None, jobs it runs on, why it is missing)."""
    policy, why = reference()
    return policy, (min(cfg.reference_jobs, cfg.jobs) if policy is not None else 0), why


# ------------------------------------------------------------------ draws
def _rng(kind: str) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        k = cfg.arms
        streams, rows = draws.fleet_streams(cfg.jobs)
        np_rng = np.random.default_rng(1)
        if kind == "normal":
            count = cfg.jobs * k
            out = np.empty(count)
            ours = lambda: draws.normals_batch(streams, rows, k, out)  # noqa: E731
            floor = lambda: np_rng.standard_normal(count)  # noqa: E731
        elif kind == "bounded":
            count = cfg.jobs * k
            out = np.empty(count, np.int64)
            ours = lambda: draws.bounded_batch(streams, rows, k, k, out)  # noqa: E731
            floor = lambda: np_rng.integers(0, k, size=count)  # noqa: E731
        else:
            count = cfg.jobs * draws.choice_draws(k)
            out = np.empty((cfg.jobs, k), np.int64)
            ours = lambda: draws.choice_batch(streams, rows, k, k, out)  # noqa: E731
            floor = lambda: np_rng.integers(0, k, size=count)  # noqa: E731
        return Prepared(ours, count, floor, count, note=f"{cfg.jobs:,} rows")

    return setup


# -------------------------------------------------------------- thompson
def _gts(cfg: Config, shared: dict[str, Any], learn: bool):
    policy, m, why = _ref(cfg)
    fleet = _shared(shared, ("gts", learn), lambda: gts_fleet(cfg.jobs, cfg.arms, m, learn=learn, policy=policy))
    return fleet, why


def _scaled_note(cfg: Config, m: int, n: int, what: str) -> str:
    if m and m < n:
        return f"zeus timed on the first {m:,} of {n:,} {what}; ratio per {what[:-1]} (linear scaling)"
    return ""


def _ts_predict_floor(parallel: bool) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        fleet, _ = _gts(cfg, shared, True)
        ours = (lambda: fleet.ours.predict_many(fleet.rows, parallel=True)) if parallel else fleet.ours_predict
        n_int, n_norm = draws.ts_draws(cfg.arms)
        return Prepared(
            ours, cfg.jobs, draws.numpy_ts_draws(cfg.jobs, cfg.arms), cfg.jobs,
            note=f"{cfg.jobs:,} jobs x {cfg.arms} arms; numpy draws {n_int} integers + {n_norm} normals per job",
        )

    return setup


def _ts_predict_ref(cfg: Config, shared: dict[str, Any]) -> Prepared:
    fleet, why = _gts(cfg, shared, True)
    return Prepared(
        fleet.ours_predict, cfg.jobs, fleet.ref_predict if fleet.ref is not None else None, fleet.n_ref,
        missing=why, note=_scaled_note(cfg, fleet.n_ref, cfg.jobs, "jobs"),
    )


def _ts_numpy_ref(cfg: Config, shared: dict[str, Any]) -> Prepared:
    fleet, why = _gts(cfg, shared, True)
    return Prepared(
        draws.numpy_ts_draws(cfg.jobs, cfg.arms), cfg.jobs, fleet.ref_predict if fleet.ref is not None else None, fleet.n_ref,
        missing=why, note="the ceiling of any predict_many: numpy's vectorized draws alone vs the reference",
    )


def _random_gts(cfg: Config, shared: dict[str, Any]):
    policy, m, why = _ref(cfg)
    fleet = _shared(shared, "gts-random", lambda: random_gts_fleet(cfg.jobs, cfg.arms, m, policy=policy))
    return fleet, why


def _ts_predict_draws(random: bool) -> Callable[[Config, dict[str, Any]], Prepared]:
    """Our decisions against our own streams drawing exactly the same numbers (same jobs,
    the same starting states: a copy of the fleet's streams) and deciding nothing."""

    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        fleet, _ = _random_gts(cfg, shared) if random else _gts(cfg, shared, True)
        store = fleet.ours._store
        rows = np.ascontiguousarray(fleet.rows.array, np.int64)
        floor = draws.decision_draws(store.streams, rows, store.arm_count)
        counts = store.arm_count[rows]
        what = f"{counts.min()}-{counts.max()} arms (mean {counts.mean():.1f})" if random else f"{cfg.arms} arms"
        return Prepared(
            fleet.ours_predict, cfg.jobs, floor, cfg.jobs,
            note=f"{cfg.jobs:,} jobs x {what}; the same 2 (k - 1) bounded integers + k normals per job, per-row streams",
        )

    return setup


def _ts_predict_random_ref(cfg: Config, shared: dict[str, Any]) -> Prepared:
    fleet, why = _random_gts(cfg, shared)
    return Prepared(
        fleet.ours_predict, cfg.jobs, fleet.ref_predict if fleet.ref is not None else None, fleet.n_ref,
        missing=why, note=_scaled_note(cfg, fleet.n_ref, cfg.jobs, "jobs") or "one zeus optimizer per job (own seed)",
    )


def _threads(kind: str) -> Callable[[Config, dict[str, Any]], Prepared]:
    """``predict_many(parallel=True)`` on numba's threads against the same call on one thread."""

    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        import numba

        fleet = _random_gts(cfg, shared)[0] if kind == "gts" else _pruning(cfg, shared)[0]
        opt, rows = fleet.ours, fleet.rows
        threads = numba.get_num_threads()

        def one_thread() -> Any:
            numba.set_num_threads(1)
            try:
                return opt.predict_many(rows, parallel=True)
            finally:
                numba.set_num_threads(threads)

        return Prepared(
            lambda: opt.predict_many(rows, parallel=True), cfg.jobs, one_thread, cfg.jobs,
            note=f"{threads} threads against 1; ratio < 1 is the speedup's inverse", info={"threads": threads},
        )

    return setup


def _ts_observe(learn: bool) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        fleet, why = _gts(cfg, shared, learn)
        ours, ref = fleet.observe_loops()
        store = fleet.ours._store
        return Prepared(
            ours, cfg.jobs, ref, fleet.n_ref, missing=why, same_repeats=True,
            note=_scaled_note(cfg, fleet.n_ref, cfg.jobs, "jobs") or f"{cfg.jobs:,} observations per call",
            info={"bytes_per_arm": store.nbytes_per_arm()},
        )

    return setup


# ----------------------------------------------------------------- scalar
def _scalar(policy_name: str, what: str) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        policy, why = reference()

        def build(policy: Any):
            m = 1 if policy is not None else 0
            if policy_name == "gts":
                return gts_fleet(1, cfg.arms, m, learn=True, policy=policy)
            return pruning_fleet(1, cfg.arms, m, window=PRUNING_WINDOW, policy=policy)

        calls = cfg.scalar_calls
        state: dict[str, Any] = {}
        if what == "predict":
            fleet = build(policy)
            job = fleet.jobs[0]
            ours_predict = fleet.ours.predict

            def ours() -> None:
                for _ in range(calls):
                    ours_predict(job)

            ref = None
            if fleet.ref is not None:
                ref_predict = fleet.ref.predict

                def ref() -> None:
                    with quiet():
                        for _ in range(calls):
                            ref_predict(job)

            return Prepared(ours, calls, ref, calls, missing=why, note=f"{calls:,} calls on one job")

        # observe: fresh one-job fleets before every timed call, so both sides
        # refit on reward histories of the same length
        values = arm_values(cfg.arms).tolist()
        model = CostModel(1, len(values), default_bs(cfg.arms), seed=11)
        seq = [(bs, float(model(np.array([bs]), k)[0])) for k, bs in enumerate(values)]
        seq = (seq * (calls // len(seq) + 1))[:calls]

        def fresh() -> None:
            state["fleet"] = build(policy)

        def ours() -> None:
            fleet = state["fleet"]
            observe, job = fleet.ours.observe, fleet.jobs[0]
            for bs, cost in seq:
                observe(job, bs, cost)

        def ref() -> None:
            fleet = state["fleet"]
            observe, job = fleet.ref.observe, fleet.jobs[0]
            with quiet():
                for bs, cost in seq:
                    observe(job, bs, cost)

        has_ref = policy is not None
        return Prepared(
            ours, calls, ref if has_ref else None, calls, ours_before=fresh, comparison_before=fresh if has_ref else None,
            missing=why, note=f"{calls:,} calls on a fresh one-job fleet (cycling its {cfg.arms} arms)",
        )

    return setup


# ---------------------------------------------------------------- pruning
def _pruning(cfg: Config, shared: dict[str, Any]):
    policy, m, why = _ref(cfg)
    fleet = _shared(shared, "pruning", lambda: pruning_fleet(cfg.jobs, cfg.arms, m, window=PRUNING_WINDOW, policy=policy))
    return fleet, why


def _pruning_predict(cfg: Config, shared: dict[str, Any]) -> Prepared:
    fleet, why = _pruning(cfg, shared)
    return Prepared(fleet.ours_predict, cfg.jobs, fleet.ref_predict if fleet.ref is not None else None, fleet.n_ref,
                    missing=why, note=_scaled_note(cfg, fleet.n_ref, cfg.jobs, "jobs") or "Thompson-sampling stage")


def _pruning_observe(cfg: Config, shared: dict[str, Any]) -> Prepared:
    fleet, why = _pruning(cfg, shared)
    ours, ref = fleet.observe_loops()
    return Prepared(ours, cfg.jobs, ref, fleet.n_ref, missing=why, same_repeats=True,
                    note=_scaled_note(cfg, fleet.n_ref, cfg.jobs, "jobs") or "Thompson-sampling stage")


def _pruning_transitions(cfg: Config, shared: dict[str, Any]) -> Prepared:
    """Every job through its whole pruning stage (both rounds) into Thompson sampling.

    Batch sizes up to twice the default reach the target, larger ones fail,
    so both directions of both rounds run and the failing sizes are pruned.
    """
    from banditfleet.pruning import PruningGTSBatchSizeOptimizer

    policy, m, why = _ref(cfg)
    n, arms = cfg.jobs, cfg.arms
    values = arm_values(arms)
    default = default_bs(arms)
    jobs = make_jobs(n, "transitions", default)
    costs = CostModel(n, 64, default, seed=3)
    table = np.tile(values, (n, 1))
    state: dict[str, Any] = {}

    def fresh_ours() -> None:
        opt = PruningGTSBatchSizeOptimizer(window_size=PRUNING_WINDOW, verbose=False)
        state["ours"] = (opt, opt.register_jobs(jobs, table))

    def fresh_ref() -> None:
        ref = policy.PruningGTSBatchSizeOptimizer(window_size=PRUNING_WINDOW, verbose=False)
        with quiet():
            for job in jobs[:m]:
                ref.register_job(job, values.tolist())
        state["ref"] = ref

    # How many predict/observe rounds pruning takes (the same for every job here).
    fresh_ours()
    opt, rows = state["ours"]
    rounds = 0
    decisions = []
    while opt.pruning_state(jobs[0]).stage != "thompson":
        bs = opt.predict_many(rows)
        decisions.append(bs)
        opt.observe_many(rows, bs, costs(bs, rounds), reaches_target(bs, arms))
        rounds += 1
        if rounds > 4 * arms:
            raise AssertionError("pruning did not finish")
    stages = {opt.pruning_state(j).stage for j in jobs}
    if stages != {"thompson"}:
        raise AssertionError(f"not every job finished pruning in {rounds} rounds: {stages}")

    def ours() -> None:
        o, r = state["ours"]
        for k in range(rounds):
            bs = o.predict_many(r)
            o.observe_many(r, bs, costs(bs, k), reaches_target(bs, arms))

    def ref() -> None:
        r = state["ref"]
        predict, observe = r.predict, r.observe
        with quiet():
            for k in range(rounds):
                bs = [predict(job) for job in jobs[:m]]
                arr = np.array(bs, np.int64)
                for job, b, c, f in zip(jobs[:m], bs, costs(arr, k, m).tolist(), reaches_target(arr, arms).tolist()):
                    observe(job, b, c, f)

    if policy is not None and m:
        fresh_ref()  # check once that the reference takes the same path
        r = state["ref"]
        with quiet():
            for k in range(rounds):
                bs = [r.predict(job) for job in jobs[:m]]
                if bs != decisions[k][:m].tolist():
                    raise AssertionError("banditfleet and the reference pruned differently")
                arr = np.array(bs, np.int64)
                for job, b, c, f in zip(jobs[:m], bs, costs(arr, k, m).tolist(), reaches_target(arr, arms).tolist()):
                    r.observe(job, b, c, f)
    return Prepared(
        ours, n, ref if policy is not None else None, m, ours_before=fresh_ours,
        comparison_before=fresh_ref if policy is not None else None, missing=why,
        note=(_scaled_note(cfg, m, n, "jobs") + "; " if m and m < n else "")
        + f"{rounds} predict+observe rounds per job, from registration to Thompson sampling",
        info={"rounds": rounds},
    )


# ------------------------------------------------------------------ power
def _power(cfg: Config, shared: dict[str, Any]):
    policy, m, why = _ref(cfg)
    return _shared(shared, "power", lambda: PowerFleet(cfg.jobs, cfg.arms, m, policy=policy)), why


def _power_case(what: str, keys: bool = False) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        f, why = _power(cfg, shared)
        if what == "predict":
            ours, ref = (f.ours_predict_keys if keys else f.ours_predict_rows), f.ref_predict
        else:
            ours, ref = (f.ours_observe_keys if keys else f.ours_observe_rows), f.ref_observe
        note = _scaled_note(cfg, f.n_ref, cfg.jobs, "jobs") or f"{cfg.jobs:,} jobs x {cfg.arms} batch sizes x {len(POWER_LIMITS)} power limits"
        return Prepared(ours, cfg.jobs, ref if f.ref is not None else None, f.n_ref, missing=why, note=note)

    return setup


def _power_gather(cfg: Config, shared: dict[str, Any]) -> Prepared:
    """Floor of a power-limit lookup: two dependent random reads per query (a hash-table
    position, then the entry it holds), as numpy fancy indexing over tables of our sizes."""
    f, _ = _power(cfg, shared)
    entries = cfg.jobs * cfg.arms
    size = 1 << int(np.ceil(np.log2(2 * entries)))
    rng = np.random.default_rng(9)
    table = rng.integers(0, entries, size=size)
    best = rng.integers(100, 300, size=entries)
    pos = rng.integers(0, size, size=cfg.jobs)
    return Prepared(f.ours_predict_rows, cfg.jobs, lambda: best[table[pos]], cfg.jobs,
                    note=f"{entries:,} entries, a table of {size:,} positions")


# ------------------------------------------------------------- checkpoint
def _checkpoint_fleet(cfg: Config, shared: dict[str, Any]):
    def build():
        from banditfleet.pruning import PruningGTSBatchSizeOptimizer

        n, arms = cfg.checkpoint_jobs, cfg.arms
        opt = PruningGTSBatchSizeOptimizer(window_size=PRUNING_WINDOW, verbose=False)
        rows = opt.register_jobs(range(n), np.tile(arm_values(arms), (n, 1)), default_bs=default_bs(arms))
        rng = np.random.default_rng(0)
        for _ in range(2):
            bs = opt.predict_many(rows)
            opt.observe_many(rows, bs, rng.gamma(4.0, 25.0, n), reaches_target(bs, arms))
        folder = tempfile.mkdtemp(prefix="banditfleet-bench-", dir=cfg.workdir)
        path = os.path.join(folder, "fleet.bfckpt")
        size = opt.save(path)
        shared["_cleanup"] = lambda: shutil.rmtree(folder, ignore_errors=True)
        return opt, path, folder, size

    return _shared(shared, "checkpoint", build)


def _raw_write(path: str, buf: np.ndarray) -> None:
    with open(path, "wb") as fh:
        fh.write(memoryview(buf))
        fh.flush()
        os.fsync(fh.fileno())


def _raw_read(path: str, buf: np.ndarray) -> None:
    with open(path, "rb", buffering=0) as fh:
        view = memoryview(buf)
        got = 0
        while got < len(view):
            k = fh.readinto(view[got:])
            if not k:
                break
            got += k


def _checkpoint(what: str) -> Callable[[Config, dict[str, Any]], Prepared]:
    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        opt, path, folder, size = _checkpoint_fleet(cfg, shared)
        buf = np.ones(size, np.uint8)
        raw = os.path.join(folder, "raw.bin")
        _raw_write(raw, buf)
        info = {"bytes": size, "bytes_per_job": size / cfg.checkpoint_jobs}
        note = f"{cfg.checkpoint_jobs:,} jobs x {cfg.arms} arms, window {PRUNING_WINDOW}: {size / 1e6:,.1f} MB"
        if what == "save":
            return Prepared(lambda: opt.save(path), cfg.checkpoint_jobs, lambda: _raw_write(raw, buf), cfg.checkpoint_jobs,
                            note=note, info=info)
        load = type(opt).load
        return Prepared(lambda: load(path), cfg.checkpoint_jobs, lambda: _raw_read(raw, buf), cfg.checkpoint_jobs,
                        note=note + " (page cache warm on both sides)", info=info)

    return setup


# -------------------------------------------------------------- lifecycle
def _churn(cfg: Config, shared: dict[str, Any]) -> Prepared:
    """Per registration: 5 x jobs registrations with at most ``jobs`` live (GTS, learned
    precision, every live job predicted and observed once per round), removing jobs to stay
    under the bound, against the same registrations and observations without removal. The
    info holds the checkpoint and allocated-memory ratios of docs/performance.md."""
    from banditfleet.bench.churn import churn_figures, churn_fleet

    registrations, max_live = 5 * cfg.jobs, cfg.jobs
    figures = churn_figures(registrations, max_live, cfg.arms, workdir=cfg.workdir)
    note = (
        f"{registrations:,} registrations, <= {max_live:,} live, {cfg.arms} arms: checkpoint "
        f"{figures['checkpoint_vs_fresh']:.2f}x a fresh fleet with the live jobs ({figures['no_removal_checkpoint_vs_fresh']:.2f}x "
        f"without removal), allocated {figures['allocated_vs_live']:.2f}x the live state ({figures['no_removal_allocated_vs_live']:.2f}x)"
    )
    return Prepared(
        lambda: churn_fleet(registrations, max_live, cfg.arms),
        registrations,
        lambda: churn_fleet(registrations, max_live, cfg.arms, remove=False),
        registrations,
        note=note,
        info=figures,
    )


# ----------------------------------------------------------------- replay
def _replay(cfg: Config, shared: dict[str, Any]) -> Prepared:
    """Per simulated run (one that never starts counts too): banditfleet's fleet replay
    of every group against the reference simulator on the first groups.

    The reference is set up as the Zeus artifacts' ``run_alibaba.py``: per
    group a PruningGTS optimizer with concurrency and a JIT power-limit
    optimizer seeded with the group id's Adler-32, on one simulator whose
    trace merge is done once, outside the timing. Its histories are checked
    equal in length to banditfleet's.
    """
    from banditfleet.replay.fleet import Setting, group_seed, replay_fleet
    from banditfleet.replay.synthetic import synthetic_fleet

    policy, why = reference()
    fleet = synthetic_fleet(cfg.replay_groups, seed=0)
    setting = Setting()
    result = replay_fleet(fleet, [setting])
    runs = int(result.result.runs.sum())
    offsets = result.result.offsets
    failed = set(result.errors().group.tolist())
    info = {"groups": len(fleet), "submissions": fleet.n_submissions, "runs": runs, "history_entries": result.n_runs}
    if policy is None:
        return Prepared(lambda: replay_fleet(fleet, [setting]), runs, missing=why, info=info,
                        note=f"{len(fleet):,} synthetic groups, {runs:,} simulated runs")
    from zeus._legacy.job import Job as RefJob
    from zeus._legacy.simulate import Simulator as RefSimulator

    trace = fleet.workloads.traces[0]
    chosen = [g for g in range(len(fleet)) if fleet.group_ids[g] not in failed][: cfg.reference_groups]
    groups = []
    ref_runs = 0
    for g in chosen:
        j = fleet.workloads.jobs[int(fleet.group_wl[g])]
        job = RefJob(j.dataset, j.network, j.optimizer, j.target_metric, j.max_epochs, j.default_bs, j.default_lr)
        groups.append((fleet.group_frame(g), job, group_seed(fleet.group_ids[g]), int(offsets[g + 1] - offsets[g])))
        ref_runs += int(result.result.runs[g])
    with quiet():
        sim = RefSimulator(trace.train, trace.power, policy.PruningGTSBatchSizeOptimizer(verbose=False),
                           policy.JITPowerLimitOptimizer(verbose=False), verbose=False)

    def ref() -> list[int]:
        lengths = []
        with quiet():
            for frame, job, seed, _ in groups:
                sim.bso = policy.PruningGTSBatchSizeOptimizer(seed=seed, concurrency=True, window_size=setting.window_size, verbose=False)
                sim.plo = policy.JITPowerLimitOptimizer(verbose=False)
                sim.seed = seed
                lengths.append(len(sim.simulate_one_alibaba_group(job, frame, setting.beta_knob, setting.eta_knob)))
        return lengths

    if ref() != [n for *_, n in groups]:
        raise AssertionError("the reference simulator's histories differ in length from banditfleet's")
    return Prepared(
        lambda: replay_fleet(fleet, [setting]), runs, ref, ref_runs, info=info,
        note=f"{len(fleet):,} synthetic groups, {runs:,} simulated runs; zeus Simulator on the first {len(groups)} "
        f"groups ({ref_runs:,} runs, trace merged once), per run",
    )


def _replay_cli(cfg: Config, shared: dict[str, Any]) -> Prepared:
    """The whole ``banditfleet replay --synthetic-groups N --out DIR`` process, default outputs
    (history.parquet, summaries, plots), warm numba cache, per simulated run; against the
    reference on groups of the same fleet exported with ``--export-trace``, run as the Zeus
    artifacts' ``run_alibaba.py`` runs them (per group: its own seeded optimizers and a new
    ``Simulator`` over the traces read once).
    """
    import subprocess
    import sys
    from pathlib import Path

    from banditfleet.replay.fleet import Setting, group_seed, replay_fleet
    from banditfleet.replay.synthetic import export_trace, synthetic_fleet

    groups = cfg.cli_groups
    fleet = synthetic_fleet(groups, seed=0)
    setting = Setting()
    result = replay_fleet(fleet, [setting])
    runs = int(result.result.runs.sum())
    work = tempfile.mkdtemp(prefix="banditfleet-bench-cli-", dir=cfg.workdir)
    out = Path(work) / "out"
    command = [sys.executable, "-m", "banditfleet", "replay", "--synthetic-groups", str(groups), "--out", str(out), "--no-progress"]

    def ours() -> None:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    info = {"groups": groups, "runs": runs, "command": " ".join(command[2:])}
    note = f"whole process, {groups:,} groups, {runs:,} simulated runs, default outputs"
    policy, why = reference()
    if policy is None:
        return Prepared(ours, runs, missing=why, info=info, note=note, max_repeats=3, cleanup=lambda: shutil.rmtree(work, True))
    import pandas as pd
    from zeus._legacy.job import Job as RefJob
    from zeus._legacy.simulate import Simulator as RefSimulator

    failed = set(result.errors().group.tolist())
    chosen = [g for g in range(len(fleet)) if fleet.group_ids[g] not in failed][: cfg.reference_groups]
    export_trace(fleet.subset(chosen), Path(work) / "trace")  # what `banditfleet replay --export-trace` writes
    trace_dir = Path(work) / "trace"
    train = pd.read_csv(trace_dir / "summary_train.csv")
    power = pd.read_csv(next(trace_dir.glob("summary_power_*.csv")))
    jobs = pd.read_csv(trace_dir / "jobs.csv").set_index("dataset")
    frames = [frame for _, frame in pd.read_csv(trace_dir / "groups.csv").groupby("group", sort=False)]
    ref_runs = int(sum(int(result.result.runs[g]) for g in chosen))

    def ref() -> None:
        with quiet():
            for frame in frames:
                dataset = frame.dataset.unique().item()
                j = jobs.loc[dataset]
                job = RefJob(dataset, j.network, j.optimizer, float(j.target_metric), int(j.max_epochs), int(j.default_bs))
                seed = group_seed(frame.group.unique().item())
                bso = policy.PruningGTSBatchSizeOptimizer(seed=seed, concurrency=True, verbose=False)
                plo = policy.JITPowerLimitOptimizer(verbose=False)
                RefSimulator(train, power, bso, plo, seed=seed, verbose=False).simulate_one_alibaba_group(job, frame, 2.0, 0.5)

    return Prepared(
        ours, runs, ref, ref_runs, info=dict(info, reference_groups=len(frames), reference_runs=ref_runs), max_repeats=3,
        note=note + f"; zeus on {len(frames)} exported groups ({ref_runs:,} runs), as run_alibaba.py, per run",
        cleanup=lambda: shutil.rmtree(work, True),
    )


def _simulator(kind: str) -> Callable[[Config, dict[str, Any]], Prepared]:
    """Per call, warm: ``banditfleet.Simulator`` with banditfleet's optimizers against zeus's
    ``Simulator`` with zeus's, on the same trace, job, seeds and arguments (histories checked
    equal). ``kind="job"``: ``simulate_one_job`` (30 recurrences, 10 with --quick);
    ``kind="group"``: ``simulate_one_alibaba_group`` on the busiest librispeech-syn group with
    at most 60 submissions of a 1,000-group built-in fleet (20 of 200 groups with --quick). Both sides deep-copy their optimizers per call."""

    def setup(cfg: Config, shared: dict[str, Any]) -> Prepared:
        from banditfleet import JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer, Simulator
        from banditfleet.replay.synthetic import synthetic_fleet

        policy, why = reference()
        fleet = synthetic_fleet(200 if cfg.quick else 1000, seed=0)
        trace = fleet.workloads.traces[0]
        w = [j.dataset for j in fleet.workloads.jobs].index("librispeech-syn")
        job = fleet.workloads.jobs[w]
        seed = 11
        concurrency = kind == "group"
        ours = Simulator(trace.train, trace.power, PruningGTSBatchSizeOptimizer(seed=seed, concurrency=concurrency, verbose=False),
                         JITPowerLimitOptimizer(verbose=False), seed=seed, verbose=False)
        if kind == "job":
            n = 10 if cfg.quick else 30
            call = lambda sim, j: sim.simulate_one_job(j, n, 2.0, 0.5)  # noqa: E731
            what = f"simulate_one_job, {job.dataset}, {n} recurrences"
        else:
            cap = 20 if cfg.quick else 60
            members = [g for g in range(len(fleet)) if fleet.group_wl[g] == w and fleet.sub_count[g] <= cap]
            g = max(members, key=lambda i: int(fleet.sub_count[i]))
            frame = fleet.group_frame(g)
            call = lambda sim, j: sim.simulate_one_alibaba_group(j, frame, 2.0, 0.5)  # noqa: E731
            what = f"simulate_one_alibaba_group, {job.dataset}, {len(frame)} submissions"
        mine = call(ours, job)
        call(ours, job)  # warm: kernels loaded, entry points resolved
        info = {"history_entries": len(mine)}
        if policy is None:
            return Prepared(lambda: call(ours, job), 1, missing=why, info=info, note=what)
        from zeus._legacy.job import Job as RefJob
        from zeus._legacy.simulate import Simulator as RefSimulator

        rjob = RefJob(job.dataset, job.network, job.optimizer, job.target_metric, job.max_epochs, job.default_bs, job.default_lr)
        with quiet():
            ref = RefSimulator(trace.train, trace.power, policy.PruningGTSBatchSizeOptimizer(seed=seed, concurrency=concurrency, verbose=False),
                               policy.JITPowerLimitOptimizer(verbose=False), seed=seed, verbose=False)
            theirs = call(ref, rjob)
        if [(e.bs, e.pl, e.reached, e.energy, e.time) for e in theirs] != [(e.bs, e.pl, e.reached, e.energy, e.time) for e in mine]:
            raise AssertionError("banditfleet's Simulator and the reference's differ on the benchmark job")

        def ref_call() -> Any:
            with quiet():
                return call(ref, rjob)

        return Prepared(lambda: call(ours, job), 1, ref_call, 1, info=info, note=f"{what}, warm, per call")

    return setup


# ------------------------------------------------------------------ table
_NUMPY_TS = "numpy Generator: the same bounded integers and normals, two vectorized calls"
_ZEUS_LOOP = "zeus 0.16.0: a Python loop over the jobs"

CASES: list[Case] = [
    Case("rng.normal", "rng", "per-row PCG64 ziggurat normals", "numpy standard_normal", "floor", "draw",
         "numpy's Generator drawing as many standard normals in one vectorized call", _rng("normal")),
    Case("rng.bounded", "rng", "per-row bounded integers in [0, arms)", "numpy integers", "floor", "draw",
         "numpy's Generator drawing as many integers in one vectorized call", _rng("bounded")),
    Case("rng.choice", "rng", "per-row choice(arms, arms, replace=False)", "numpy integers (same count)", "floor", "draw",
         "numpy drawing the 2 (arms - 1) bounded integers each choice consumes, vectorized", _rng("choice")),
    Case("ts.predict:numpy", "thompson", "GTS predict_many (1 thread)", "numpy same draws", "floor", "decision",
         "the draws a Thompson-sampling decision must make: " + _NUMPY_TS, _ts_predict_floor(False), target=1.5),
    Case("ts.predict-parallel:numpy", "thompson", "GTS predict_many(parallel=True)", "numpy same draws", "floor", "decision",
         "the same floor (numpy draws on one thread)", _ts_predict_floor(True)),
    Case("ts.predict:draws", "thompson", "GTS predict_many (1 thread)", "the same draws, our streams", "floor", "decision",
         "our per-row streams drawing exactly the numbers the decisions draw (same jobs and states), deciding nothing",
         _ts_predict_draws(False), target=1.25),
    Case("ts.predict:zeus", "thompson", "GTS predict_many (1 thread)", "zeus predict loop", "reference", "decision",
         _ZEUS_LOOP + " of GTSBatchSizeOptimizer.predict", _ts_predict_ref, target=400, needs_reference=True),
    Case("ts.predict-random:draws", "thompson", "GTS predict_many, own seeds, ragged arms", "the same draws, our streams",
         "floor", "decision", "as ts.predict:draws on a fleet of independent streams, random posteriors, ragged arm counts",
         _ts_predict_draws(True), target=1.25),
    Case("ts.predict-random:zeus", "thompson", "GTS predict_many, own seeds, ragged arms", "zeus predict loop, one optimizer per job",
         "reference", "decision", _ZEUS_LOOP + " of predict, each job in its own optimizer with its own seed",
         _ts_predict_random_ref, target=400, needs_reference=True),
    Case("ts.predict-parallel:1-thread", "thompson", "GTS predict_many(parallel=True), own seeds", "the same on 1 thread",
         "floor", "decision", "the same parallel call with numba limited to one thread", _threads("gts")),
    Case("ts.numpy-draws:zeus", "thompson", "numpy same draws (no decisions)", "zeus predict loop", "reference", "decision",
         _ZEUS_LOOP + " of predict; our side is only numpy's draws, the ceiling of any batch predict", _ts_numpy_ref,
         needs_reference=True),
    Case("ts.observe-known:zeus", "thompson", "GTS observe_many, known precision", "zeus observe loop", "reference", "observation",
         _ZEUS_LOOP + " of observe (known reward precision)", _ts_observe(False), target=300, needs_reference=True),
    Case("ts.observe-learned:zeus", "thompson", "GTS observe_many, learned precision", "zeus observe loop", "reference",
         "observation", _ZEUS_LOOP + " of observe (learned precision: 1/np.var of the arm's rewards, then a refit)",
         _ts_observe(True), target=300, needs_reference=True),
    Case("scalar.gts-predict:zeus", "scalar", "GTS predict(job)", "zeus predict(job)", "reference", "call",
         "the reference's predict on the same one-job state", _scalar("gts", "predict"), target=10, needs_reference=True),
    Case("scalar.gts-observe:zeus", "scalar", "GTS observe(job, bs, cost)", "zeus observe", "reference", "call",
         "the reference's observe on the same one-job state", _scalar("gts", "observe"), target=10, needs_reference=True),
    Case("scalar.pruning-predict:zeus", "scalar", "PruningGTS predict(job), TS stage", "zeus predict(job)", "reference", "call",
         "the reference's predict on the same one-job state", _scalar("pruning", "predict"), target=10, needs_reference=True),
    Case("scalar.pruning-observe:zeus", "scalar", "PruningGTS observe, TS stage", "zeus observe", "reference", "call",
         "the reference's observe on the same one-job state", _scalar("pruning", "observe"), target=10, needs_reference=True),
    Case("pruning.transitions:zeus", "pruning", "PruningGTS: registration to TS, batched", "zeus loop, same rounds",
         "reference", "job", _ZEUS_LOOP + " of predict/observe through both pruning rounds", _pruning_transitions,
         target=300, needs_reference=True),
    Case("pruning.predict:zeus", "pruning", "PruningGTS predict_many, TS stage", "zeus predict loop", "reference", "decision",
         _ZEUS_LOOP + " of PruningGTSBatchSizeOptimizer.predict", _pruning_predict, target=300, needs_reference=True),
    Case("pruning.predict-parallel:1-thread", "pruning", "PruningGTS predict_many(parallel=True), TS stage",
         "the same on 1 thread", "floor", "decision", "the same parallel call with numba limited to one thread",
         _threads("pruning")),
    Case("pruning.observe:zeus", "pruning", "PruningGTS observe_many, TS stage", "zeus observe loop", "reference",
         "observation", _ZEUS_LOOP + f" of observe (window {PRUNING_WINDOW}: 1/np.var of the window, then a refit)",
         _pruning_observe, target=300, needs_reference=True),
    Case("power.predict:zeus", "power", "JITPowerLimit predict_many (rows)", "zeus predict loop", "reference", "decision",
         _ZEUS_LOOP + " of JITPowerLimitOptimizer.predict (dict lookups)", _power_case("predict"), needs_reference=True),
    Case("power.predict-keys:zeus", "power", "JITPowerLimit predict_many (Job keys)", "zeus predict loop", "reference", "decision",
         _ZEUS_LOOP + "; our side hashes every Job key, as the reference does", _power_case("predict", keys=True),
         needs_reference=True),
    Case("power.observe:zeus", "power", "JITPowerLimit observe_many (rows)", "zeus observe loop", "reference", "observation",
         _ZEUS_LOOP + " of JITPowerLimitOptimizer.observe", _power_case("observe"), needs_reference=True),
    Case("power.predict:gather", "power", "JITPowerLimit predict_many (rows)", "numpy 2 random gathers", "floor", "decision",
         "two dependent random reads per query (table position, then entry) over tables of the same size, numpy fancy indexing",
         _power_gather),
    Case("checkpoint.save:write", "checkpoint", "PruningGTS save", "write + fsync same bytes", "floor", "job",
         "the bytes a checkpoint must write: the same number of bytes written from memory to one file and fsynced",
         _checkpoint("save")),
    Case("checkpoint.load:read", "checkpoint", "PruningGTS load", "read same bytes", "floor", "job",
         "reading the same number of bytes into a preallocated buffer", _checkpoint("load")),
    Case("lifecycle.churn:no-removal", "lifecycle", "GTS churn with remove_jobs", "same churn, no removal", "floor",
         "registration", "the same registrations, predictions and observations on a fleet that never removes a job",
         _churn),
    Case("replay.runs:zeus", "replay", "replay_fleet (synthetic fleet)", "zeus Simulator per group", "reference", "run",
         "zeus 0.16.0's Simulator.simulate_one_alibaba_group, one simulator per group, as run_alibaba.py", _replay,
         target=1000, needs_reference=True),
    Case("replay.cli-process:zeus", "replay", "banditfleet replay process (--out, default outputs)", "zeus run_alibaba.py per group",
         "reference", "run", "zeus 0.16.0 on groups of the same fleet exported with --export-trace, a Simulator per group as "
         "run_alibaba.py", _replay_cli, target=1000, needs_reference=True),
    Case("replay.simulator-job:zeus", "replay", "Simulator.simulate_one_job (banditfleet optimizers)", "zeus Simulator, same call",
         "reference", "call", "zeus 0.16.0's Simulator with its own PruningGTS and JIT optimizers, same trace, job and seeds",
         _simulator("job"), target=50, needs_reference=True),
    Case("replay.simulator-group:zeus", "replay", "Simulator.simulate_one_alibaba_group (banditfleet optimizers)",
         "zeus Simulator, same call", "reference", "call",
         "zeus 0.16.0's Simulator with its own PruningGTS (concurrency) and JIT optimizers, same group and seeds",
         _simulator("group"), target=50, needs_reference=True),
]

from banditfleet.bench.concurrency import CASES as _CONCURRENCY_CASES  # noqa: E402 (needs Case, Config, Prepared)

CASES += _CONCURRENCY_CASES

from banditfleet.bench.serve_cases import CASES as _SERVE_CASES  # noqa: E402 (needs Case, Config, Prepared)

CASES += _SERVE_CASES

GROUPS: list[str] = list(dict.fromkeys(c.group for c in CASES))


def select(names: list[str] | None = None) -> list[Case]:
    """The cases whose name or group is in ``names`` (all with None), in table order."""
    if not names:
        return list(CASES)
    wanted = set(names)
    unknown = wanted - {c.name for c in CASES} - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown case or group {sorted(unknown)}; groups: {GROUPS}")
    return [c for c in CASES if c.name in wanted or c.group in wanted]

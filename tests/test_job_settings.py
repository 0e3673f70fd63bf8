"""Per-job settings (window size, prior, explorations, pruning rounds, seed) given at registration.

Differential: several jobs with different settings share one banditfleet
optimizer, and each is compared with its own reference optimizer
(``zeus._legacy.policy``, zeus==0.16.0) constructed with that job's settings:
every decision equal, every arm's posterior and random stream bit-identical.

The reference fixes two of the settings Zeus's batch-size-optimizer server
takes per job: its PruningGTS always runs 2 pruning rounds and gives the
survivors' bandit 2 explorations, and its GTS keeps every reward. The
reference is given the other values through its own parameters: its
``PruningExploreManager`` takes ``num_pruning_rounds``, its ``GaussianTS``
takes ``num_exploration`` (swapped in while the reference builds the
bandit), and a window of ``W`` rewards is the reference's history cut to its
last ``W - 1`` rewards before each observe (which appends the new one) --
the window of Zeus's server (the last ``W`` measurements, the new one included).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("zeus", reason="differential tests need the reference package zeus==0.16.0")

import zeus._legacy.policy.optimizer as refmod  # noqa: E402
from zeus._legacy.job import Job as ZeusJob  # noqa: E402

import settings_scenario  # noqa: E402
from banditfleet import GTSBatchSizeOptimizer, PruningGTSBatchSizeOptimizer  # noqa: E402
from banditfleet import _boundary as B  # noqa: E402
from banditfleet.errors import ConfigurationError, JobConflictError, PruningExhaustedError  # noqa: E402
from banditfleet.rng_state import export_state  # noqa: E402

pytestmark = pytest.mark.reference

DATA = Path(__file__).parent / "data"
BATCH_SIZES = [8, 16, 24, 32, 48, 64, 96, 128, 256]


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def reference_explorations(n: int):
    """While the reference builds a survivors' bandit, give it ``n`` explorations per arm."""
    original = refmod.GaussianTS

    def build(*args, **kwargs):
        kwargs["num_exploration"] = n
        return original(*args, **kwargs)

    refmod.GaussianTS = build
    try:
        yield
    finally:
        refmod.GaussianTS = original


def _cut_history(history: list, window: int) -> None:
    """Leave the last ``window - 1`` rewards so the reference's next append makes a window."""
    if window > 0 and len(history) >= window:
        del history[: len(history) - (window - 1)]


def _same_arms(ours, key, mab, arms) -> None:
    state = ours.arm_state(key)
    for arm in arms:
        got = state[arm]
        assert got.posterior_mean == mab.arm_param_mean[arm], arm
        assert got.posterior_precision == mab.arm_param_prec[arm], arm
        assert got.reward_precision == mab.arm_reward_prec[arm], arm
        assert got.observations == mab.arm_num_observations[arm], arm
    assert export_state(ours._store.streams, ours._store.row(key)) == mab.rng.bit_generator.state


# ---------------------------------------------------------------------------- GTS


@st.composite
def gts_fleets(draw):
    learn = draw(st.booleans())
    n_jobs = draw(st.integers(2, 5))
    jobs = []
    for _ in range(n_jobs):
        arms = draw(st.lists(st.sampled_from(BATCH_SIZES), min_size=1, max_size=5, unique=True))
        job = dict(
            arms=arms,
            prior_mean=draw(st.sampled_from([0.0, -40.0, 3.5])),
            prior_precision=draw(st.sampled_from([0.0, 1e-3, 0.2] if learn else [1e-3, 0.2])),
            num_exploration=draw(st.integers(0, 3)),
            seed=draw(st.one_of(st.sampled_from([123456, 0, 2**64 - 1]), st.integers(0, 2**64 - 1))),
        )
        if learn:
            job["window_size"] = draw(st.sampled_from([0, 0, 2, 3, 5]))
        jobs.append(job)
    return dict(
        learn=learn,
        reward_precision=draw(st.sampled_from([0.0, 0.5])) if learn else 0.5,
        jobs=jobs,
        batch=draw(st.booleans()),
        steps=draw(st.integers(5, 30)),
        rng_seed=draw(st.integers(0, 2**32 - 1)),
    )


def run_gts(fleet):
    rng = np.random.default_rng(fleet["rng_seed"])
    learn = fleet["learn"]
    ours = GTSBatchSizeOptimizer(learn, reward_precision=fleet["reward_precision"], verbose=False)
    keys = [f"job{i}" for i in range(len(fleet["jobs"]))]
    per_job = {name: [j.get(name, 0) for j in fleet["jobs"]] for name in ("prior_mean", "prior_precision", "num_exploration", "seed")}
    windows = [j.get("window_size", 0) for j in fleet["jobs"]]
    kwargs = dict(
        prior_mean=per_job["prior_mean"],
        prior_precision=np.array(per_job["prior_precision"]),
        num_exploration=per_job["num_exploration"],
        seeds=np.array(per_job["seed"], np.uint64),
    )
    if learn:
        kwargs["window_size"] = windows
    ours.register_jobs(keys, [j["arms"] for j in fleet["jobs"]], **kwargs)
    refs = {}
    for key, job in zip(keys, fleet["jobs"]):
        with quiet():
            ref = refmod.GTSBatchSizeOptimizer(
                learn, reward_precision=fleet["reward_precision"], prior_mean=job["prior_mean"],
                prior_precision=job["prior_precision"], num_exploration=job["num_exploration"], seed=job["seed"], verbose=False,
            )
            ref.register_job(key, list(job["arms"]))
        refs[key] = ref
    window_of = dict(zip(keys, windows))
    for _ in range(fleet["steps"]):
        picked = [keys[i] for i in rng.integers(0, len(keys), size=int(rng.integers(1, 2 * len(keys))))]
        want = []
        for key in picked:
            with quiet():
                want.append(refs[key].predict(key))
        if fleet["batch"]:
            got = ours.predict_many(picked).tolist()
        else:
            got = [ours.predict(key) for key in picked]
        assert got == want
        costs = [float(round(rng.uniform(1.0, 50.0), int(rng.integers(0, 3)))) for _ in picked]
        for key, bs, c in zip(picked, want, costs):
            _cut_history(refs[key].history[key][bs], window_of[key])
            with quiet():
                refs[key].observe(key, bs, c)
        if fleet["batch"]:
            ours.observe_many(picked, want, costs)
        else:
            for key, bs, c in zip(picked, want, costs):
                ours.observe(key, bs, c)
        for key in set(picked):
            mab = refs[key].mabs[key]
            _same_arms(ours, key, mab, mab.arms)


@settings(max_examples=60)
@given(fleet=gts_fleets())
def test_gts_jobs_with_their_own_settings_match_their_own_reference(fleet):
    run_gts(fleet)


def test_gts_mixed_windows_really_forget():
    """Windows 0 and >= 2 in one optimizer: a windowed arm's precision is 1/var of its last W rewards only."""
    opt = GTSBatchSizeOptimizer(True, verbose=False)
    opt.register_jobs(["all", "w2", "w3"], [[8], [8], [8]], window_size=[0, 2, 3])
    rewards = [-5.0, -1.0, -2.0, -9.0, -4.0]
    for r in rewards:
        opt.observe_many(["all", "w2", "w3"], [8, 8, 8], [-r, -r, -r])
    for key, window in (("all", 0), ("w2", 2), ("w3", 3)):
        kept = np.array(rewards if window == 0 else rewards[-window:])
        assert opt.arm_state(key)[8].reward_precision == 1.0 / np.var(kept)
        assert opt.job_settings(key)["window_size"] == window


# ------------------------------------------------------------------------ PruningGTS


@st.composite
def pruning_fleets(draw):
    n_jobs = draw(st.integers(2, 4))
    jobs = []
    for _ in range(n_jobs):
        arms = draw(st.lists(st.sampled_from(BATCH_SIZES), min_size=1, max_size=6, unique=True))
        jobs.append(
            dict(
                arms=arms,
                default=draw(st.sampled_from(arms)),
                window_size=draw(st.sampled_from([0, 0, 2, 3, 6])),
                prior_mean=draw(st.sampled_from([0.0, -30.0])),
                prior_precision=draw(st.sampled_from([0.0, 1e-3])),
                num_exploration=draw(st.integers(0, 3)),
                # With one round a survivor has one reward, which the reference's PruningGTS
                # asserts against (Zeus's server takes its precision as infinite, as ours does).
                num_pruning_rounds=draw(st.integers(2, 3)),
                seed=draw(st.integers(0, 2**64 - 1)),
            )
        )
    return dict(
        jobs=jobs,
        batch=draw(st.booleans()),
        fail=draw(st.sampled_from([0.0, 0.2, 0.4])),
        steps=draw(st.sampled_from([40, 120])),
        rng_seed=draw(st.integers(0, 2**32 - 1)),
    )


def run_pruning(fleet):
    rng = np.random.default_rng(fleet["rng_seed"])
    ours = PruningGTSBatchSizeOptimizer(verbose=False)
    zjobs = [ZeusJob("data", f"net{i}", "adam", 0.5, 10, default_bs=j["default"]) for i, j in enumerate(fleet["jobs"])]
    names = ("window_size", "prior_mean", "prior_precision", "num_exploration", "num_pruning_rounds")
    kwargs = {name: [j[name] for j in fleet["jobs"]] for name in names}
    ours.register_jobs(zjobs, [j["arms"] for j in fleet["jobs"]], seeds=[j["seed"] for j in fleet["jobs"]], **kwargs)
    refs = {}
    for zjob, job in zip(zjobs, fleet["jobs"]):
        with quiet():
            ref = refmod.PruningGTSBatchSizeOptimizer(
                prior_mean=job["prior_mean"], prior_precision=job["prior_precision"], window_size=job["window_size"],
                seed=job["seed"], verbose=False,
            )
            ref.register_job(zjob, list(job["arms"]))
        # The reference's own manager, with this job's number of rounds.
        ref.exp_manager[zjob] = refmod.PruningExploreManager(sorted(job["arms"]), job["default"], job["num_pruning_rounds"])
        refs[zjob] = (ref, job)
    alive = list(zjobs)
    stats = dict(thompson=0, exhausted=0)
    base = {(z, bs): float(rng.uniform(1.0, 100.0)) for z, j in zip(zjobs, fleet["jobs"]) for bs in j["arms"]}
    for _ in range(fleet["steps"]):
        if not alive:
            break
        picked = [alive[i] for i in rng.permutation(len(alive))[: int(rng.integers(1, len(alive) + 1))]]
        want, keep = [], []
        for z in picked:
            ref, job = refs[z]
            try:
                with quiet(), reference_explorations(job["num_exploration"]):
                    want.append(ref.predict(z))
                keep.append(z)
            except ValueError:
                with pytest.raises(PruningExhaustedError):
                    ours.predict(z)
                alive.remove(z)
                stats["exhausted"] += 1
        if not keep:
            continue
        got = ours.predict_many(keep).tolist() if fleet["batch"] else [ours.predict(z) for z in keep]
        assert got == want
        costs = [base[(z, bs)] * float(rng.uniform(0.8, 1.25)) for z, bs in zip(keep, want)]
        reached = [bool(rng.random() >= fleet["fail"]) or bs == refs[z][1]["default"] for z, bs in zip(keep, want)]
        for z, bs, c, r in zip(keep, want, costs, reached):
            ref, job = refs[z]
            with quiet():
                ref.observe(z, bs, c, r)
        if fleet["batch"]:
            ours.observe_many(keep, want, costs, reached)
        else:
            for z, bs, c, r in zip(keep, want, costs, reached):
                ours.observe(z, bs, c, r)
        for z in keep:
            ref, _ = refs[z]
            mab = ref.mabs.get(z)
            if mab is None:
                assert ours.survivors(z) is None
            else:
                assert ours.survivors(z) == list(mab.arms)
                _same_arms(ours, z, mab, mab.arms)
    stats["thompson"] = sum(z in refs[z][0].mabs for z in zjobs)
    return stats


@settings(max_examples=40)
@given(fleet=pruning_fleets())
def test_pruning_jobs_with_their_own_settings_match_their_own_reference(fleet):
    run_pruning(fleet)


def test_pruning_fleets_reach_thompson_sampling_and_exhaustion():
    """The generated fleets really cover the bandit stage (with its explorations) and exhausted pruning."""
    totals = dict(thompson=0, exhausted=0)
    rng = np.random.default_rng(7)
    for k in range(8):
        jobs = []
        for _ in range(3):
            arms = rng.choice(BATCH_SIZES, int(rng.integers(2, 6)), replace=False).tolist()
            jobs.append(dict(arms=arms, default=arms[0], window_size=[0, 2, 3, 6][k % 4], prior_mean=-1.0 * k,
                             prior_precision=[0.0, 1e-3][k % 2], num_exploration=k % 4, num_pruning_rounds=2 + k % 2,
                             seed=1000 + k))
        fleet = dict(jobs=jobs, batch=k % 2 == 0, fail=[0.0, 0.4][k % 2], steps=120, rng_seed=k)
        for key, value in run_pruning(fleet).items():
            totals[key] += value
    assert totals["thompson"] >= 8 and totals["exhausted"] >= 1, totals


def test_pruning_rounds_per_job_are_really_different():
    """One round or three: the jobs reach Thompson sampling after different numbers of decisions."""
    opt = PruningGTSBatchSizeOptimizer(verbose=False)
    opt.register_jobs(["one", "three"], [[8, 16, 32], [8, 16, 32]], default_bs=16, num_pruning_rounds=[1, 3])
    decisions = {"one": 0, "three": 0}
    for key in decisions:
        while opt.survivors(key) is None:
            bs = opt.predict(key)
            decisions[key] += 1
            opt.observe(key, bs, float(bs), True)
    # One round tries each of the 3 batch sizes once, three rounds three times (the
    # decision that ends pruning already comes from the bandit).
    assert decisions == {"one": 4, "three": 10}


# ------------------------------------------------------------- validation, conflicts


BAD = {
    "window_size": [-1, 1, 2.0, True, "3", 2**20 + 1, 10**400],
    "prior_mean": [float("nan"), float("inf"), "x", True, 10**400],
    "prior_precision": [-1.0, float("nan"), float("inf"), "0.1"],
    "num_exploration": [-1, 1.5, True, 2**63],
    "num_pruning_rounds": [0, -2, 1.0, False],
    "seeds": [-1, 2**64, 1.0, True],
}


def _snapshot(opt):
    s = opt._store
    return s.keys(), {k: v.tobytes() for k, v in s.export_arrays().items()}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("kind", ["gts", "pruning"])
def test_bad_settings_name_the_job_and_register_nothing(name, kind):
    if kind == "gts":
        if name == "num_pruning_rounds":
            pytest.skip("GTS has no pruning")
        opt = GTSBatchSizeOptimizer(True, verbose=False)
        extra = {}
    else:
        opt = PruningGTSBatchSizeOptimizer(verbose=False)
        extra = {"default_bs": 16}
    opt.register_jobs(["old"], [[8, 16]], **extra)
    before = _snapshot(opt)
    for bad in BAD[name]:
        values = [0 if name != "num_pruning_rounds" else 1, bad] if name not in ("prior_mean", "prior_precision") else [0.0, bad]
        if name == "seeds":
            values = [1, bad]
        with pytest.raises(ConfigurationError) as err:
            opt.register_jobs(["fine", "broken"], [[8, 16], [8, 16]], **extra, **{name: values})
        assert "'broken'" in str(err.value) and B.shown(bad) in str(err.value)
        assert _snapshot(opt) == before
        # One value for the whole batch.
        with pytest.raises(ConfigurationError):
            opt.register_jobs(["fine", "broken"], [[8, 16], [8, 16]], **extra, **{name: bad})
        assert _snapshot(opt) == before
    with pytest.raises(ConfigurationError, match="expected 2 values"):
        opt.register_jobs(["fine", "broken"], [[8, 16], [8, 16]], **extra, **{name: [2, 2, 2]})
    assert _snapshot(opt) == before


def test_known_precision_refuses_windows_and_zero_priors():
    opt = GTSBatchSizeOptimizer(False, reward_precision=0.0, prior_precision=1.0, verbose=False)
    with pytest.raises(ConfigurationError, match="'b'.*window_size=3"):
        opt.register_jobs(["a", "b"], [[8], [8]], window_size=[0, 3])
    with pytest.raises(ConfigurationError, match="'b'.*prior_precision=0.0"):
        opt.register_jobs(["a", "b"], [[8], [8]], prior_precision=[1.0, 0.0])
    assert len(opt) == 0


@pytest.mark.parametrize("kind", ["gts", "pruning"])
def test_registering_again_with_other_settings_is_a_conflict(kind):
    if kind == "gts":
        opt = GTSBatchSizeOptimizer(True, verbose=False)
        extra = {}
        settings_ = dict(window_size=4, prior_mean=-3.0, prior_precision=0.5, num_exploration=3, seed=77)
    else:
        opt = PruningGTSBatchSizeOptimizer(verbose=False)
        extra = {"default_bs": 16}
        settings_ = dict(window_size=4, prior_mean=-3.0, prior_precision=0.5, num_exploration=3, num_pruning_rounds=3, seed=77)
    opt.register_job("j", [8, 16], **extra, **settings_)
    before = _snapshot(opt)
    opt.register_job("j", [8, 16], **extra, **settings_)  # the same: nothing changes
    assert _snapshot(opt) == before
    for name, value in settings_.items():
        other = dict(settings_, **{name: value + 2})
        with pytest.raises(JobConflictError, match=f"'j'.*{name}"):
            opt.register_job("j", [8, 16], **extra, **other)
        assert _snapshot(opt) == before
    # Leaving a setting out means the optimizer's value, which differs here.
    with pytest.raises(JobConflictError):
        opt.register_job("j", [8, 16], **extra)
    # Two entries of one new key in a batch must agree too.
    with pytest.raises(JobConflictError, match="'k'"):
        opt.register_jobs(["k", "k"], [[8, 16], [8, 16]], **extra, prior_mean=[1.0, 2.0])
    assert _snapshot(opt) == before
    assert opt.job_settings("j") == settings_


# ----------------------------------------------------------- journal and checkpoints


def _mixed_pruning(opt):
    opt.register_jobs(
        ["a", "b", "c"], [[8, 16, 32], [8, 16, 32, 64], [16, 32]], default_bs=16,
        window_size=[0, 3, 5], prior_mean=[0.0, -10.0, 5.0], num_exploration=[2, 0, 3],
        num_pruning_rounds=[1, 2, 3], seeds=[1, 2, 3],
    )
    opt.register_job("d", [8, 16], 8, window_size=2, seed=4)


def _steps(opt, t0, t1):
    out = []
    for t in range(t0, t1):
        keys = ["a", "b", "c", "d"]
        bs = opt.predict_many(keys)
        opt.observe_many(keys, bs, [float(b % 13 + t % 4 + 1) for b in bs], [True] * 4)
        out.extend(bs.tolist())
    return out


def test_journal_recovers_per_job_settings(tmp_path):
    opt = PruningGTSBatchSizeOptimizer.open(tmp_path)
    twin = PruningGTSBatchSizeOptimizer(verbose=False)
    _mixed_pruning(opt)
    _mixed_pruning(twin)
    assert _steps(opt, 0, 12) == _steps(twin, 0, 12)
    opt.close()
    recovered = PruningGTSBatchSizeOptimizer.open(tmp_path)
    assert _snapshot(recovered) == _snapshot(twin)
    assert _steps(recovered, 12, 20) == _steps(twin, 12, 20)
    recovered.checkpoint()
    recovered.close()
    again = PruningGTSBatchSizeOptimizer.open(tmp_path)
    assert _snapshot(again) == _snapshot(twin)
    again.close()


def test_checkpoint_keeps_per_job_settings(tmp_path):
    opt = PruningGTSBatchSizeOptimizer(verbose=False)
    _mixed_pruning(opt)
    _steps(opt, 0, 10)
    opt.save(tmp_path / "f.bfc")
    loaded = PruningGTSBatchSizeOptimizer.load(tmp_path / "f.bfc")
    assert _snapshot(loaded) == _snapshot(opt)
    for key in "abcd":
        assert loaded.job_settings(key) == opt.job_settings(key)
    assert _steps(loaded, 10, 20) == _steps(opt, 10, 20)


def test_a_forged_window_layout_is_refused(tmp_path):
    from banditfleet.checkpoint import read_checkpoint, write_checkpoint
    from banditfleet.errors import CheckpointError

    opt = PruningGTSBatchSizeOptimizer(verbose=False)
    _mixed_pruning(opt)
    opt.save(tmp_path / "f.bfc")
    header, keys, arrays = read_checkpoint(tmp_path / "f.bfc")
    for name, change in (("arm.slot_offset", lambda a: a + 1), ("arm.slot_window", lambda a: a * 3)):
        forged = dict(arrays)
        forged[name] = change(arrays[name].copy())
        write_checkpoint(tmp_path / "g.bfc", header["optimizer"], header["settings"], keys, forged)
        with pytest.raises(CheckpointError):
            PruningGTSBatchSizeOptimizer.load(tmp_path / "g.bfc")


def test_ring_pool_holds_exactly_the_windows_each_contiguous():
    opt = PruningGTSBatchSizeOptimizer(window_size=4, verbose=False)
    windows = [0, 3, 2, 4, 7, 0]
    arms = [[8, 16], [8, 16, 32], [16], [8, 16, 32, 64], [8, 32], [16, 32]]
    opt.register_jobs([f"j{i}" for i in range(6)], arms, default_bs=[a[0] for a in arms], window_size=windows)
    opt.register_job("dflt", [8, 16], 8)
    s = opt._store
    n = s.n_arms
    assert int(s.ring_used[0]) == sum(w * len(a) for w, a in zip(windows, arms)) + 4 * 2
    ring = s.slot_window[:n] > 0
    lo = s.slot_offset[:n][ring]
    hi = lo + s.slot_window[:n][ring]
    order = np.argsort(lo)
    assert lo[order][0] == 0 and (lo[order][1:] == hi[order][:-1]).all()  # tiled, no gaps or overlaps


# ------------------------------------------------------- checkpoints from before


def _reference_for(cls_name, cfg):
    with quiet():
        if cls_name == "GTSBatchSizeOptimizer":
            return refmod.GTSBatchSizeOptimizer(verbose=False, **cfg)
        return refmod.PruningGTSBatchSizeOptimizer(verbose=False, **cfg)


@pytest.mark.parametrize("name", sorted(settings_scenario.SCENARIOS))
def test_checkpoints_from_before_per_job_settings_load_and_continue_like_the_reference(name):
    cls_name, cfg = settings_scenario.SCENARIOS[name]
    cls = GTSBatchSizeOptimizer if cls_name == "GTSBatchSizeOptimizer" else PruningGTSBatchSizeOptimizer
    loaded = cls.load(DATA / f"pre_settings_{name}.bfc")
    # The loaded jobs take the optimizer-wide settings.
    for key in settings_scenario.JOBS:
        got = loaded.job_settings(key)
        for setting, value in cfg.items():
            if setting in got:
                assert got[setting] == value, (key, setting)
    # The reference, driven through the same calls from the start.
    pruning = cls_name.startswith("Pruning")
    ref = _reference_for(cls_name, cfg)
    zjobs = {k: ZeusJob("data", k, "adam", 0.5, 10, default_bs=d) for k, (_, d) in settings_scenario.JOBS.items()}
    key = (lambda k: zjobs[k]) if pruning else (lambda k: k)
    with quiet():
        settings_scenario.register(ref, pruning, key)
        settings_scenario.drive(ref, 0, settings_scenario.PREFIX, key)
        want = settings_scenario.drive(ref, settings_scenario.PREFIX, settings_scenario.PREFIX + 8, key)
    got = settings_scenario.drive(loaded, settings_scenario.PREFIX, settings_scenario.PREFIX + 8)
    assert got == want


def test_a_journaled_folder_from_before_per_job_settings_recovers_and_continues_like_the_reference(tmp_path):
    import shutil

    folder = tmp_path / "fleet"
    shutil.copytree(DATA / "pre_settings_folder", folder)
    # Settings given for the folder are checked against the stored ones (which lack the new ones).
    opt = PruningGTSBatchSizeOptimizer.open(folder, window_size=3)
    assert [opt.job_settings(k)["seed"] for k in settings_scenario.JOBS] == [5, 6, 7]
    assert all(opt.job_settings(k)["window_size"] == 3 for k in settings_scenario.JOBS)
    refs = {}
    for (name, (arms, default)), seed in zip(settings_scenario.JOBS.items(), [5, 6, 7]):
        with quiet():
            ref = refmod.PruningGTSBatchSizeOptimizer(window_size=3, seed=seed, verbose=False)
            z = ZeusJob("data", name, "adam", 0.5, 10, default_bs=default)
            ref.register_job(z, list(arms))
        refs[name] = (ref, z)
    for t in range(settings_scenario.PREFIX + 8):
        for name in settings_scenario.JOBS:
            ref, z = refs[name]
            with quiet():
                bs = ref.predict(z)
                ref.observe(z, bs, settings_scenario.cost(name, bs, t), settings_scenario.converged(bs))
            if t >= settings_scenario.PREFIX:
                assert opt.predict(name) == bs
                opt.observe(name, bs, settings_scenario.cost(name, bs, t), settings_scenario.converged(bs))
    opt.close()


def test_removal_compaction_and_reset_keep_each_jobs_settings_and_windows():
    """Windows 0 and >= 2 in one store through removals, compactions (rings move) and resets:
    every surviving job still equals its own reference; a reset job equals a new reference."""
    rng = np.random.default_rng(11)
    n = 30
    keys = [f"j{i}" for i in range(n)]
    windows = [[0, 2, 3, 5][i % 4] for i in range(n)]
    seeds = [100 + i for i in range(n)]
    priors = [-float(i % 3) for i in range(n)]
    arms = [[8, 16, 32][: 1 + i % 3] for i in range(n)]
    ours = GTSBatchSizeOptimizer(True, verbose=False)
    ours.register_jobs(keys, arms, seeds=seeds, window_size=windows, prior_mean=priors)

    def reference(i):
        with quiet():
            ref = refmod.GTSBatchSizeOptimizer(True, prior_mean=priors[i], seed=seeds[i], verbose=False)
            ref.register_job(keys[i], list(arms[i]))
        return ref

    refs = {k: reference(i) for i, k in enumerate(keys)}
    window_of = dict(zip(keys, windows))

    def steps(alive, count):
        for _ in range(count):
            for key in alive:
                with quiet():
                    bs = refs[key].predict(key)
                assert ours.predict(key) == bs
                c = float(rng.uniform(1.0, 9.0))
                _cut_history(refs[key].history[key][bs], window_of[key])
                with quiet():
                    refs[key].observe(key, bs, c)
                ours.observe(key, bs, c)

    alive = list(keys)
    steps(alive, 6)
    removed = alive[::3]
    ours.remove_jobs(removed)
    alive = [k for k in alive if k not in removed]
    ours._store.compact()
    for key in alive:
        mab = refs[key].mabs[key]
        _same_arms(ours, key, mab, mab.arms)
    steps(alive, 4)
    reset = alive[:5]
    ours.reset_jobs(reset)
    for key in reset:
        refs[key] = reference(keys.index(key))
        assert ours.job_settings(key)["window_size"] == window_of[key]
    steps(alive, 6)
    for key in alive:
        mab = refs[key].mabs[key]
        _same_arms(ours, key, mab, mab.arms)
    s = ours._store
    s.compact()
    live_ring = sum(window_of[k] * len(arms[keys.index(k)]) for k in alive)
    assert int(s.ring_used[0]) == live_ring  # the ring pool holds the live windows only

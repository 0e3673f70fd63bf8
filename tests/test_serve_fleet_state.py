"""The serve state's batch paths against its single-job protocol.

``ZeusServerState.predict_many`` / ``predict_each`` / ``report_many`` decide a
batch with one Thompson-sampling kernel call, vectorized bookkeeping on the
fleet store and the trial table, and one journal record. Their reference is
the single-job path (``predict`` / ``report``), which the differential tests
compare with Zeus 0.16.0's own server: a twin state gets the same entries one
by one, and every answer, refusal, snapshot and recovered folder must be equal.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditfleet.serve import zeus_state
from banditfleet.serve.zeus_state import ZeusServerError, ZeusServerState
from hypothesis_budget import examples


def _spec(j: int, seed: int) -> dict:
    return {"job_id": f"s-{j}", "job_id_prefix": "s", "batch_sizes": [16, 32, 64, 128] if j % 2 else [32, 64],
            "default_batch_size": 32,
            "eta_knob": 0.5, "beta_knob": 2.0 if j % 3 else None, "target_metric": 0.5,
            "higher_is_better_metric": True, "max_epochs": 3, "num_pruning_rounds": 1 + j % 2,
            "window_size": j % 3, "mab_prior_mean": 0.0, "mab_prior_precision": 0.0,
            "mab_num_explorations": j % 3, "mab_seed": seed + j, "max_power": 300.0, "number_of_gpus": 1,
            "gpu_model": "A40"}


def _snapshot(state: ZeusServerState) -> dict:
    return {k: state.job_state(k) for k in sorted(state.jobs)}


def _one(state: ZeusServerState, call, *args):
    try:
        return call(*args)
    except ZeusServerError as exc:
        return (exc.status, exc.message)


N_JOBS = 4
IDS = st.integers(0, N_JOBS)  # N_JOBS itself is never registered: an unknown job

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("predicts"), st.lists(IDS, min_size=1, max_size=9)),
        st.tuples(st.just("each"), st.lists(IDS, min_size=1, max_size=9)),
        st.tuples(st.just("reports"), st.lists(st.tuples(st.integers(0, N_JOBS - 1), st.integers(0, 30),
                                                         st.sampled_from([10.0, 11.0, 13.0, 40.0]),
                                                         st.sampled_from([0.6, 0.6, 0.3])), min_size=1, max_size=9)),
        st.tuples(st.just("report_all"), st.just(0)),
        st.tuples(st.just("end"), st.integers(0, N_JOBS - 1), st.integers(0, 30)),
        st.tuples(st.just("delete"), st.integers(0, N_JOBS - 1)),
        st.tuples(st.just("register"), st.integers(0, N_JOBS - 1)),
        st.tuples(st.just("compact"), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0)),
    ),
    max_size=40,
).map(lambda ops: [op for pair in zip(ops, [("predicts", list(range(N_JOBS)) * 2), ("report_all", 0)] * len(ops))
                   for op in pair])


@pytest.mark.parametrize("small_batch", [0, 8], ids=["vectorized", "entry-by-entry"])
@settings(max_examples=examples(20), deadline=None)
@given(ops=OPS, seed=st.integers(0, 2**32))
def test_batches_equal_single_calls_and_recover(tmp_path_factory, small_batch, ops, seed):
    """Both batch paths: the vectorized one (every batch, with ``_SMALL_BATCH`` 0) and
    the entry-by-entry one the state takes for batches of at most 8 entries."""
    saved, zeus_state._SMALL_BATCH = zeus_state._SMALL_BATCH, small_batch
    try:
        _scenario(tmp_path_factory, ops, seed)
    finally:
        zeus_state._SMALL_BATCH = saved


def _scenario(tmp_path_factory, ops, seed):
    folder = tmp_path_factory.mktemp("fleet") / "f"
    live = ZeusServerState.open(folder, fsync="never")
    twin = ZeusServerState()
    issued: dict[int, list[dict]] = {}
    try:
        for j in range(N_JOBS):
            assert live.register(_spec(j, seed)) == twin.register(_spec(j, seed))
        for op in ops:
            kind = op[0]
            if kind == "reopen":
                live.close()
                live = ZeusServerState.open(folder, fsync="never")
                assert _snapshot(live) == _snapshot(twin)
                continue
            if kind == "compact":
                live.trials.compact()
                continue
            if kind in ("predicts", "each"):
                ids = [f"s-{j}" for j in op[1]]
                want = [_one(twin, twin.predict, job_id) for job_id in ids]
                if kind == "each":
                    got = [(a.status, a.message) if isinstance(a, ZeusServerError) else a for a in live.predict_each(ids)]
                    assert got == want
                else:
                    refused = [i for i, w in enumerate(want) if isinstance(w, tuple)]
                    if refused:
                        # The twin answered the entries before the refusal: undo by comparing with the
                        # refusal only (a refused batch must change nothing in the live state).
                        live_before = json.dumps(_snapshot(live))
                        try:
                            live.predict_many(ids)
                            raise AssertionError("a batch with a refused entry was accepted")
                        except ZeusServerError as exc:
                            assert exc.index == refused[0] and (exc.status, exc.message) == want[refused[0]]
                        assert json.dumps(_snapshot(live)) == live_before
                        # Bring the live state to the twin's: the entries the twin answered, one by one.
                        for job_id, w in zip(ids, want):
                            if not isinstance(w, tuple):
                                assert live.predict(job_id) == w
                    else:
                        sizes, numbers = live.predict_many(ids)
                        assert [{"job_id": i, "batch_size": b, "trial_number": n}
                                for i, b, n in zip(ids, sizes, numbers)] == want
                for w in want:
                    if isinstance(w, dict):
                        issued.setdefault(int(w["job_id"][2:]), []).append(w)
            elif kind == "reports":
                results = []
                for j, k, t, metric in op[1]:
                    ts = issued.get(j) or [{"job_id": f"s-{j}", "batch_size": 32, "trial_number": 1}]
                    results.append({**ts[k % len(ts)], "time": t, "energy": 1000.0, "metric": metric,
                                    "current_epoch": 3 if metric < 0.5 and k % 2 else 1})
                want = [_one(twin, twin.report, r) for r in results]
                got = [(a.status, a.message) if isinstance(a, ZeusServerError) else a for a in live.report_many(results)]
                assert got == want
            elif kind == "report_all":  # every trial issued so far converges: jobs reach their MAB stage
                results = [{**t, "time": 10.0 + t["batch_size"] / 16 + t["trial_number"] % 3, "energy": 1000.0,
                            "metric": 0.6, "current_epoch": 1} for ts in issued.values() for t in ts]
                want = [_one(twin, twin.report, r) for r in results]
                got = [(a.status, a.message) if isinstance(a, ZeusServerError) else a for a in live.report_many(results)]
                assert got == want
            elif kind == "end":
                ts = issued.get(op[1]) or [{"job_id": f"s-{op[1]}", "batch_size": 32, "trial_number": 1}]
                t = ts[op[2] % len(ts)]
                args = (t["job_id"], t["batch_size"], t["trial_number"])
                assert _one(live, live.end_trial, *args) == _one(twin, twin.end_trial, *args)
            elif kind == "delete":
                issued.pop(op[1], None)
                job_id = f"s-{op[1]}"
                assert _one(live, live.delete_job, job_id) == _one(twin, twin.delete_job, job_id)
            elif kind == "register":
                spec = _spec(op[1], seed)
                assert _one(live, live.register, spec) == _one(twin, twin.register, spec)
            assert _snapshot(live) == _snapshot(twin), op
        live.close()
        live = ZeusServerState.open(folder, fsync="never")
        assert _snapshot(live) == _snapshot(twin)
        ids = sorted(twin.jobs)  # the same next decisions, random streams included
        assert live.predict_each(ids) == [twin.predict(j) for j in ids]
    finally:
        live.close()


def test_a_batch_is_one_journal_record(tmp_path):
    state = ZeusServerState.open(tmp_path / "f", fsync="never")
    try:
        ids = [f"s-{j}" for j in range(N_JOBS)]
        for j in range(N_JOBS):
            state.register(_spec(j, 5))
        appends = []
        folder = state.folder
        real = folder.append
        folder.append = lambda data: appends.append(len(data)) or real(data)
        sizes, numbers = state.predict_many(ids + ids)  # two waves: explorations, then concurrent trials
        assert numbers == [1] * N_JOBS + [2] * N_JOBS and len(appends) == 1
        answers = state.report_many([{"job_id": i, "batch_size": b, "trial_number": n, "time": 10.0, "energy": 1.0,
                                      "metric": 0.9, "current_epoch": 1} for i, b, n in zip(ids + ids, sizes, numbers)])
        assert all(a["stop_train"] for a in answers) and len(appends) == 2
    finally:
        state.close()

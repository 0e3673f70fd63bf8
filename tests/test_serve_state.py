"""ZeusServerState's folder: checkpoints and journal replay give back the state in memory.

A journaled state and an in-memory twin (no folder) get the same random
operations; the journaled one checkpoints automatically (small
``checkpoint_bytes``) and on request, and is closed and reopened along the
way. After every reopen the recovered state must equal the twin's job by job
(spec, stage, minimum cost, trials, arms, random stream) and both must make
the same next decisions. Refused operations must change nothing.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_budget import examples
from banditfleet.serve.zeus_state import ZeusServerError, ZeusServerState


def _spec(j: int, seed: int, window: int) -> dict:
    return {"job_id": f"s-{j}", "job_id_prefix": "s", "batch_sizes": [16, 32, 64], "default_batch_size": 32,
            "eta_knob": 0.5, "beta_knob": 2.0, "target_metric": 0.5, "higher_is_better_metric": True,
            "max_epochs": 3, "num_pruning_rounds": 2, "window_size": window, "mab_prior_mean": 0.0,
            "mab_prior_precision": 0.0, "mab_num_explorations": 1, "mab_seed": seed if j % 2 else None,
            "max_power": 300.0, "number_of_gpus": 1, "gpu_model": "A40"}


def _apply(state: ZeusServerState, op: tuple, issued: dict) -> object:
    kind, j = op[0], op[1]
    job_id = f"s-{j}"
    try:
        if kind == "predict":
            t = state.predict(job_id)
            issued.setdefault(j, []).append(t)
            return t
        if kind == "report":
            ts = issued.get(j) or [{"job_id": job_id, "batch_size": 32, "trial_number": 1}]
            t = ts[op[2] % len(ts)]
            return state.report({**t, "time": op[3], "energy": 1000.0, "metric": op[4], "current_epoch": 3})
        if kind == "end":
            ts = issued.get(j) or [{"job_id": job_id, "batch_size": 32, "trial_number": 1}]
            t = ts[op[2] % len(ts)]
            return state.end_trial(t["job_id"], t["batch_size"], t["trial_number"])
        if kind == "delete":
            issued.pop(j, None)
            return state.delete_job(job_id)
    except ZeusServerError as exc:
        return (exc.status, exc.message)
    raise AssertionError(op)


def _snapshot(state: ZeusServerState) -> dict:
    return {k: state.job_state(k) for k in sorted(state.jobs)}


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("predict"), st.integers(0, 2)),
        st.tuples(st.just("report"), st.integers(0, 2), st.integers(0, 5), st.sampled_from([10.0, 11.0, 30.0]),
                  st.sampled_from([0.6, 0.6, 0.3])),
        st.tuples(st.just("end"), st.integers(0, 2), st.integers(0, 5)),
        st.tuples(st.just("delete"), st.integers(0, 2)),
        st.tuples(st.just("reopen"), st.just(0)),
        st.tuples(st.just("checkpoint"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=examples(15))
@given(ops=OPS, seed=st.integers(0, 2**32), checkpoint_bytes=st.sampled_from([None, 600, 4000]))
def test_recovery_equals_memory(tmp_path_factory, ops, seed, checkpoint_bytes):
    folder = tmp_path_factory.mktemp("state") / "f"
    live = ZeusServerState.open(folder, fsync="never", checkpoint_bytes=checkpoint_bytes)
    twin = ZeusServerState()
    try:
        for j in range(3):
            spec = _spec(j, seed + j, j)
            created, _ = live.register(spec)
            assert created
            # The twin gets the seed the live state drew for unseeded jobs (journaled, so recovery has it too).
            twin._apply_register(spec, live.jobs[spec["job_id"]].seed)
        issued_live: dict = {}
        issued_twin: dict = {}
        for op in ops:
            if op[0] == "reopen":
                live.close()
                live = ZeusServerState.open(folder, fsync="never", checkpoint_bytes=checkpoint_bytes)
                assert _snapshot(live) == _snapshot(twin)
                continue
            if op[0] == "checkpoint":
                live.checkpoint()
                continue
            before = json.dumps(_snapshot(twin))
            a = _apply(live, op, issued_live)
            b = _apply(twin, op, issued_twin)
            assert a == b
            if isinstance(b, tuple):  # refused: nothing changed
                assert json.dumps(_snapshot(twin)) == before
        live.close()
        live = ZeusServerState.open(folder, fsync="never")
        assert _snapshot(live) == _snapshot(twin)
        for j in range(3):  # the same next decisions, random streams included
            assert _apply(live, ("predict", j), {}) == _apply(twin, ("predict", j), {})
    finally:
        live.close()


def test_register_conflict_and_identity(tmp_path):
    state = ZeusServerState.open(tmp_path / "f", fsync="never")
    try:
        spec = _spec(1, 5, 0)
        assert state.register(spec) == (True, spec)
        assert state.register(dict(spec)) == (False, spec)
        with pytest.raises(ZeusServerError) as info:
            state.register({**spec, "eta_knob": 0.7})
        assert info.value.status == 409
        created, echoed = state.register({**spec, "job_id": None})
        assert created and echoed["job_id"].startswith("s-") and echoed["job_id"] != spec["job_id"]
    finally:
        state.close()


def test_a_failed_fsync_refuses_every_later_request(tmp_path, monkeypatch):
    """After the journal fails, the server answers 503 (its memory may be ahead of the disk)."""
    import os

    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from banditfleet.serve.app import create_app

    app = create_app(tmp_path / "f", fsync="batch", checkpoint_on_shutdown=False)
    spec = _spec(1, 5, 0)
    with TestClient(app) as client:
        assert client.post("/jobs", json=spec).status_code == 201
        real_fsync = os.fsync

        def broken(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", broken)
        r = client.get("/jobs/batch_size", params={"job_id": spec["job_id"]})
        assert r.status_code == 503 and "restart the server" in r.json()["message"]
        monkeypatch.setattr(os, "fsync", real_fsync)
        for _ in range(2):  # even reads and refusals: the folder is no longer trusted
            assert client.get("/jobs/batch_size", params={"job_id": "unknown"}).status_code == 503
            assert client.post("/jobs", json=spec).status_code == 503
    # What reached the disk: the registration, acknowledged before the failure.
    from banditfleet.serve.zeus_state import ZeusServerState

    with ZeusServerState.open(tmp_path / "f") as again:
        assert again.job_state(spec["job_id"])["next_trial"] in (1, 2)


def test_responses_wait_for_their_fsync_and_share_them(tmp_path, monkeypatch):
    """Group commit at the server: no response starts before an fsync covered every journal byte
    written when its request was handled, and concurrent requests share fsyncs."""
    import asyncio
    import contextvars
    import os
    import time

    httpx = pytest.importorskip("httpx")
    pytest.importorskip("starlette")
    from banditfleet.serve.app import create_app

    app = create_app(tmp_path / "f", fsync="batch")
    ctx = app.state.bf
    folder = ctx.state.folder
    written_at_handling: contextvars.ContextVar[int] = contextvars.ContextVar("written", default=0)
    real_fsync = os.fsync
    violations: list[tuple[int, int]] = []

    def slow_fsync(fd: int) -> None:
        time.sleep(0.005)  # a slow disk, so requests pile up behind each fsync
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    for name in ("register", "predict", "report"):
        inner = getattr(ctx.state, name)

        def wrapped(*args, _inner=inner):
            try:
                return _inner(*args)
            finally:
                written_at_handling.set(folder._written)

        setattr(ctx.state, name, wrapped)

    async def checking_app(scope, receive, send):
        async def checked_send(message):
            if message["type"] == "http.response.start":
                needed = written_at_handling.get()
                if folder._durable < needed:
                    violations.append((folder._durable, needed))
            await send(message)

        await app(scope, receive, checked_send)

    async def one_client(client, j: int) -> int:
        spec = {**_spec(j, j, 0), "job_id": f"s-{j}"}
        n = 1 if (await client.post("/jobs", json=spec)).status_code == 201 else 0
        for _ in range(4):
            t = (await client.get("/jobs/batch_size", params={"job_id": spec["job_id"]})).json()
            r = await client.post("/report", json={**t, "time": 10.0, "energy": 1000.0, "metric": 0.6, "current_epoch": 3})
            assert r.status_code == 200
            n += 2
        return n

    async def main() -> int:
        transport = httpx.ASGITransport(app=checking_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            counts = await asyncio.gather(*(one_client(client, j) for j in range(16)))
        return sum(counts)

    before = folder.fsync_count
    changes = asyncio.run(main())
    fsyncs = folder.fsync_count - before
    ctx.close()
    assert changes == 16 * 9
    assert violations == []
    assert 0 < fsyncs < changes / 2, (fsyncs, changes)

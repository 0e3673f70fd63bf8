"""The edge of ``banditfleet serve``: authentication and the body limit through the
whole application, /healthz, /metrics, micro-batching (answers equal to one
request at a time), and the command line's refusals. One test starts a real
server process with a token file."""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile

import httpx
import pytest
from starlette.testclient import TestClient

from banditfleet.serve.edge import build_app
from serve_support import job_spec, start_server, stop_server


@pytest.fixture
def folder():
    with tempfile.TemporaryDirectory(prefix="bf-edge-") as d:
        yield d + "/state"


def _snapshot(app):
    st = app.state.bf.state
    return {k: st.job_state(k) for k in sorted(st.jobs)}, st.folder.journal_bytes


def test_token_is_required_everywhere_and_refusals_change_nothing(folder):
    app = build_app(folder, token="t0k3n", fsync="never")
    with TestClient(app) as c:
        ok = {"authorization": "Bearer t0k3n"}
        assert c.post("/jobs", content=json.dumps(job_spec("test-a")), headers=ok).status_code == 201
        before = _snapshot(app)
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "t0k3n"}):
            for method, path, body in (("POST", "/jobs", job_spec("test-b")), ("GET", "/jobs/batch_size?job_id=test-a", None),
                                       ("DELETE", "/jobs?job_id=test-a", None), ("GET", "/healthz", None),
                                       ("GET", "/metrics", None), ("POST", "/v1/jobs/reset", {"job_ids": ["test-a"]})):
                r = c.request(method, path, content=None if body is None else json.dumps(body), headers=headers)
                assert r.status_code == 401, (method, path, headers)
                assert r.headers["www-authenticate"].lower().startswith("bearer")
        assert _snapshot(app) == before
        assert c.get("/jobs/batch_size", params={"job_id": "test-a"}, headers=ok).json()["trial_number"] == 1
        metrics = c.get("/metrics", headers=ok).text
        assert 'banditfleet_http_requests_total{method="POST",endpoint="/jobs",status="401"} 3' in metrics


def test_body_limit_through_the_app(folder):
    app = build_app(folder, fsync="never", max_body_bytes=300)
    with TestClient(app) as c:
        before = _snapshot(app)
        spec = job_spec("test-" + "x" * 400)
        r = c.post("/jobs", content=json.dumps(spec))
        assert r.status_code == 413 and "300 bytes" in r.json()["message"]
        assert _snapshot(app) == before


def test_healthz_and_metrics(folder):
    app = build_app(folder, fsync="batch")
    with TestClient(app) as c:
        for i in range(3):
            c.post("/jobs", content=json.dumps(job_spec(f"test-{i}")))
        c.get("/jobs/batch_size", params={"job_id": "test-0"})
        c.get("/jobs/batch_size", params={"job_id": "unknown"})
        h = c.get("/healthz")
        assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["checks"]["jobs"] == 3
        r = c.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        lines = r.text.splitlines()
        assert "banditfleet_jobs 3" in lines
        assert 'banditfleet_http_requests_total{method="POST",endpoint="/jobs",status="201"} 3' in lines
        assert 'banditfleet_http_requests_total{method="GET",endpoint="/jobs/batch_size",status="400"} 1' in lines
        journal = [ln for ln in lines if ln.startswith("banditfleet_journal_bytes ")]
        assert journal and int(journal[0].split()[1]) == app.state.bf.state.folder.journal_bytes > 0
        assert any(ln.startswith("banditfleet_journal_fsyncs_total ") for ln in lines)
        app.state.bf.state.checkpoint()
        lines = c.get("/metrics").text.splitlines()
        assert any(ln.startswith("banditfleet_last_checkpoint_timestamp_seconds ") for ln in lines)
        # A closed folder is unhealthy.
        app.state.bf.state.folder.close()
        h = c.get("/healthz")
        assert h.status_code == 503 and h.json()["status"] == "unavailable"


def test_microbatched_predictions_equal_one_at_a_time():
    """Concurrent GET /jobs/batch_size through the micro-batcher get exactly the
    answers that the same requests get one at a time without it (same order of arrival)."""
    with tempfile.TemporaryDirectory() as d:
        on = build_app(d + "/on", fsync="never", microbatch=True)
        off = build_app(d + "/off", fsync="never", microbatch=False)
        ids = [f"test-{i}" for i in range(5)]
        requests = [ids[i % 5] for i in range(40)] + ["nope"]

        async def drive():
            out = {}
            for name, app in (("on", on), ("off", off)):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                    for j in ids:
                        assert (await c.post("/jobs", content=json.dumps(job_spec(j, mab_seed=9)))).status_code == 201
                    if name == "on":
                        rs = await asyncio.gather(*(c.get("/jobs/batch_size", params={"job_id": j}) for j in requests))
                        metrics = (await c.get("/metrics")).text.splitlines()
                        out["batches"] = next(int(ln.split()[1]) for ln in metrics
                                              if ln.startswith('banditfleet_microbatch{what="batches"}'))
                    else:
                        rs = [await c.get("/jobs/batch_size", params={"job_id": j}) for j in requests]
                    out[name] = [(r.status_code, r.json()) for r in rs]
            return out

        try:
            out = asyncio.run(drive())
            assert out["on"] == out["off"]
            assert out["on"][-1][0] == 400
            assert {tuple(sorted(b)) for s, b in out["on"][:-1]} == {("batch_size", "job_id", "trial_number")}
            assert 1 <= out["batches"] < len(requests)  # requests were decided together
        finally:
            on.state.bf.close()
            off.state.bf.close()


@pytest.mark.parametrize("argv, message", [
    (["--host", "0.0.0.0"], "refusing to bind"),
    (["--host", "10.0.0.1", "--token-file", "/nonexistent/token"], "cannot read the token file"),
])
def test_cli_refuses_insecure_binds_and_bad_token_files(tmp_path, capsys, argv, message):
    from banditfleet.cli import main

    assert main(["serve", "--folder", str(tmp_path / "f"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_real_server_with_a_token_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    server = start_server(tmp_path / "state", "--token-file", str(token))
    try:
        r = httpx.post(server.url + "/jobs", content=json.dumps(job_spec("test-1")))
        assert r.status_code == 401
        auth = {"authorization": "Bearer s3cret"}
        assert httpx.post(server.url + "/jobs", content=json.dumps(job_spec("test-1")), headers=auth).status_code == 201
        r = httpx.post(server.url + "/v1/jobs/batch_size", content=json.dumps({"job_ids": ["test-1", "test-1"]}), headers=auth)
        assert r.status_code == 200 and r.json()["trial_numbers"] == [1, 2]
        assert httpx.get(server.url + "/healthz", headers=auth).json()["status"] == "ok"
    finally:
        # uvicorn shuts down gracefully on SIGTERM, then exits by the same signal.
        assert stop_server(server) in (0, -signal.SIGTERM)

"""The direct path of ``banditfleet serve`` (:class:`banditfleet.serve.app.ZeusApp`) against the routed one.

The five Zeus endpoints are served by a raw ASGI dispatcher with typed fast
paths (orjson, no pydantic for well-typed bodies, precomputed response JSON)
and the edge (metrics, bearer token, body limit) applied inline. The same
application with an extra middleware routes every request through Starlette,
its middleware and the pydantic-validating handlers: the naive model. Both
get the same requests (crafted edge cases, then hypothesis-generated bodies)
and must give the same status, body bytes, content type and state.
"""

from __future__ import annotations

import json
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from banditfleet.serve.edge import build_app
from hypothesis_budget import examples
from serve_support import job_spec


class _PassThrough:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


TOKEN = "s3cr3t"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def pair():
    with tempfile.TemporaryDirectory(prefix="bf-direct-") as d:
        direct = build_app(d + "/direct", fsync="never", token=TOKEN, max_body_bytes=2048)
        routed = build_app(d + "/routed", fsync="never", token=TOKEN, max_body_bytes=2048,
                           middleware=[Middleware(_PassThrough)])
        assert direct._direct and not routed._direct  # the pair really is the two paths
        with TestClient(direct) as a, TestClient(routed) as b:
            yield direct, routed, a, b


def _state(app):
    st_ = app.state.bf.state
    return {k: st_.job_state(k) for k in sorted(st_.jobs)}


def _same(pair, method, url, content=None, headers=None):
    direct, routed, a, b = pair
    h = {**AUTH, **(headers or {})}
    ra = a.request(method, url, content=content, headers=h)
    rb = b.request(method, url, content=content, headers=h)
    assert (ra.status_code, ra.content) == (rb.status_code, rb.content), (method, url, content)
    assert ra.headers.get("content-type") == rb.headers.get("content-type")
    assert ra.headers.get("www-authenticate") == rb.headers.get("www-authenticate")
    return ra


def _setup_job(pair, job_id):
    spec = json.dumps(job_spec(job_id))
    _same(pair, "POST", "/jobs", spec)
    return _same(pair, "GET", f"/jobs/batch_size?job_id={job_id}").json()


def test_crafted_requests_answer_alike(pair):
    trial = _setup_job(pair, "test-a")
    ok = {"job_id": "test-a", "batch_size": trial["batch_size"], "trial_number": trial["trial_number"]}
    report = {**ok, "time": 10, "energy": 2000, "metric": 0.1, "current_epoch": 1}
    cases = [
        ("POST", "/jobs", json.dumps(job_spec("test-a")), None),                     # same spec again: 200
        ("POST", "/jobs", json.dumps({**job_spec("test-a"), "max_epochs": 7}), None),  # 409
        ("POST", "/jobs", json.dumps({**job_spec("test-b"), "batch_sizes": [8, 8]}), None),  # 422
        ("POST", "/jobs", b"{not json", None),
        ("POST", "/jobs", json.dumps(job_spec("test-c")), {"content-type": "text/plain"}),
        ("POST", "/jobs", json.dumps(job_spec("test-d")), {"content-type": "application/json; charset=utf-8"}),
        ("GET", "/jobs/batch_size?job_id=test-a", None, None),
        ("GET", "/jobs/batch_size?job_id=test%2Da", None, None),
        ("GET", "/jobs/batch_size?job_id=nope&job_id=test-a", None, None),
        ("GET", "/jobs/batch_size?job_id=", None, None),
        ("GET", "/jobs/batch_size", None, None),
        ("GET", "/jobs/batch_size?job_id=unknown", None, None),
        ("POST", "/report", json.dumps({**report, "time": "10"}), None),          # coerced by pydantic
        ("POST", "/report", json.dumps({**report, "batch_size": True}), None),
        ("POST", "/report", json.dumps({**report, "current_epoch": 1.0}), None),
        ("POST", "/report", json.dumps({**report, "metric": float("nan")}), None),
        ("POST", "/report", json.dumps({**report, "energy": 10**400}), None),
        ("POST", "/report", json.dumps({k: v for k, v in report.items() if k != "metric"}), None),
        ("POST", "/report", json.dumps([report]), None),
        ("POST", "/report", b"", None),
        ("POST", "/report", json.dumps(report), None),                             # keep training
        ("POST", "/report", json.dumps({**report, "metric": 0.9, "extra": 1}), None),  # converged
        ("POST", "/report", json.dumps({**report, "metric": 0.9}), None),           # already reported
        ("POST", "/report", json.dumps({**report, "trial_number": 99}), None),
        ("PATCH", "/trials", json.dumps({**ok, "trial_number": "1"}), None),
        ("PATCH", "/trials", json.dumps({**ok, "trial_number": 99}), None),
        ("PATCH", "/trials", json.dumps(ok), None),
        ("PATCH", "/trials", json.dumps(ok).encode("utf-16"), None),
        ("POST", "/trials", json.dumps(ok), None),                                  # 405
        ("DELETE", "/jobs?job_id=nope", None, None),
        ("POST", "/jobs", json.dumps(job_spec("test-" + "x" * 3000)), None),       # 413 (body limit)
        ("GET", "/jobs/batch_size?job_id=test-a", None, {"authorization": "Bearer wrong"}),
        ("PATCH", "/trials", json.dumps(ok), {"authorization": "bEaReR " + TOKEN}),
        ("DELETE", "/jobs?job_id=test-a", None, None),
        ("GET", "/jobs/batch_size?job_id=test-a", None, None),
    ]
    for method, url, content, headers in cases:
        _same(pair, method, url, content, headers)
    direct, routed, a, b = pair
    assert _state(direct) == _state(routed)
    assert direct.state.metrics.requests() == routed.state.metrics.requests()


def test_chunked_body_over_the_limit_is_refused_alike(pair):
    def chunks():
        yield b'{"job_id": "test-a", "batch_size": 8, "trial_number": 1, "pad": "'
        for _ in range(40):
            yield b"x" * 100
        yield b'"}'

    direct, routed, a, b = pair
    ra = a.request("PATCH", "/trials", content=chunks(), headers=AUTH)
    rb = b.request("PATCH", "/trials", content=chunks(), headers=AUTH)
    assert ra.status_code == rb.status_code == 413 and ra.content == rb.content


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=6), st.sampled_from(["test-h", "1", "2.5", "8"]))


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_bodies_answer_alike(pair, data):
    trial = _setup_job(pair, "test-h")
    fields = {"job_id": trial["job_id"], "batch_size": trial["batch_size"], "trial_number": trial["trial_number"],
              "time": 5.0, "energy": 900.0, "metric": 0.7, "current_epoch": 1}
    for name in data.draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        if data.draw(st.booleans()):
            fields[name] = data.draw(_scalars)
        else:
            del fields[name]
    path, method = data.draw(st.sampled_from([("/report", "POST"), ("/trials", "PATCH")]))
    _same(pair, method, path, json.dumps(fields))
    direct, routed, a, b = pair
    assert _state(direct) == _state(routed)


# ------------------------------------------------------------ the direct HTTP protocol
# uvicorn in this process (a thread per server): one with banditfleet's direct
# protocol, one with uvicorn's own; raw HTTP/1.1 bytes to both, same answers.

def _uvicorn_thread(app, http):
    import threading
    import time

    import uvicorn

    from serve_support import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=http, lifespan="on",
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    return server, thread, port


def _exchange(port, data: bytes, responses: int = 1) -> list[tuple[int, list, bytes]]:
    """Send raw bytes; read ``responses`` answers (status, headers without date/server, body)."""
    import socket

    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        buf = b""
        while len(out) < responses:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                assert chunk, f"connection closed after {len(out)} answers: {buf!r}"
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            headers = sorted(tuple(ln.split(b": ", 1)) for ln in lines[1:])
            length = int(dict(headers).get(b"content-length", b"0"))
            while len(buf) < length:
                chunk = s.recv(65536)
                assert chunk
                buf += chunk
            body, buf = buf[:length], buf[length:]
            out.append((status, [h for h in headers if h[0] not in (b"date", b"server")], body))
        if any((b"connection", b"close") in h for _, h, _ in out):
            assert s.recv(1) == b""  # closed after the answer
    return out


@pytest.fixture(scope="module", params=[False, True], ids=["single", "microbatch"])
def servers(request):
    from banditfleet.serve.direct_http import DirectHttpToolsProtocol

    mb = request.param
    with tempfile.TemporaryDirectory(prefix="bf-direct-http-") as d:
        apps = [build_app(d + "/direct", fsync="batch", token=TOKEN, max_body_bytes=700, microbatch=mb),
                build_app(d + "/plain", fsync="batch", token=TOKEN, max_body_bytes=700, microbatch=mb)]
        # The generic class, as `uvicorn --http banditfleet.serve.direct_http:DirectHttpToolsProtocol`
        # uses it: it finds the application inside uvicorn's wrappers.
        base = DirectHttpToolsProtocol
        assert base is not None
        counts = {"direct": 0}

        class Counting(base):
            def _write(self, *args, **kwargs):
                counts["direct"] += 1
                return super()._write(*args, **kwargs)

        running = [_uvicorn_thread(apps[0], Counting), _uvicorn_thread(apps[1], "httptools")]
        try:
            yield apps, [port for _, _, port in running], counts
        finally:
            for server, thread, _ in running:
                server.should_exit = True
                thread.join(30)


def _req(method: str, target: str, body: bytes = b"", extra: bytes = b"", version: bytes = b"1.1",
         token: str = TOKEN) -> bytes:
    auth = b"authorization: Bearer %s\r\n" % token.encode() if token else b""
    length = b"content-length: %d\r\n" % len(body) if body or method in ("POST", "PATCH") else b""
    return b"%s %s HTTP/%s\r\nhost: t\r\n%s%s%s\r\n%s" % (method.encode(), target.encode(), version, auth, length,
                                                        extra, body)


def test_direct_protocol_answers_as_uvicorn(servers):
    apps, ports, counts = servers
    spec = json.dumps(job_spec("test-p")).encode()

    def both(data, responses=1):
        a, b = (_exchange(p, data, responses) for p in ports)
        assert a == b, data
        return a

    both(_req("POST", "/jobs", spec))
    trial = json.loads(both(_req("GET", "/jobs/batch_size?job_id=test-p"))[0][2])
    ident = {"job_id": "test-p", "batch_size": trial["batch_size"], "trial_number": trial["trial_number"]}
    report = json.dumps({**ident, "time": 3.0, "energy": 500.0, "metric": 0.2, "current_epoch": 1}).encode()
    before = counts["direct"]
    both(_req("POST", "/report", report))                                     # keep training
    both(_req("GET", "/jobs/batch_size?job_id=nope&job_id=test-p"))            # a concurrent trial
    assert counts["direct"] == before + 2                                     # answered by the direct protocol
    # Pipelined: two requests in one write, answered in order.
    both(_req("POST", "/report", report) + _req("GET", "/jobs/batch_size?job_id=test-p"), responses=2)
    both(_req("PATCH", "/trials", json.dumps(ident).encode(), extra=b"connection: close\r\n"))
    both(_req("GET", "/jobs/batch_size?job_id=test-p", version=b"1.0"))
    both(_req("GET", "/jobs/batch_size?job_id=test%2Dp"))                     # percent-encoded: the ASGI path
    both(_req("GET", "/jobs/batch_size?job_id=nope"))
    both(_req("GET", "/jobs/batch_size?job_id=test-p", token="wrong"))
    both(_req("DELETE", "/jobs?job_id=nope"))
    both(_req("POST", "/report", b"{broken"))
    both(_req("POST", "/jobs", json.dumps(job_spec("test-" + "q" * 800)).encode()))   # 413: over the limit
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(report), report)
    both(_req("POST", "/report", extra=b"transfer-encoding: chunked\r\n")[:-0 or None].replace(
        b"content-length: 0\r\n", b"") + chunked)
    both(_req("PATCH", "/trials", json.dumps(ident).encode(), extra=b"expect: 100-continue\r\n"), responses=2)
    both(_req("GET", "/nowhere"))
    # Several connections at once: with micro-batching their predictions share batches.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for port in ports:
            answers = list(pool.map(lambda _: _exchange(port, _req("GET", "/jobs/batch_size?job_id=test-p")),
                                    range(16)))
            assert sorted(json.loads(a[0][2])["trial_number"] for a in answers) == sorted(
                {json.loads(a[0][2])["trial_number"] for a in answers})
    assert _state(apps[0]) == _state(apps[1])
    assert apps[0].state.metrics.requests() == apps[1].state.metrics.requests()


def test_a_cancelled_waiter_leaves_the_shared_fsync_to_the_others(tmp_path, monkeypatch):
    """All requests waiting for one group commit await one future; cancelling one of them
    (a client gone, a shutdown) must not fail the others, and the callback form waits alike."""
    import asyncio
    import os
    import time

    from banditfleet.serve.app import create_app
    from banditfleet.serve.zeus_protocol import JobSpecFromClient

    app = create_app(tmp_path / "f", fsync="batch", checkpoint_on_shutdown=False)
    ctx = app.state.bf
    folder = ctx.state.folder
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.05)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)

    async def main() -> list:
        ctx.state.register(JobSpecFromClient.parse_obj(job_spec("test-c")).dict())
        target = folder._written
        called: list = []
        waiters = [asyncio.ensure_future(ctx.durable()) for _ in range(3)]
        await asyncio.sleep(0.01)  # all three wait on the same fsync now
        waiters[0].cancel()
        ctx.state.predict("test-c")  # written during that fsync: needs the next one
        ctx.when_durable(called.append)
        results = await asyncio.gather(*waiters, return_exceptions=True)
        while not called:
            await asyncio.sleep(0.01)
        return [type(r).__name__ for r in results], called, target

    try:
        kinds, called, target = asyncio.run(main())
        assert kinds == ["CancelledError", "NoneType", "NoneType"]
        assert called == [None] and folder._durable >= target
        assert folder._durable == folder._written  # the callback waited for the second fsync
    finally:
        ctx.close()

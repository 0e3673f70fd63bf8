"""Security pieces of ``banditfleet serve`` as plain ASGI middleware: bearer
tokens, the body-size limit, the bind check, token files; and the metrics
middleware. Each is driven directly over ASGI against a small recording
application, so the assertions are about what reaches the application."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from banditfleet.serve.metrics import Gauge, Metrics, MetricsMiddleware, health
from banditfleet.serve.security import (
    BearerAuth,
    BodyLimit,
    InsecureBindError,
    TokenFileError,
    check_bind,
    is_loopback,
    load_token,
)


class Recorder:
    """An ASGI app that records every request it sees and answers 200 with the body's length."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body", False):
                break
        self.seen.append((scope["path"], body))
        data = json.dumps({"n": len(body)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})


def call(app, path="/x", headers=(), chunks=(b"",), method="POST"):
    """Run one HTTP request through ``app``; return (status, headers, body)."""
    scope = {"type": "http", "method": method, "path": path, "headers": [(k.lower(), v) for k, v in headers],
             "query_string": b""}
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(m):
        sent.append(m)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


# ------------------------------------------------------------------ tokens
@pytest.mark.parametrize("header", [None, b"Bearer wrong", b"Bearer s3cret-token-x", b"Basic s3cret-token", b"Bearer ",
                                    b"s3cret-token", b"Bearer s3cret-toke", b"Bearer  s3cret-token"])
def test_wrong_or_missing_token_is_refused_before_the_app(header):
    rec = Recorder()
    app = BearerAuth(rec, "s3cret-token")
    status, headers, body = call(app, headers=[] if header is None else [(b"authorization", header)], chunks=(b"{}",))
    assert status == 401
    assert b"bearer" in headers[b"www-authenticate"].lower()
    assert "message" in json.loads(body)
    assert rec.seen == []


@pytest.mark.parametrize("scheme", [b"Bearer", b"bearer", b"BEARER"])
def test_right_token_reaches_the_app(scheme):
    rec = Recorder()
    status, _, body = call(BearerAuth(rec, "s3cret-token"), headers=[(b"authorization", scheme + b" s3cret-token")],
                           chunks=(b"abc",))
    assert status == 200 and json.loads(body) == {"n": 3}
    assert rec.seen == [("/x", b"abc")]


def test_token_file(tmp_path):
    f = tmp_path / "token"
    f.write_text("  tok-123\n")
    os.chmod(f, 0o600)
    assert load_token(f) == "tok-123"
    for bad in ("", "\n\n", "two words", "tök"):
        f.write_text(bad, encoding="utf-8")
        with pytest.raises(TokenFileError):
            load_token(f)
    with pytest.raises(TokenFileError, match="cannot read"):
        load_token(tmp_path / "absent")


# -------------------------------------------------------------------- bind
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.1"])
def test_non_loopback_needs_token_or_insecure(host):
    assert not is_loopback(host)
    with pytest.raises(InsecureBindError, match="--insecure"):
        check_bind(host, None)
    check_bind(host, "tok")
    check_bind(host, None, insecure=True)


# -------------------------------------------------------------- body limit
def test_declared_length_over_the_limit_is_413_and_never_reaches_the_app():
    rec = Recorder()
    app = BodyLimit(rec, max_bytes=10)
    status, _, body = call(app, headers=[(b"content-length", b"11")], chunks=(b"x" * 11,))
    assert status == 413 and "10 bytes" in json.loads(body)["message"]
    assert rec.seen == []
    status, _, _ = call(app, headers=[(b"content-length", b"10")], chunks=(b"x" * 10,))
    assert status == 200 and rec.seen == [("/x", b"x" * 10)]


def test_chunked_body_over_the_limit_is_413_and_never_reaches_the_app():
    rec = Recorder()
    app = BodyLimit(rec, max_bytes=10)
    status, _, _ = call(app, headers=[(b"transfer-encoding", b"chunked")], chunks=(b"x" * 6, b"y" * 6))
    assert status == 413 and rec.seen == []
    status, _, body = call(app, headers=[(b"transfer-encoding", b"chunked")], chunks=(b"x" * 4, b"y" * 6))
    assert status == 200 and rec.seen == [("/x", b"xxxxyyyyyy")]


# ----------------------------------------------------------------- metrics
def test_metrics_count_and_time_every_request_with_its_status():
    rec = Recorder()
    metrics = Metrics(routes=["/x"], gauges=[Gauge("jobs", "Jobs registered.", lambda: 7),
                                              Gauge("broken", "Raises.", lambda: 1 / 0),
                                              Gauge("journal_bytes", "Bytes.", lambda: {"wal": 5, "checkpoint": 9})])
    app = MetricsMiddleware(BearerAuth(rec, "tok"), metrics)
    call(app, headers=[(b"authorization", b"Bearer tok")])
    call(app, headers=[(b"authorization", b"Bearer tok")])
    call(app, path="/x")  # 401
    call(app, path="/y/z?w", headers=[(b"authorization", b"Bearer tok")])
    assert metrics.requests() == {("POST", "/x", "200"): 2, ("POST", "/x", "401"): 1, ("POST", "other", "200"): 1}
    text = metrics.render()
    lines = text.splitlines()
    assert 'banditfleet_http_requests_total{method="POST",endpoint="/x",status="200"} 2' in lines
    assert 'banditfleet_http_request_duration_seconds_bucket{method="POST",endpoint="/x",le="+Inf"} 3' in lines
    assert 'banditfleet_http_request_duration_seconds_count{method="POST",endpoint="/x"} 3' in lines
    assert "banditfleet_jobs 7" in lines
    assert 'banditfleet_journal_bytes{kind="checkpoint"} 9' in lines
    assert "banditfleet_broken" not in text
    # Buckets are cumulative and end at the count.
    buckets = [int(ln.rsplit(" ", 1)[1]) for ln in lines
               if ln.startswith('banditfleet_http_request_duration_seconds_bucket{method="POST",endpoint="/x"')]
    assert buckets == sorted(buckets) and buckets[-1] == 3
    # Every sample line is "name{labels} number" or "name number".
    for ln in lines:
        if not ln.startswith("#"):
            float(ln.rsplit(" ", 1)[1].replace("+Inf", "inf"))


def test_health_reports_failed_checks():
    assert health({"a": lambda: None})[0] == 200
    status, body = health({"a": lambda: 3, "b": lambda: 1 / 0})
    assert status == 503 and body["checks"]["a"] == 3 and "ZeroDivisionError" in body["checks"]["b"]

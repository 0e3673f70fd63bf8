"""Prometheus metrics and health of ``banditfleet serve``.

:class:`Metrics` counts requests and their latencies per endpoint, and
:class:`MetricsMiddleware` (plain ASGI) feeds it: it times every HTTP request
from the moment the application is called to the last byte of the response
body, and labels it with the method, the endpoint's path template (unknown
paths share the label ``other``, so a scan cannot grow the label set) and
the status code.

:meth:`Metrics.render` writes the Prometheus text exposition format 0.0.4 by
hand (no dependency): counters, a latency histogram per endpoint, and the
gauges a caller supplies through ``gauges`` (jobs, journal bytes, last
checkpoint time, ...), each sampled when ``/metrics`` is scraped.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from banditfleet.serve.security import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware", "Gauge", "LATENCY_BUCKETS", "CONTENT_TYPE"]

#: Upper bounds (seconds) of the latency histogram's buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

#: Content type of the exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Gauge:
    """A gauge sampled at scrape time: ``name``, ``help`` and the function that reads it.

    ``read`` returns a number, or a mapping from a label value to a number
    (exposed with the label ``label``), or None to leave the gauge out.
    """

    name: str
    help: str
    read: Callable[[], float | Mapping[str, float] | None]
    label: str = "kind"
    type: str = "gauge"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(x: float) -> str:
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


class _Series:
    __slots__ = ("counts", "sum", "count")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * n_buckets
        self.sum = 0.0
        self.count = 0


class Metrics:
    """Request counters and latency histograms per endpoint, and scrape-time gauges.

    ``routes``: the path templates that get their own label (anything else is
    ``other``). Thread-safe (one lock around each update).
    """

    def __init__(self, routes: Iterable[str] = (), gauges: Iterable[Gauge] = (), prefix: str = "banditfleet",
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.prefix = prefix
        self.routes = set(routes)
        self.gauges: list[Gauge] = list(gauges)
        self.buckets = tuple(sorted(buckets))
        self._requests: dict[tuple[str, str, int | str], int] = {}
        self._latency: dict[tuple[str, str], _Series] = {}
        self._lock = threading.Lock()
        self.started = time.time()

    def route_label(self, path: str) -> str:
        """The endpoint label of ``path``: itself if it is a known route, else ``other``."""
        return path if path in self.routes else "other"

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and add its latency (seconds) to its endpoint's histogram."""
        i = bisect_left(self.buckets, seconds)  # the first bucket whose bound is >= seconds
        with self._lock:
            key = (method, route, status)
            requests = self._requests
            requests[key] = requests.get(key, 0) + 1
            series = self._latency.get((method, route))
            if series is None:
                series = self._latency[(method, route)] = _Series(len(self.buckets))
            if i < len(series.counts):
                series.counts[i] += 1
            series.sum += seconds
            series.count += 1

    def requests(self) -> dict[tuple[str, str, str], int]:
        """A copy of the request counters, keyed by (method, route, status)."""
        with self._lock:
            return {(m, r, str(st)): n for (m, r, st), n in self._requests.items()}

    def add_gauge(self, gauge: Gauge) -> None:
        self.gauges.append(gauge)

    def render(self) -> str:
        """The metrics in Prometheus text exposition format 0.0.4."""
        p = self.prefix
        lines: list[str] = []
        with self._lock:
            requests = sorted(((m, r, str(st)), n) for (m, r, st), n in self._requests.items())
            latency = sorted((k, (list(v.counts), v.sum, v.count)) for k, v in self._latency.items())
        lines.append(f"# HELP {p}_http_requests_total HTTP requests answered, by method, endpoint and status code.")
        lines.append(f"# TYPE {p}_http_requests_total counter")
        for (method, route, status), n in requests:
            lines.append(f'{p}_http_requests_total{{method="{_escape(method)}",endpoint="{_escape(route)}",'
                         f'status="{status}"}} {n}')
        lines.append(f"# HELP {p}_http_request_duration_seconds Time from the request reaching the application "
                     "to the last byte of its response, by method and endpoint.")
        lines.append(f"# TYPE {p}_http_request_duration_seconds histogram")
        for (method, route), (counts, total, count) in latency:
            labels = f'method="{_escape(method)}",endpoint="{_escape(route)}"'
            cumulative = 0
            for bound, c in zip(self.buckets, counts):
                cumulative += c
                lines.append(f'{p}_http_request_duration_seconds_bucket{{{labels},le="{_num(bound)}"}} {cumulative}')
            lines.append(f'{p}_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}')
            lines.append(f"{p}_http_request_duration_seconds_sum{{{labels}}} {_num(total)}")
            lines.append(f"{p}_http_request_duration_seconds_count{{{labels}}} {count}")
        lines.append(f"# HELP {p}_start_time_seconds Unix time the server started.")
        lines.append(f"# TYPE {p}_start_time_seconds gauge")
        lines.append(f"{p}_start_time_seconds {_num(self.started)}")
        for g in self.gauges:
            try:
                value = g.read()
            except Exception:  # noqa: BLE001 - a broken gauge must not break the scrape
                value = None
            if value is None:
                continue
            lines.append(f"# HELP {p}_{g.name} {g.help}")
            lines.append(f"# TYPE {p}_{g.name} {g.type}")
            if isinstance(value, Mapping):
                for label, v in sorted(value.items()):
                    lines.append(f'{p}_{g.name}{{{g.label}="{_escape(str(label))}"}} {_num(v)}')
            else:
                lines.append(f"{p}_{g.name} {_num(value)}")
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """ASGI middleware that times every HTTP request into a :class:`Metrics`.

    Put it outermost (around authentication and the body limit) so refused
    requests are counted too, with their 401 or 413.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(scope.get("method", "?"), self.metrics.route_label(scope.get("path", "")), status,
                                 time.perf_counter() - t0)


def metrics_text(metrics: Metrics) -> tuple[bytes, str]:
    """(body, content type) of a ``/metrics`` answer."""
    return metrics.render().encode(), CONTENT_TYPE


def health(checks: Mapping[str, Callable[[], Any]]) -> tuple[int, dict[str, Any]]:
    """Run the named checks; (200, {"status": "ok", ...}) if all pass, else (503, with the failures)."""
    result: dict[str, Any] = {}
    ok = True
    for name, check in checks.items():
        try:
            value = check()
            result[name] = value if value is not None else "ok"
        except Exception as exc:  # noqa: BLE001 - reported in the health answer
            ok = False
            result[name] = f"failed: {type(exc).__name__}: {exc}"
    return (200 if ok else 503), {"status": "ok" if ok else "unavailable", "checks": result}

"""The whole ``banditfleet serve`` application: the Zeus protocol plus the edge around it.

:func:`build_app` is what ``banditfleet serve`` runs: :func:`~banditfleet.serve.app.create_app`
(the Zeus protocol on a journaled folder) with

* the batch API under ``/v1/`` (:mod:`banditfleet.serve.batch_api`);
* ``GET /healthz`` (200 ``{"status": "ok", ...}`` while the folder is open and
  writable, else 503) and ``GET /metrics`` (Prometheus text format,
  :mod:`banditfleet.serve.metrics`), and ``GET /openapi.json`` (the schema of
  every endpoint);
* middleware, outermost first: metrics (every request is counted, refused
  ones too), bearer-token authentication when a token is given
  (:class:`~banditfleet.serve.security.BearerAuth`), the body-size limit
  (:class:`~banditfleet.serve.security.BodyLimit`), and, when asked for,
  micro-batching of ``GET /jobs/batch_size`` (:class:`MicroBatchPredict`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Optional
from urllib.parse import parse_qsl

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from banditfleet.errors import JournalError
from banditfleet.serve.batch_api import batch_routes
from banditfleet.serve.metrics import CONTENT_TYPE, Gauge, Metrics, MetricsMiddleware, health
from banditfleet.serve.microbatch import MicroBatcher, predict_runner
from banditfleet.serve.security import DEFAULT_MAX_BODY_BYTES, ASGIApp, BearerAuth, BodyLimit, Receive, Scope, Send
from banditfleet.serve.zeus_protocol import GET_NEXT_BATCH_SIZE_URL

__all__ = ["build_app", "MicroBatchPredict", "ROUTES"]

logger = logging.getLogger("banditfleet.serve")

#: Path templates that get their own label in the metrics.
ROUTES = (
    "/jobs", "/jobs/batch_size", "/report", "/trials", "/v1/jobs/batch_size", "/v1/reports", "/v1/trials/end",
    "/v1/jobs/delete", "/v1/jobs/reset", "/healthz", "/metrics", "/openapi.json",
)


class MicroBatchPredict:
    """ASGI middleware: concurrent ``GET /jobs/batch_size`` requests are decided together.

    The requests that reach the server in one turn of the event loop (and those
    that arrive while a batch is being decided) go to the state as one batch
    (:class:`~banditfleet.serve.microbatch.MicroBatcher`) and wait for one
    durability point; each gets exactly the answer the single-request handler
    would give it (its trial, or its own 400). Other requests pass through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._batcher: Optional[MicroBatcher] = None
        self._ctx: Any = None

    def batcher(self, ctx: Any) -> MicroBatcher:
        if self._batcher is None or self._ctx is not ctx:
            run = predict_runner(ctx.state)  # one predict_many call per batch
            self._batcher, self._ctx = MicroBatcher(run), ctx
        return self._batcher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != GET_NEXT_BATCH_SIZE_URL or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        job_id = None
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            if key == "job_id":
                job_id = value  # the last one, as the single-request handler reads it
        if job_id is None:
            await self.app(scope, receive, send)  # the protocol's 422
            return
        ctx = scope["app"].state.bf
        status, body = await self.batcher(ctx).submit(job_id)
        if status != 503:
            try:
                await ctx.durable()
            except JournalError as exc:
                status, body = 503, {"message": str(exc)}
        await JSONResponse(body, status_code=status)(scope, receive, send)


def _last_checkpoint_time(folder: Any) -> Optional[float]:
    if folder is None:
        return None
    seqs = folder.checkpoint_seqs()
    if not seqs:
        return None
    try:
        return folder.checkpoint_path(seqs[0]).stat().st_mtime
    except OSError:
        return None


def _gauges(app_ref: dict[str, Any], mb: dict[str, Any]) -> list[Gauge]:
    def ctx() -> Any:
        return app_ref["app"].state.bf

    def folder() -> Any:
        return ctx().state.folder

    def microbatch() -> Optional[dict[str, float]]:
        m = mb.get("middleware")
        if m is None or m._batcher is None:
            return None
        b = m._batcher
        return {"batches": b.batches, "requests": b.items, "largest": b.largest}

    return [
        Gauge("jobs", "Jobs registered.", lambda: len(ctx().state.jobs)),
        Gauge("journal_bytes", "Bytes in the current journal (since the last checkpoint).",
              lambda: folder().journal_bytes if folder() is not None else None),
        Gauge("journal_fsyncs_total", "fsyncs of the journal since the server started.",
              lambda: folder().fsync_count if folder() is not None else None, type="counter"),
        Gauge("last_checkpoint_timestamp_seconds", "Unix time of the newest checkpoint file.",
              lambda: _last_checkpoint_time(folder())),
        Gauge("microbatch", "Micro-batching of GET /jobs/batch_size: batches run, requests answered, largest batch.",
              microbatch, label="what", type="counter"),
    ]


def _health_checks(request: Request) -> dict[str, Any]:
    ctx = request.app.state.bf

    def folder_open() -> str:
        f = ctx.state.folder
        if f is None or f.closed:
            raise JournalError("the state folder is closed (a journal write failed, or the server is stopping)")
        if not os.access(f.path, os.W_OK):
            raise JournalError(f"{f.path} is not writable")
        return str(f.path)

    return {"folder": folder_open, "jobs": lambda: len(ctx.state.jobs)}


async def _healthz(request: Request) -> Response:
    """``GET /healthz``: 200 while the folder is open and writable, 503 otherwise."""
    status, body = health(_health_checks(request))
    return JSONResponse(body, status_code=status)


def _metrics_endpoint(metrics: Metrics):
    async def metrics_endpoint(request: Request) -> Response:
        """``GET /metrics``: Prometheus text exposition format 0.0.4."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return metrics_endpoint


async def _openapi(request: Request) -> Response:
    """``GET /openapi.json``: the OpenAPI 3 document of every endpoint."""
    from banditfleet.serve.openapi import openapi_schema

    return JSONResponse(openapi_schema())


def edge_routes(metrics: Metrics) -> list[BaseRoute]:
    """``/healthz``, ``/metrics``, ``/openapi.json`` and the ``/v1/`` batch routes."""
    return [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/metrics", _metrics_endpoint(metrics), methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        *batch_routes(),
    ]


def build_app(folder: str | os.PathLike, *, token: Optional[str] = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
              microbatch: bool = True, **create_app_kwargs: Any):
    """The ``banditfleet serve`` application (see the module docstring).

    Args:
        folder: The state folder (:func:`~banditfleet.serve.app.create_app`).
        token: Bearer token every request must carry (None: no authentication;
            ``banditfleet serve`` then binds loopback only, see
            :func:`~banditfleet.serve.security.check_bind`).
        max_body_bytes: Request bodies above this are answered 413.
        microbatch: Decide concurrent ``GET /jobs/batch_size`` requests together,
            one ``predict_many`` call per batch (on by default: measured
            1.15-1.6x the cycles/s at 128 concurrent jobs, see docs/performance.md).
        create_app_kwargs: ``fsync``, ``checkpoint_bytes``, ... for ``create_app``.

    The :class:`~banditfleet.serve.metrics.Metrics` is ``app.state.metrics``.
    """
    from banditfleet.serve.app import create_app

    app_ref: dict[str, Any] = {}
    mb: dict[str, Any] = {}
    metrics = Metrics(routes=ROUTES, gauges=_gauges(app_ref, mb))
    middleware = [Middleware(MetricsMiddleware, metrics)]
    if token is not None:
        middleware.append(Middleware(BearerAuth, token))
    middleware.append(Middleware(BodyLimit, max_body_bytes))
    if microbatch:
        middleware.append(Middleware(_Capture, MicroBatchPredict, mb))
    routes = [*edge_routes(metrics), *create_app_kwargs.pop("routes", ())]
    extra_mw = list(create_app_kwargs.pop("middleware", ()))
    app = create_app(folder, routes=routes, middleware=[*middleware, *extra_mw], **create_app_kwargs)
    # The Zeus endpoints bypass Starlette's stack with the same edge applied
    # inline (metrics, token, body limit), unless the caller added middleware
    # that must see them; micro-batching keeps GET /jobs/batch_size routed.
    app.serve_directly(not extra_mw, metrics=metrics, token=token, max_body_bytes=max_body_bytes,
                       predict=not microbatch, microbatch=(lambda: mb.get("middleware")) if microbatch else None)
    app_ref["app"] = app
    app.state.metrics = metrics
    app.state.started = time.time()
    return app


class _Capture:
    """Builds ``cls(app)`` and keeps it in ``box["middleware"]`` (for its metrics)."""

    def __new__(cls, app: ASGIApp, inner: type, box: dict[str, Any]):  # type: ignore[misc]
        m = inner(app)
        box["middleware"] = m
        return m

"""The ASGI application of ``banditfleet serve`` (Starlette; run it on uvicorn).

:func:`create_app` opens (creates or recovers) a journaled folder holding a
:class:`~banditfleet.serve.zeus_state.ZeusServerState` and serves Zeus
0.16.0's batch-size-optimizer protocol on it (:mod:`banditfleet.serve.zeus_protocol`):

=========  ====================  ==========================================
method     path                  what
=========  ====================  ==========================================
POST       ``/jobs``             register a job (201 new, 200 identical, 409 different)
GET        ``/jobs/batch_size``  ``?job_id=``: the next trial (batch size, trial number)
POST       ``/report``           a training result after an epoch: stop or go on
PATCH      ``/trials``           a trial ended (failed if it never reported)
DELETE     ``/jobs``             ``?job_id=``: forget a job
=========  ====================  ==========================================

Durability: a response is sent only once the journal is durable under the
folder's fsync policy up to everything the state held when the response was
made (its own change, and any change of another request it read). The fsync
runs in a worker thread; every request waiting meanwhile shares the next one
(group commit), and the event loop never blocks on the disk. On shutdown
(SIGTERM/SIGINT under uvicorn) the server checkpoints and closes the folder.

Extending: ``create_app(..., routes=[...], middleware=[...])`` adds routes and
Starlette ``Middleware`` entries; handlers reach the shared
:class:`ServeContext` as ``request.app.state.bf``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from banditfleet.errors import JournalError
from banditfleet.serve.zeus_protocol import (
    DELETE_JOB_URL,
    GET_NEXT_BATCH_SIZE_URL,
    REGISTER_JOB_URL,
    REPORT_END_URL,
    REPORT_RESULT_URL,
    JobSpecFromClient,
    ProtocolError,
    TrainingResult,
    TrialId,
    parse_body,
    query_param,
)
from banditfleet.serve.zeus_state import ZeusServerError, ZeusServerState

__all__ = ["create_app", "ServeContext", "zeus_routes"]

logger = logging.getLogger("banditfleet.serve")


class ServeContext:
    """What the handlers share: the state, its folder, and the asynchronous durability wait."""

    def __init__(self, state: ZeusServerState, checkpoint_on_shutdown: bool = True) -> None:
        self.state = state
        self.checkpoint_on_shutdown = checkpoint_on_shutdown
        #: Set once the journal failed (an append or an fsync): from then on every
        #: request is refused with 503, since the state in memory may be ahead of
        #: the disk. Restarting the server recovers from what reached the disk.
        self.failed: Optional[str] = None
        self._fsync_task: Optional[asyncio.Future] = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="banditfleet-fsync")

    async def durable(self) -> None:
        """Wait (without blocking the event loop) until the journal is durable up to
        :attr:`ZeusServerState.durable_target`. One fsync at a time runs in a worker
        thread and covers every record written when it started (group commit)."""
        offset = self.state.durable_target
        folder = self.state.folder
        if offset is None or folder is None:
            return
        loop = asyncio.get_running_loop()
        while folder._durable < offset:
            task = self._fsync_task
            if task is None or task.done():
                task = self._fsync_task = loop.run_in_executor(self._executor, folder.wait_durable, folder._written)
            await asyncio.shield(task)

    def close(self) -> None:
        """Checkpoint (if asked) and release the folder; idempotent."""
        state = self.state
        try:
            if state.folder is not None:
                if self.checkpoint_on_shutdown and self.failed is None:
                    state.checkpoint()
                state.close()
        except JournalError as exc:  # the folder is released all the same
            logger.error("closing the state folder: %s", exc)
        finally:
            self._executor.shutdown(wait=True)


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


async def _answer(request: Request, handle: Callable[[ServeContext], tuple[int, Any]]) -> Response:
    """Run one protocol call, wait for durability, answer; refusals become their JSON bodies."""
    ctx: ServeContext = request.app.state.bf
    if ctx.failed is not None:
        return _json({"message": ctx.failed}, 503)
    try:
        status, body = handle(ctx)
        await ctx.durable()
    except ProtocolError as exc:
        status, body = exc.status, exc.body
    except ZeusServerError as exc:
        status, body = exc.status, {"message": exc.message}
    except JournalError as exc:
        ctx.failed = f"the state folder failed ({exc}); restart the server to recover from what reached the disk"
        logger.error("journal failure, refusing every request from now on: %s", exc)
        return _json({"message": ctx.failed}, 503)
    if status >= 400:
        try:  # a refusal may depend on state another request just changed: durable too
            await ctx.durable()
        except JournalError as exc:
            ctx.failed = f"the state folder failed ({exc}); restart the server to recover from what reached the disk"
            logger.error("journal failure, refusing every request from now on: %s", exc)
            return _json({"message": ctx.failed}, 503)
    return _json(body, status)


async def register_job(request: Request) -> Response:
    """``POST /jobs``: register a job, or check an existing one's spec."""
    raw = await request.body()
    ctype = request.headers.get("content-type")

    def handle(ctx: ServeContext) -> tuple[int, Any]:
        job = parse_body(JobSpecFromClient, raw, ctype)
        created, spec = ctx.state.register(job.dict())
        return (201 if created else 200), spec

    return await _answer(request, handle)


async def predict(request: Request) -> Response:
    """``GET /jobs/batch_size?job_id=``: the batch size and number of the job's next trial."""
    params = request.query_params

    def handle(ctx: ServeContext) -> tuple[int, Any]:
        return 200, ctx.state.predict(query_param(params, "job_id"))

    return await _answer(request, handle)


async def report(request: Request) -> Response:
    """``POST /report``: a training result; answers whether to stop."""
    raw = await request.body()
    ctype = request.headers.get("content-type")

    def handle(ctx: ServeContext) -> tuple[int, Any]:
        result = parse_body(TrainingResult, raw, ctype)
        return 200, ctx.state.report(result.dict())

    return await _answer(request, handle)


async def end_trial(request: Request) -> Response:
    """``PATCH /trials``: a trial ended; one that never reported is marked failed."""
    raw = await request.body()
    ctype = request.headers.get("content-type")

    def handle(ctx: ServeContext) -> tuple[int, Any]:
        t = parse_body(TrialId, raw, ctype)
        ctx.state.end_trial(t.job_id, t.batch_size, t.trial_number)
        return 200, None

    return await _answer(request, handle)


async def delete_job(request: Request) -> Response:
    """``DELETE /jobs?job_id=``: forget a job."""
    params = request.query_params

    def handle(ctx: ServeContext) -> tuple[int, Any]:
        ctx.state.delete_job(query_param(params, "job_id"))
        return 200, None

    return await _answer(request, handle)


def zeus_routes() -> list[BaseRoute]:
    """The five routes of Zeus's protocol."""
    return [
        Route(REGISTER_JOB_URL, register_job, methods=["POST"]),
        Route(DELETE_JOB_URL, delete_job, methods=["DELETE"]),
        Route(GET_NEXT_BATCH_SIZE_URL, predict, methods=["GET"]),
        Route(REPORT_RESULT_URL, report, methods=["POST"]),
        Route(REPORT_END_URL, end_trial, methods=["PATCH"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    # FastAPI's shape for 404/405 and other HTTP errors: {"detail": ...}
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error in %s %s", request.method, request.url.path)
    return JSONResponse({"message": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def create_app(
    folder: str | os.PathLike,
    *,
    fsync: str | float | int = "batch",
    checkpoint_bytes: Optional[int] = None,
    checkpoint_on_shutdown: bool = True,
    routes: Sequence[BaseRoute] = (),
    middleware: Sequence[Middleware] = (),
    state: Optional[ZeusServerState] = None,
) -> Starlette:
    """The ``banditfleet serve`` ASGI application on a journaled folder.

    Args:
        folder: The state folder, created when missing, else recovered (newest
            checkpoint + journal). One process at a time may serve it
            (:class:`~banditfleet.errors.FolderLockedError` otherwise).
        fsync: ``"batch"`` (default: no response before an fsync covers its
            effect, fsyncs shared), ``"never"``, or milliseconds between fsyncs.
        checkpoint_bytes: Checkpoint once the journal reaches this many bytes
            (None: only at shutdown).
        checkpoint_on_shutdown: Checkpoint when the application shuts down.
        routes: Extra routes, tried after the Zeus protocol's.
        middleware: Extra Starlette middleware (outermost first).
        state: An already opened state (tests); ``folder`` is then ignored.

    The context is ``app.state.bf`` (:class:`ServeContext`); the folder is
    closed by the application's shutdown (lifespan) or ``app.state.bf.close()``.
    """
    if state is None:
        state = ZeusServerState.open(folder, fsync=fsync, checkpoint_bytes=checkpoint_bytes)
    ctx = ServeContext(state, checkpoint_on_shutdown)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            logger.info("shutting down: checkpointing and closing the folder")
            ctx.close()

    app = Starlette(
        routes=[*zeus_routes(), *routes],
        middleware=list(middleware),
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.bf = ctx
    return app

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

The five endpoints are served by :class:`ZeusApp` directly (one dict lookup,
no Starlette routing or middleware per request); everything else, and these
too when extra middleware is given, by a Starlette application with the same
handlers. Extending: ``create_app(..., routes=[...], middleware=[...])`` adds
routes and Starlette ``Middleware`` entries; handlers reach the shared
:class:`ServeContext` as ``request.app.state.bf``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
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
    fast_job_id_query,
    fast_trial_id,
    fast_training_result,
    parse_body,
    query_param,
    read_json,
    validate_body,
)
from banditfleet.serve.zeus_state import ZeusServerError, ZeusServerState

__all__ = ["create_app", "ServeContext", "ZeusApp", "zeus_routes"]

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
        thread and covers every record written when it started (group commit); all
        the requests waiting for it await one future, resolved by one call from the
        worker thread."""
        offset = self.state.durable_target
        if offset is None:
            return
        folder = self.state.folder
        if folder is None:
            return
        while folder._durable < offset:
            fut = self._fsync_task
            if fut is None or fut.done():
                fut = self._fsync_task = self._start_fsync(folder)
            if not _TASK_CANCELLING:  # Python 3.10: a cancelled waiter must not cancel the others' future
                await asyncio.shield(fut)
                continue
            try:
                await fut
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # this request was cancelled
                # Another waiter's cancellation cancelled the shared future: wait again.

    def when_durable(self, callback: Callable[[Optional[BaseException]], None]) -> None:
        """Call ``callback(None)`` once the journal is durable up to
        :attr:`ZeusServerState.durable_target` (now, or from the event loop after the
        fsync that covers it), or ``callback(error)`` if the fsync failed: the
        callback form of :meth:`durable`, for a caller without a task."""
        offset = self.state.durable_target
        folder = self.state.folder
        if offset is None or folder is None or folder._durable >= offset:
            callback(None)
            return
        self._wait_fsync(folder, offset, callback)

    def _wait_fsync(self, folder: Any, offset: int, callback: Callable[[Optional[BaseException]], None]) -> None:
        fut = self._fsync_task
        if fut is None or fut.done():
            fut = self._fsync_task = self._start_fsync(folder)

        def done(f: asyncio.Future) -> None:
            error = None if f.cancelled() else f.exception()
            if error is not None:
                callback(error)
            elif folder._durable >= offset:
                callback(None)
            else:  # that fsync started before this record was written: the next one covers it
                self._wait_fsync(folder, offset, callback)

        fut.add_done_callback(done)

    def _start_fsync(self, folder: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        upto = folder._written

        def run() -> None:
            error: Optional[BaseException] = None
            try:
                folder.wait_durable(upto)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiters
                error = exc
            try:
                loop.call_soon_threadsafe(_resolve, fut, error)
            except RuntimeError:  # the loop is closed (shutdown)
                pass

        self._executor.submit(run)
        return fut

    def fail(self, exc: BaseException) -> str:
        """Mark the server failed after a journal error (every later request: 503); the message."""
        self.failed = f"the state folder failed ({exc}); restart the server to recover from what reached the disk"
        logger.error("journal failure, refusing every request from now on: %s", exc)
        return self.failed

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


_TASK_CANCELLING = hasattr(asyncio.Task, "cancelling")  # Python >= 3.11


def _resolve(fut: asyncio.Future, error: Optional[BaseException]) -> None:
    if not fut.done():
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


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
        return _json({"message": ctx.fail(exc)}, 503)
    if status >= 400:
        try:  # a refusal may depend on state another request just changed: durable too
            await ctx.durable()
        except JournalError as exc:
            return _json({"message": ctx.fail(exc)}, 503)
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
) -> "ZeusApp":
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
        middleware: Extra Starlette middleware (outermost first). With any,
            every request goes through Starlette (the direct path of
            :class:`ZeusApp` is off, so the middleware sees all requests).
        state: An already opened state (tests); ``folder`` is then ignored.

    Returns a :class:`ZeusApp` (ASGI): the Zeus endpoints served directly, the
    rest by the Starlette application ``app.starlette``.
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

    inner = Starlette(
        routes=[*zeus_routes(), *routes],
        middleware=list(middleware),
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    inner.state.bf = ctx
    app = ZeusApp(inner, ctx)
    if not middleware:  # extra middleware must see every request: then Starlette serves all of them
        app.serve_directly()
    return app


# ------------------------------------------------------------------ the direct path
_JSON_CT = (b"content-type", b"application/json")
_encode_str = json.encoder.encode_basestring  # json.dumps(str, ensure_ascii=False) without the call overhead
_TRIAL_HEADS: dict[str, bytes] = {}
_REPORT_BOOL = {(True, True): b'{"stop_train":true,"converged":true,"message":',
                (True, False): b'{"stop_train":true,"converged":false,"message":',
                (False, True): b'{"stop_train":false,"converged":true,"message":',
                (False, False): b'{"stop_train":false,"converged":false,"message":'}
_MESSAGES: dict[str, bytes] = {}


def _render(body: Any) -> bytes:
    """The bytes Starlette's ``JSONResponse`` sends for ``body``."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


def _render_trial(answer: dict[str, Any]) -> bytes:
    """``_render({"job_id", "batch_size", "trial_number"})``, the job's prefix cached."""
    bs = answer["batch_size"]
    tn = answer["trial_number"]
    if len(answer) != 3 or type(bs) is not int or type(tn) is not int:
        return _render(answer)
    job_id = answer["job_id"]
    head = _TRIAL_HEADS.get(job_id)
    if head is None:
        head = ('{"job_id":' + _encode_str(job_id) + ',"batch_size":').encode("utf-8")
        if len(_TRIAL_HEADS) >= 65536:
            _TRIAL_HEADS.clear()
        _TRIAL_HEADS[job_id] = head
    return b'%s%d,"trial_number":%d}' % (head, bs, tn)


def _render_report(answer: dict[str, Any]) -> bytes:
    """``_render({"stop_train", "converged", "message"})`` with the common messages cached."""
    stop = answer["stop_train"]
    conv = answer["converged"]
    message = answer["message"]
    if len(answer) != 3 or type(stop) is not bool or type(conv) is not bool or type(message) is not str:
        return _render(answer)
    text = _MESSAGES.get(message)
    if text is None:
        text = _encode_str(message).encode("utf-8")
        if len(_MESSAGES) < 256:
            _MESSAGES[message] = text
    return _REPORT_BOOL[stop, conv] + text + b"}"


def _query_job_id(scope: Any) -> str:
    qs = scope.get("query_string", b"")
    job_id = fast_job_id_query(qs)
    if job_id is None:  # anything but ``job_id=<plain>``: Starlette's parser, as the routed handler uses
        job_id = query_param(QueryParams(qs), "job_id")
    return job_id


class ZeusApp:
    """The ASGI application of ``banditfleet serve``: Zeus's five endpoints served directly,
    everything else by the Starlette application :attr:`starlette`.

    Starlette's per-request machinery (middleware stack, router, ``Request`` and
    ``Response`` objects, exception middleware) costs more CPU than the decision
    itself, so ``POST /jobs``, ``GET /jobs/batch_size``, ``POST /report``,
    ``PATCH /trials`` and ``DELETE /jobs`` are dispatched from one dict lookup on
    (method, path). The direct path applies the same edge as the middleware
    around the Starlette application (request metrics, bearer token, body-size
    limit: :meth:`serve_directly`) and answers with the same status codes, bodies
    and headers as the routed handlers, which stay in place for the same
    endpoints when the direct path is off (extra middleware, micro-batching of
    predictions). Lifespan, other paths and methods (``HEAD``, 404/405, ``/v1/``,
    ``/healthz``, ``/metrics``) and requests under a ``root_path`` go to Starlette.

    ``app.state`` is the Starlette application's state (``app.state.bf``: the
    :class:`ServeContext`).
    """

    def __init__(self, starlette: Starlette, ctx: "ServeContext") -> None:
        self.starlette = starlette
        self.ctx = ctx
        self._direct: dict[tuple[str, str], Callable[[bytes, Optional[str], Any], tuple[int, bytes]]] = {}
        self._metrics: Any = None
        self._expected: Optional[bytes] = None
        self._max_body: Optional[int] = None
        self._microbatch: Optional[Callable[[], Any]] = None

    @property
    def state(self) -> Any:
        """The Starlette application's state (``state.bf`` is the :class:`ServeContext`)."""
        return self.starlette.state

    @property
    def routes(self) -> list[BaseRoute]:
        return self.starlette.routes

    @property
    def max_body_bytes(self) -> Optional[int]:
        """The body-size limit of the direct path (None: none)."""
        return self._max_body

    def serve_directly(self, enabled: bool = True, *, metrics: Any = None, token: Optional[str] = None,
                       max_body_bytes: Optional[int] = None, predict: bool = True,
                       microbatch: Optional[Callable[[], Any]] = None) -> None:
        """Serve the Zeus endpoints directly (``enabled``), with the edge that wraps the Starlette app.

        Args:
            metrics: A :class:`~banditfleet.serve.metrics.Metrics` to count and time them in.
            token: The bearer token they must carry (None: none).
            max_body_bytes: The body-size limit (413 above it; None: no limit).
            predict: Include ``GET /jobs/batch_size`` (False when micro-batching serves it).
            microbatch: With ``predict=False``, a function returning the micro-batching
                middleware (:class:`~banditfleet.serve.edge.MicroBatchPredict`, or None
                before Starlette built it): the direct HTTP protocol
                (:meth:`respond`) then submits predictions to its batcher itself.
        """
        self._metrics = metrics
        self._expected = None if token is None else b"bearer " + token.encode("ascii")
        self._max_body = max_body_bytes
        self._microbatch = microbatch if enabled and not predict else None
        self._direct = {}
        if not enabled:
            return
        self._direct = {
            ("POST", REGISTER_JOB_URL): self._register,
            ("POST", REPORT_RESULT_URL): self._report,
            ("PATCH", REPORT_END_URL): self._end_trial,
            ("DELETE", DELETE_JOB_URL): self._delete,
        }
        if predict:
            self._direct[("GET", GET_NEXT_BATCH_SIZE_URL)] = self._predict

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            handler = self._direct.get((scope["method"], scope["path"]))
            if handler is not None:
                metrics = self._metrics
                if metrics is None:
                    await self._serve(handler, scope, receive, send)
                    return
                t0 = time.perf_counter()
                status = 500
                try:
                    status = await self._serve(handler, scope, receive, send)
                finally:
                    metrics.observe(scope["method"], scope["path"], status, time.perf_counter() - t0)
                return
        await self.starlette(scope, receive, send)

    # The handlers: (raw body, content type, scope) -> (status, JSON bytes); they
    # raise ProtocolError / ZeusServerError for refusals, as the routed ones do.
    def _register(self, raw: bytes, ctype: Optional[str], scope: Any) -> tuple[int, bytes]:
        job = parse_body(JobSpecFromClient, raw, ctype)
        created, spec = self.ctx.state.register(job.dict())
        return (201 if created else 200), _render(spec)

    def _predict(self, raw: bytes, ctype: Optional[str], scope: Any) -> tuple[int, bytes]:
        return 200, _render_trial(self.ctx.state.predict(_query_job_id(scope)))

    def _report(self, raw: bytes, ctype: Optional[str], scope: Any) -> tuple[int, bytes]:
        body = read_json(raw, ctype)
        result = fast_training_result(body)
        if result is None:
            result = validate_body(TrainingResult, body).dict()
        return 200, _render_report(self.ctx.state.report(result))

    def _end_trial(self, raw: bytes, ctype: Optional[str], scope: Any) -> tuple[int, bytes]:
        body = read_json(raw, ctype)
        t = fast_trial_id(body)
        if t is None:
            m = validate_body(TrialId, body)
            t = (m.job_id, m.batch_size, m.trial_number)
        self.ctx.state.end_trial(*t)
        return 200, b"null"

    def _delete(self, raw: bytes, ctype: Optional[str], scope: Any) -> tuple[int, bytes]:
        self.ctx.state.delete_job(_query_job_id(scope))
        return 200, b"null"

    def direct_handler(self, method: str, path: str) -> Optional[Callable[..., tuple[int, bytes]]]:
        """The direct-path handler of (method, path), or None (the request goes through ASGI)."""
        handler = self._direct.get((method, path))
        if handler is None and self._microbatch is not None and method == "GET" and path == GET_NEXT_BATCH_SIZE_URL:
            if self._microbatch() is not None:
                return self._predict_batched
        return handler

    def _predict_batched(self, raw: bytes, ctype: Optional[str], scope: Any) -> tuple[int, bytes]:
        # The marker of micro-batched predictions in respond(); never called as a handler.
        raise AssertionError("micro-batched predictions are answered by respond()")

    def _respond_batched(self, job_id: str, answer: Callable[..., None]) -> None:
        """A micro-batched ``GET /jobs/batch_size`` (what MicroBatchPredict does, from callbacks)."""
        ctx = self.ctx
        fut = asyncio.ensure_future(self._microbatch().batcher(ctx).submit(job_id))

        def decided(f: asyncio.Future) -> None:
            try:
                status, body = f.result()
            except Exception as exc:  # noqa: BLE001 - as the routed app's 500 handler answers
                logger.error("unhandled error in a micro-batched prediction: %r", exc)
                answer(500, _render({"message": f"internal error: {type(exc).__name__}: {exc}"}))
                return
            if status == 503:
                answer(status, _render(body))
                return
            data = _render_trial(body) if status == 200 else _render(body)

            def durable(error: Optional[BaseException]) -> None:
                if error is None:
                    answer(status, data)
                elif isinstance(error, JournalError):
                    answer(503, _render({"message": str(error)}))
                else:
                    answer(500, _render({"message": f"internal error: {type(error).__name__}: {error}"}))

            try:
                ctx.when_durable(durable)
            except JournalError as exc:
                answer(503, _render({"message": str(exc)}))

        fut.add_done_callback(decided)

    def respond(self, handler: Callable[..., tuple[int, bytes]], method: str, path: str, query_string: bytes,
                headers: list[tuple[bytes, bytes]], raw: bytes,
                reply: Callable[[int, bytes, bytes], None]) -> None:
        """Answer one complete direct-path request without a task (see :mod:`banditfleet.serve.direct_http`).

        The caller has checked that the request is not chunked, is within the body
        limit and has its whole body in ``raw``. ``reply(status, body, extra header
        lines)`` is called exactly once: at once for refusals that need no durability,
        else from the event loop once the journal is durable. The checks, answers and
        metrics are those of :meth:`_serve`.
        """
        metrics = self._metrics
        t0 = time.perf_counter()

        def answer(status: int, data: bytes, extra: bytes = b"") -> None:
            try:
                reply(status, data, extra)
            finally:
                if metrics is not None:
                    metrics.observe(method, path, status, time.perf_counter() - t0)

        ctype: Optional[bytes] = None
        auth: Optional[bytes] = None
        for name, value in headers:
            if name == b"content-type":
                if ctype is None:
                    ctype = value
            elif name == b"authorization":
                if auth is None:
                    auth = value
        expected = self._expected
        if expected is not None:
            given = auth or b""
            if not hmac.compare_digest(given[:7].lower() + given[7:], expected):
                answer(401, _UNAUTHORIZED, b'www-authenticate: Bearer realm="banditfleet"\r\n')
                return
        if handler == self._predict_batched:
            job_id = None  # the last one, as MicroBatchPredict reads it
            for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
                if key == "job_id":
                    job_id = value
            if job_id is not None:
                self._respond_batched(job_id, answer)
                return
            handler = self._predict  # no job_id: the protocol's 422, as MicroBatchPredict passes it on
        ctx = self.ctx
        if ctx.failed is not None:
            answer(503, _render({"message": ctx.failed}))
            return
        scope = {"query_string": query_string}
        try:
            status, data = handler(raw, None if ctype is None else ctype.decode("latin-1"), scope)
        except ProtocolError as exc:
            status, data = exc.status, _render(exc.body)
        except ZeusServerError as exc:
            status, data = exc.status, _render({"message": exc.message})
        except JournalError as exc:
            answer(503, _render({"message": ctx.fail(exc)}))
            return
        except Exception as exc:  # noqa: BLE001 - as the routed app's 500 handler answers
            logger.exception("unhandled error in %s %s", method, path)
            answer(500, _render({"message": f"internal error: {type(exc).__name__}: {exc}"}))
            return

        def durable(error: Optional[BaseException]) -> None:
            if error is None:
                answer(status, data)
            elif isinstance(error, JournalError):
                answer(503, _render({"message": ctx.fail(error)}))
            else:
                logger.error("fsync wait failed: %r", error)
                answer(500, _render({"message": f"internal error: {type(error).__name__}: {error}"}))

        try:
            ctx.when_durable(durable)
        except JournalError as exc:
            answer(503, _render({"message": ctx.fail(exc)}))

    async def _serve(self, handler: Callable[[bytes, Optional[str], Any], tuple[int, bytes]], scope: Any,
                     receive: Any, send: Any) -> int:
        """One request on the direct path; returns the status answered (500: none)."""
        ctype: Optional[bytes] = None
        auth: Optional[bytes] = None
        length: Optional[int] = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                if ctype is None:
                    ctype = value
            elif name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
            elif name == b"authorization":
                if auth is None:
                    auth = value
            elif name == b"transfer-encoding":
                chunked = chunked or b"chunked" in value.lower()
        expected = self._expected
        if expected is not None:
            given = auth or b""
            if not hmac.compare_digest(given[:7].lower() + given[7:], expected):
                return await _send_unauthorized(send)
        limit = self._max_body
        if limit is not None and length is not None and not chunked and length > limit:
            return await _send_too_large(send, limit)
        raw = b""
        if scope["method"] != "GET" and scope["method"] != "DELETE" or (chunked and limit is not None):
            first = await receive()
            if first["type"] != "http.request":
                return 500  # the client went away: nothing was done
            raw = first.get("body", b"")
            if first.get("more_body", False):
                parts = [raw]
                size = len(raw)
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return 500
                    chunk = message.get("body", b"")
                    parts.append(chunk)
                    size += len(chunk)
                    if chunked and limit is not None and size > limit:
                        return await _send_too_large(send, limit)
                    if not message.get("more_body", False):
                        break
                raw = b"".join(parts)
            elif chunked and limit is not None and len(raw) > limit:
                return await _send_too_large(send, limit)
        ctx = self.ctx
        if ctx.failed is not None:
            status, data = 503, _render({"message": ctx.failed})
        else:
            try:
                status, data = handler(raw, None if ctype is None else ctype.decode("latin-1"), scope)
                await ctx.durable()
            except ProtocolError as exc:
                status, data = exc.status, _render(exc.body)
            except ZeusServerError as exc:
                status, data = exc.status, _render({"message": exc.message})
            except JournalError as exc:
                status, data = 503, _render({"message": ctx.fail(exc)})
            except Exception as exc:  # noqa: BLE001 - as the routed app's 500 handler answers
                logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
                status, data = 500, _render({"message": f"internal error: {type(exc).__name__}: {exc}"})
            if 400 <= status < 500:
                try:  # a refusal may depend on state another request just changed: durable too
                    await ctx.durable()
                except JournalError as exc:
                    status, data = 503, _render({"message": ctx.fail(exc)})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", b"%d" % len(data)), _JSON_CT]})
        await send({"type": "http.response.body", "body": data})
        return status


_UNAUTHORIZED = json.dumps({"message": "Missing or invalid bearer token."}).encode()  # as BearerAuth renders it


async def _send_unauthorized(send: Any) -> int:
    # The bytes and headers BearerAuth answers with.
    await send({"type": "http.response.start", "status": 401,
                "headers": [_JSON_CT, (b"content-length", b"%d" % len(_UNAUTHORIZED)),
                            (b"www-authenticate", b'Bearer realm="banditfleet"')]})
    await send({"type": "http.response.body", "body": _UNAUTHORIZED})
    return 401


async def _send_too_large(send: Any, limit: int) -> int:
    # The bytes and headers BodyLimit answers with.
    data = json.dumps({"message": f"Request body is larger than the limit of {limit} bytes."}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [_JSON_CT, (b"content-length", b"%d" % len(data)), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
    return 413

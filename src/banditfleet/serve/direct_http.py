"""uvicorn's httptools protocol with the Zeus endpoints answered without an ASGI task.

uvicorn costs about 50 µs of CPU per request even for an ASGI app that
answers a constant (a scope dict, a ``RequestResponseCycle`` with its
``asyncio.Event``, a task, ASGI message dicts, header checks on ``send``); a
training cluster's traffic is almost all ``GET /jobs/batch_size``,
``POST /report`` and ``PATCH /trials``. :func:`direct_protocol` returns a
subclass of uvicorn's ``HttpToolsProtocol`` that answers those requests
(the direct path of :class:`~banditfleet.serve.app.ZeusApp`) from the
parser's callbacks: the request is decided when its last byte arrives, and
the response is written by the callback that the group commit's fsync
resolves (:meth:`~banditfleet.serve.app.ServeContext.when_durable`), with
the same status, body and headers the ASGI path sends.

Everything else is uvicorn's own path, unchanged: other endpoints, and any
request on a direct endpoint that is chunked, over the body limit, asks for
``100-continue``, is an upgrade, is pipelined behind an unfinished request,
has a percent-encoded path, or arrives with ``--root-path`` or
``--limit-concurrency`` set. uvicorn's lifecycle (keep-alive timeouts,
graceful shutdown, flow control, signals, lifespan) is untouched: the
stand-in cycle has the attributes uvicorn's connection handling reads
(``response_complete``, ``keep_alive``, ``disconnected``, ``message_event``).
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["direct_protocol", "DirectHttpToolsProtocol"]


class _NoEvent:
    """The ``message_event`` of a direct cycle: nobody waits on it."""

    __slots__ = ()

    def set(self) -> None:
        pass

    def clear(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class _DirectCycle:
    """Stands in for uvicorn's ``RequestResponseCycle`` while a direct request is read and answered."""

    __slots__ = ("handler", "method", "path", "query", "headers", "body", "keep_alive", "response_complete",
                 "disconnected", "more_body", "message_event")

    def __init__(self, handler: Any, method: str, path: str, query: bytes, headers: list, keep_alive: bool) -> None:
        self.handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = b""
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.more_body = True
        self.message_event = _NO_EVENT


def _find_zeus_app(app: Any) -> Any:
    """The :class:`~banditfleet.serve.app.ZeusApp` inside uvicorn's wrappers (``.app`` chains), or None."""
    from banditfleet.serve.app import ZeusApp

    for _ in range(16):
        if isinstance(app, ZeusApp):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def _build() -> Optional[type]:
    try:
        import httptools
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:
        return None

    parse_url = httptools.parse_url

    class DirectHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol; Zeus's endpoints answered from the parser callbacks.

        The application is :attr:`zeus_app` when set (:func:`direct_protocol`),
        else the :class:`~banditfleet.serve.app.ZeusApp` found inside the
        application uvicorn loaded; without one it is uvicorn's protocol.
        """

        zeus_app: Any = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._default_src: Any = None
            self._default_bytes = b""
            self._zeus = self.zeus_app if self.zeus_app is not None else _find_zeus_app(self.app)
            self._direct_ok = self._zeus is not None and not self.root_path and self.limit_concurrency is None

        def on_headers_complete(self) -> None:
            # A response written synchronously (from a parser callback) armed the
            # keep-alive timer; a request has started since: disarm it, as
            # data_received does for a request arriving in a later read.
            self._unset_keepalive_if_required()
            if self._direct_ok and not self.expect_100_continue and (self.cycle is None or self.cycle.response_complete):
                parser = self.parser
                method = parser.get_method().decode("ascii")
                handler = None
                parsed = None
                if not parser.should_upgrade():
                    parsed = parse_url(self.url)
                    raw_path = parsed.path
                    if b"%" not in raw_path:
                        handler = self._zeus.direct_handler(method, raw_path.decode("ascii"))
                if handler is not None and self._plain_body():
                    version = parser.get_http_version()
                    self.cycle = _DirectCycle(handler, method, raw_path.decode("ascii"), parsed.query or b"",
                                              self.headers, version != "1.0" and parser.should_keep_alive())
                    return
            super().on_headers_complete()

        def _plain_body(self) -> bool:
            """No chunked body and a declared length within the limit (else the ASGI path decides)."""
            limit = self._zeus.max_body_bytes
            for name, value in self.headers:
                if name == b"transfer-encoding":
                    return False
                if name == b"content-length" and limit is not None:
                    try:
                        if int(value) > limit:
                            return False
                    except ValueError:
                        return False
            return True

        def on_body(self, body: bytes) -> None:
            cycle = self.cycle
            if type(cycle) is _DirectCycle:
                if not cycle.response_complete:
                    cycle.body += body  # bounded: the declared length is within the limit
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            cycle = self.cycle
            if type(cycle) is not _DirectCycle:
                super().on_message_complete()
                return
            if cycle.response_complete:
                return
            cycle.more_body = False

            def reply(status: int, data: bytes, extra: bytes = b"") -> None:
                self._write(cycle, status, data, extra)

            try:
                self._zeus.respond(cycle.handler, cycle.method, cycle.path, cycle.query, cycle.headers,
                                      cycle.body, reply)
            except Exception:  # noqa: BLE001 - never into the parser: answer 500 as uvicorn would
                self.logger.exception("Exception in the direct path of banditfleet serve")
                if not cycle.response_complete:
                    self._write(cycle, 500, b"Internal Server Error", b"", b"text/plain; charset=utf-8")

        def _write(self, cycle: _DirectCycle, status: int, data: bytes, extra: bytes = b"",
                   content_type: bytes = b"application/json") -> None:
            if cycle.response_complete:
                return
            cycle.response_complete = True
            if cycle.disconnected or self.transport.is_closing():
                return
            default = self.server_state.default_headers
            if default is not self._default_src:
                self._default_src = default
                self._default_bytes = b"".join(b"%s: %s\r\n" % (name.lower(), value) for name, value in default)
            close = b"" if cycle.keep_alive else b"connection: close\r\n"
            self.transport.write(b"%s%scontent-length: %d\r\ncontent-type: %s\r\n%s%s\r\n%s" % (
                STATUS_LINE[status], self._default_bytes, len(data), content_type, extra, close, data))
            if not cycle.keep_alive:
                self.transport.close()
            self.on_response_complete()

    return DirectHttpToolsProtocol


#: uvicorn's httptools protocol with the direct path (None without httptools or
#: uvicorn): ``uvicorn --http banditfleet.serve.direct_http:DirectHttpToolsProtocol``.
DirectHttpToolsProtocol = _build()


def direct_protocol(app: Any) -> Optional[type]:
    """A uvicorn HTTP protocol class that answers ``app``'s direct endpoints itself.

    ``app`` is a :class:`~banditfleet.serve.app.ZeusApp`. Returns None when
    httptools or uvicorn's httptools protocol is not available (then run uvicorn
    with its own protocol: every request goes through ASGI, with the same answers).
    """
    if DirectHttpToolsProtocol is None:
        return None
    return type("DirectHttpToolsProtocol", (DirectHttpToolsProtocol,), {"zeus_app": app})

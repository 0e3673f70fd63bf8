"""Access control of ``banditfleet serve``: bearer tokens, the bind check, the body-size limit.

Three pieces, each a plain ASGI middleware or function, so they wrap any
ASGI application:

* :class:`BearerAuth` answers 401 to every HTTP request whose
  ``Authorization`` header is not ``Bearer <token>``; the comparison is
  :func:`hmac.compare_digest` on bytes (constant time in the token's length).
* :class:`BodyLimit` answers 413 to a request whose body is longer than the
  limit: at once from its ``Content-Length``, or as soon as a chunked body
  passes the limit (the application never sees such a request, so it
  changes nothing).
* :func:`check_bind` refuses to serve a non-loopback address without a token
  unless the operator said ``--insecure``; :func:`load_token` reads a token
  file.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

__all__ = [
    "BearerAuth",
    "BodyLimit",
    "check_bind",
    "is_loopback",
    "load_token",
    "InsecureBindError",
    "TokenFileError",
    "DEFAULT_MAX_BODY_BYTES",
]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Default request body limit: 16 MiB, room for a batch of ~100,000 reports.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class InsecureBindError(ValueError):
    """A non-loopback address was asked for without a token and without ``--insecure``."""


class TokenFileError(ValueError):
    """The token file cannot be used (missing, empty, or not one line of printable ASCII)."""


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": data})


def load_token(path: str | os.PathLike) -> str:
    """The bearer token in ``path``: its content with surrounding whitespace removed.

    Raises :class:`TokenFileError` when the file cannot be read, is empty, or
    holds characters a header cannot carry (anything but printable ASCII
    without spaces). Logs a warning when other users may read the file.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {str(p)!r}: {exc}") from exc
    if not text:
        raise TokenFileError(f"the token file {str(p)!r} is empty")
    if any(not (33 <= ord(ch) <= 126) for ch in text):
        raise TokenFileError(f"the token in {str(p)!r} must be printable ASCII without spaces or line breaks")
    try:
        if p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning("token file %s may be read by other users (mode %o); chmod 600 it",
                           p, stat.S_IMODE(p.stat().st_mode))
    except OSError:
        pass
    return text


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_bind(host: str, token: str | None, insecure: bool = False) -> None:
    """Refuse to serve a non-loopback ``host`` without a token, unless ``insecure``.

    Raises:
        InsecureBindError: ``host`` is reachable from other machines, no token
            is configured, and ``insecure`` is False.
    """
    if token is None and not insecure and not is_loopback(host):
        raise InsecureBindError(
            f"refusing to bind {host!r} without a token: anyone who can reach it could register, report and delete "
            "jobs. Give --token-file FILE (clients send 'Authorization: Bearer <token>'), bind 127.0.0.1 behind a "
            "reverse proxy, or pass --insecure on a network you trust"
        )
    if insecure and token is None and not is_loopback(host):
        logger.warning("serving %s without a token (--insecure): every client that reaches it is trusted", host)


class BearerAuth:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``.

    A missing or wrong token gets 401 with ``{"message": ...}`` (the error
    body shape of Zeus's server) and ``WWW-Authenticate: Bearer``; the wrapped
    application is not called. Lifespan and other non-HTTP scopes pass through.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("the token must not be empty")
        self.app = app
        self._expected = b"bearer " + token.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
                break
        # The scheme is case-insensitive (RFC 7235); the token is compared in
        # constant time, whatever its length or content.
        candidate = given[:7].lower() + given[7:]
        if not hmac.compare_digest(candidate, self._expected):
            await _send_json(send, 401, {"message": "Missing or invalid bearer token."},
                             [(b"www-authenticate", b'Bearer realm="banditfleet"')])
            return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: bodies over ``max_bytes`` are answered 413 and never reach the application.

    A declared ``Content-Length`` over the limit is refused before anything is
    read. A body without a length (chunked) is read ahead here, up to the
    limit, and handed to the application only if it fits, so a refused
    request cannot have changed any state.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        await _send_json(send, 413, {"message": f"Request body is larger than the limit of {self.max_bytes} bytes."},
                         [(b"connection", b"close")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if length is not None and not chunked:
            if length > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        if not chunked:
            await self.app(scope, receive, send)
            return
        # Chunked: read the whole body first (bounded), then replay it.
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            parts.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(parts, None, receive), send)


def _replay(parts: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    state = {"sent": False}

    async def replayed() -> Message:
        if not state["sent"]:
            state["sent"] = True
            if pending is not None:
                return pending
            return {"type": "http.request", "body": b"".join(parts), "more_body": False}
        return await receive()

    return replayed

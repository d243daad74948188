"""Generic ASGI guards for the web app: a streamed body limit, a body deadline, security headers.

They are plain ASGI middleware (not FastAPI routes) so every route gets them, the ones added later
included (the live WebSocket mode lives in its own module), and so they see the body as it
arrives: a ``Content-Length`` check alone misses ``Transfer-Encoding: chunked``, whose size is
only known once it has been read, and by then Starlette's form parser has spooled it to disk.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["BodyLimit", "SecurityHeaders", "content_disposition"]


class _Refused(Exception):
    """Raised into the app's ``receive`` to stop it reading a body we will not accept."""


class BodyLimit:
    """Answer 413 as soon as more than ``max_bytes`` of request body arrived, whatever the encoding,
    and 408 when the body is not complete within ``timeout_s`` (a slow client holds a connection,
    a worker's form parser and a spool file for as long as it likes otherwise).

    The app only ever sees at most ``max_bytes`` (plus one network chunk): the wrapped ``receive``
    raises once the count is over, and whatever the app then tries to answer (FastAPI turns the
    error into a 400) is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, too_large: str, timeout_s: float | None = 120.0):
        self.app = app
        self.max_bytes = max_bytes
        self.too_large = too_large
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _json(send, 413, self.too_large)
            return
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s
        state: dict[str, Any] = {"bytes": 0, "done": False, "refused": None, "started": False}

        async def limited_receive() -> Message:
            if state["refused"] is not None:
                raise _Refused
            if state["done"] or deadline is None:  # body complete: later calls wait for a disconnect
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
                except TimeoutError:
                    state["refused"] = (408, f"the request body did not arrive within {self.timeout_s:g} s")
                    raise _Refused from None
            if message["type"] == "http.request":
                state["bytes"] += len(message.get("body", b""))
                if state["bytes"] > self.max_bytes:
                    state["refused"] = (413, self.too_large)
                    raise _Refused
                state["done"] = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"] is not None:
                return  # the app's own answer to the aborted read (a 400 or 500) is replaced below
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if state["refused"] is None:
                raise
        if state["refused"] is not None and not state["started"]:
            status, detail = state["refused"]
            await _json(send, status, detail)


class SecurityHeaders:
    """``nosniff``, no framing, no referrer and a Content-Security-Policy on every HTTP response.

    The page's scripts and styles are files under /static, so scripts and styles are ``'self'``
    only; images may be ``blob:``/``data:`` (results and webcam frames drawn in the page), media may
    be ``blob:``/``mediastream:`` (getUserMedia), and the page may talk to its own origin over
    HTTP and WebSocket. ``docs_paths`` (FastAPI's Swagger/ReDoc pages, which load their scripts
    from a CDN with an inline bootstrap) get a policy that allows exactly that and nothing else.
    """

    def __init__(self, app: ASGIApp, docs_paths: Iterable[str] = ()):
        self.app = app
        self.docs_paths = frozenset(p for p in docs_paths if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path", "") in self.docs_paths
        extra = _headers_for(_header(scope, b"host"), docs)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((k, v) for k, v in extra if k not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")
_CDN = "https://cdn.jsdelivr.net"


def csp(host: str | None = None, docs: bool = False) -> str:
    """The policy; ``host`` (the request's Host header, if well-formed) adds explicit ws:/wss: sources,
    for browsers that do not yet count same-origin WebSockets as ``'self'``."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    common = ["default-src 'self'", "base-uri 'none'", "object-src 'none'", "frame-ancestors 'none'",
              "form-action 'self'"]
    if docs:
        return "; ".join([*common, f"script-src 'self' 'unsafe-inline' {_CDN}",
                          f"style-src 'self' 'unsafe-inline' {_CDN} https://fonts.googleapis.com",
                          "font-src 'self' https://fonts.gstatic.com", "worker-src 'self' blob:",
                          f"img-src 'self' data: blob: {_CDN} https://fastapi.tiangolo.com",
                          f"connect-src 'self'{sockets}"])
    return "; ".join([*common, "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:",
                      "media-src 'self' blob: mediastream:", f"connect-src 'self'{sockets}"])


def _headers_for(host: str | None, docs: bool) -> list[tuple[bytes, bytes]]:
    values = {
        "content-security-policy": csp(host, docs),
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "camera=(self), microphone=(), geolocation=()",
    }
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in values.items()]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is never read: this connection cannot be reused
    ]})
    await send({"type": "http.response.body", "body": body})


_ATTR_CHARS = "!#$&+^`|"  # RFC 5987 attr-char, besides the letters, digits and "-._~" quote() keeps


def content_disposition(filename: str, disposition: str = "inline") -> str:
    """A header any client can parse for any file name: an ASCII ``filename`` (unsafe characters as
    ``_``) plus RFC 5987 ``filename*=UTF-8''…`` with the real name. HTTP headers are Latin-1, so a
    name like ``写真.png`` put in raw makes the server fail after the work is done."""
    name = "".join(ch for ch in filename if ch.isprintable()) or "image"
    if len(name) > 150:  # keep the extension: it says what the file is
        stem, dot, ext = name.rpartition(".")
        name = stem[: 149 - len(ext)] + dot + ext if dot and len(ext) <= 10 else name[:150]
    fallback = re.sub(r"[^A-Za-z0-9._ ()+-]", "_", name).strip(" .") or "image"
    encoded = urllib.parse.quote(name, safe=_ATTR_CHARS)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"

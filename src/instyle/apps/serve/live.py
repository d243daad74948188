"""Live mode: stylize a stream of camera (or video) frames over a WebSocket at ``/api/live``.

Real-time means bounded latency, not a queue: each viewer has one *pending* slot and a newer frame
replaces an older one still waiting there (latest frame wins; the replaced one is counted as
dropped and gets no reply). The page also paces itself, sending the next frame only when the
previous one came back, so a well-behaved client loses nothing and a flooding one cannot build
up a backlog. A small pool of worker threads (one by default: a CPU forward pass already uses
every core) serves the viewers with a pending frame in round-robin order, so one fast client
cannot starve the others; inference never runs on the event loop.

Protocol (one socket per viewer):

* server -> client, text, on connect: ``{"type": "hello", "config": {...}, "styles": [...],
  "fast": [...], "limits": {...}}``; or ``{"type": "busy", "message": ...}`` and a close with
  code 1013 (try again later) when ``max_live`` viewers are already connected
  (``{"type": "unavailable", ...}`` when live mode is off or the server has no style, ``{"type":
  "forbidden", ...}`` for a page from another origin: the ``Origin`` header must match ``Host``).
* client -> server, text: a control message, ``{"type": "config", "style": NAME, "strength": 0..1
  or null, "scale": 0.1..8 or null, "stroke": 0.1..10 or null, "preserve_color": bool}`` (any subset of the fields); the
  server answers with the whole config, ``{"type": "config", ...}``. It applies from the next
  frame stylized.
* client -> server, binary: a frame, 4-byte big-endian frame number, then a JPEG, PNG or WebP
  image of at most ``MAX_SIDE`` px a side, ``MAX_PIXELS`` pixels and ``MAX_FRAME_BYTES`` bytes.
* server -> client, binary: a result, 12-byte header ``>III`` (the frame number, the server's time
  from receiving the frame to its result being encoded, in microseconds, the viewer's frames
  dropped so far), then the stylized frame as JPEG, same size as the input.
* server -> client, text: ``{"type": "error", "message": ..., "frame": N or null}`` for a bad
  frame or control message; the stream carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import FastAPI, WebSocket
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from instyle.core.errors import InstyleError

MAX_SIDE = 1280
MAX_PIXELS = 1280 * 720
MIN_SIDE = 32  # the generator downsamples by 4 and reflect-pads: smaller frames are not worth a pass
MAX_FRAME_BYTES = 2 * 1024 * 1024
FRAME_HEADER = struct.Struct(">I")
RESULT_HEADER = struct.Struct(">III")
FORMATS = ("JPEG", "PNG", "WEBP")
JPEG_QUALITY = 85
BUSY_CODE = 1013  # RFC 6455 "try again later"


class LiveError(InstyleError):
    """A bad frame or control message: reported to that viewer, the stream goes on."""

    def __init__(self, message: str, frame: int | None = None):
        super().__init__(message)
        self.frame = frame


@dataclass(frozen=True)
class LiveConfig:
    """What a viewer's frames are stylized with; ``None`` = the style card's tuned value."""

    style: str
    strength: float | None = None
    scale: float | None = None
    stroke: float | None = None  # used for styles with stroke rows only (clamped into their range)
    preserve_color: bool = False


@dataclass
class Frame:
    number: int
    data: bytes  # the image, header stripped
    received: float = field(default_factory=time.perf_counter)


class Viewer:
    """One socket's state, shared between its event loop and the worker threads (under the hub's lock)."""

    def __init__(self, config: LiveConfig, deliver: Callable[[bytes | dict[str, Any]], None]):
        self.config = config
        self.deliver = deliver  # thread-safe: hands a message to this viewer's sender task
        self.pending: Frame | None = None
        self.busy = False  # a worker is stylizing one of its frames: keeps results in order
        self.dropped = 0


class LiveHub:
    """Latest-frame-wins slots, one per viewer, served round robin by ``workers`` threads.

    ``process(frame, config) -> JPEG bytes`` is the blocking work; it raises ``LiveError`` (or any
    ``InstyleError``) for a frame that cannot be stylized, which becomes an error message.
    Workers start with the first viewer and stop when the last one leaves.
    """

    def __init__(self, process: Callable[[Frame, LiveConfig], bytes], max_viewers: int, workers: int = 1):
        self.process = process
        self.max_viewers = max_viewers
        self.workers = max(1, workers)
        self._viewers: list[Viewer] = []
        self._turn = 0
        self._running = 0
        self._cond = threading.Condition()

    @property
    def viewers(self) -> int:
        with self._cond:
            return len(self._viewers)

    def join(self, viewer: Viewer) -> bool:
        """Add a viewer; False (and nothing changes) when ``max_viewers`` are already here."""
        with self._cond:
            if len(self._viewers) >= self.max_viewers:
                return False
            self._viewers.append(viewer)
            while self._running < self.workers:
                self._running += 1
                threading.Thread(target=self._work, name="instyle-live", daemon=True).start()
            return True

    def leave(self, viewer: Viewer) -> None:
        with self._cond:
            if viewer in self._viewers:
                self._viewers.remove(viewer)
            viewer.pending = None
            self._cond.notify_all()

    def submit(self, viewer: Viewer, frame: Frame) -> None:
        """Put ``frame`` in the viewer's slot; a frame still waiting there is stale and dropped."""
        with self._cond:
            if viewer.pending is not None:
                viewer.dropped += 1
            viewer.pending = frame
            self._cond.notify()

    def _next(self) -> tuple[Viewer, Frame] | None:
        """The next viewer after the last one served that has a frame and no frame in progress."""
        n = len(self._viewers)
        for i in range(n):
            viewer = self._viewers[(self._turn + i) % n]
            if viewer.pending is not None and not viewer.busy:
                self._turn = (self._turn + i + 1) % n
                frame, viewer.pending, viewer.busy = viewer.pending, None, True
                return viewer, frame
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                while job is None:
                    if not self._viewers:
                        self._running -= 1
                        return
                    self._cond.wait()
                    job = self._next()
                viewer, frame = job
                config = viewer.config
            message: bytes | dict[str, Any]
            try:
                image = self.process(frame, config)
                spent = min(int((time.perf_counter() - frame.received) * 1e6), 2**32 - 1)
                with self._cond:
                    dropped = viewer.dropped
                message = RESULT_HEADER.pack(frame.number, spent, dropped % 2**32) + image
            except InstyleError as exc:
                message = error_message(str(exc), frame.number)
            except Exception as exc:  # a bug must not kill the worker that every viewer shares
                message = error_message(f"stylization failed: {type(exc).__name__}: {exc}", frame.number)
            finally:
                with self._cond:
                    viewer.busy = False
                    self._cond.notify()
            viewer.deliver(message)


def error_message(message: str, frame: int | None = None) -> dict[str, Any]:
    return {"type": "error", "message": message, "frame": frame}


def parse_frame(data: bytes) -> Frame:
    """Check a binary message's header, format and size without decoding the pixels (event-loop cheap)."""
    if len(data) <= FRAME_HEADER.size:
        raise LiveError(f"a frame is a {FRAME_HEADER.size}-byte big-endian frame number followed by a JPEG, "
                        f"PNG or WebP image; got {len(data)} bytes")
    (number,) = FRAME_HEADER.unpack_from(data)
    body = data[FRAME_HEADER.size:]
    if len(body) > MAX_FRAME_BYTES:
        raise LiveError(f"frame {number}: {len(body) / 2**20:.1f} MB is over the live limit of "
                        f"{MAX_FRAME_BYTES / 2**20:g} MB", number)
    try:
        with Image.open(io.BytesIO(body), formats=FORMATS) as img:
            width, height = img.size
    except Exception:  # Pillow raises several types for garbage; each means the same to the viewer
        raise LiveError(f"frame {number}: not a JPEG, PNG or WebP image", number) from None
    check_size(width, height, number)
    return Frame(number, body)


def check_size(width: int, height: int, number: int | None = None) -> None:
    where = f"frame {number}: " if number is not None else ""
    if min(width, height) < MIN_SIDE:
        raise LiveError(f"{where}{width}x{height} is too small for live (at least {MIN_SIDE} px a side)", number)
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise LiveError(f"{where}{width}x{height} is over the live limit ({MAX_SIDE} px a side, "
                        f"{MAX_PIXELS:,} pixels: 1280x720); send smaller frames", number)


_CONTROL_FIELDS = {"type", "style", "strength", "scale", "stroke", "preserve_color"}


def apply_control(text: str, config: LiveConfig, styles: dict[str, Any]) -> LiveConfig:
    """A control message applied to ``config``; ``LiveError`` with a one-line reason if it is invalid."""
    try:
        msg = json.loads(text)
    except ValueError:
        raise LiveError('a control message is a JSON object, e.g. {"type": "config", "style": "..."}') from None
    if not isinstance(msg, dict) or msg.get("type", "config") != "config":
        raise LiveError('a control message is a JSON object with "type": "config"')
    unknown = sorted(set(msg) - _CONTROL_FIELDS)
    if unknown:
        raise LiveError(f"unknown control field(s): {', '.join(unknown)} (known: style, strength, scale, "
                        "stroke, preserve_color)")
    changes: dict[str, Any] = {}
    if "style" in msg:
        if msg["style"] not in styles:
            raise LiveError(f"unknown style {msg['style']!r} (available: {', '.join(styles) or 'none'})")
        changes["style"] = msg["style"]
    for name, low, high in (("strength", 0.0, 1.0), ("scale", 0.1, 8.0), ("stroke", 0.1, 10.0)):
        if name in msg:
            value = msg[name]
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                        or not low <= value <= high:
                    raise LiveError(f"{name} must be a number from {low:g} to {high:g} (or null for the "
                                    f"style's tuned value), got {value!r}")
                value = float(value)
            changes[name] = value
    if "preserve_color" in msg:
        if not isinstance(msg["preserve_color"], bool):
            raise LiveError(f"preserve_color must be true or false, got {msg['preserve_color']!r}")
        changes["preserve_color"] = msg["preserve_color"]
    return replace(config, **changes)


def default_style(names: list[str]) -> str | None:
    """Live wants speed: the first ``-fast`` style if there is one, else the first style."""
    fast = [n for n in names if n.endswith("-fast")]
    return (fast or names or [None])[0]


def stylize_frame(registry: Any, frame: Frame, config: LiveConfig) -> bytes:
    """Decode, stylize with the registry's cached ``Stylizer`` (backend auto by default), encode JPEG."""
    try:
        with Image.open(io.BytesIO(frame.data), formats=FORMATS) as img:
            check_size(*img.size, frame.number)
            rgb = img.convert("RGB")
    except LiveError:
        raise
    except Exception:
        raise LiveError(f"frame {frame.number}: the image data is corrupt", frame.number) from None
    rows = registry.entries[config.style].strokes
    # A stroke set for one style carries over when the viewer switches: outside a style's rows it
    # is clamped to them, and styles without rows ignore it (live frames should not error on that).
    stroke = min(max(config.stroke, rows[0]), rows[-1]) if rows and config.stroke is not None else None
    out = registry.stylizer(config.style)(rgb, strength=config.strength, scale=config.scale, stroke=stroke,
                                          preserve_colors=config.preserve_color)
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def add_live_route(app: FastAPI, registry: Any, max_live: int = 4, workers: int = 1) -> LiveHub:
    """Register ``/api/live`` on ``app``; ``registry`` is the app's ``StyleRegistry``."""
    if max_live < 0:
        raise InstyleError(f"max_live must be 0 (live mode off) or more, got {max_live}")
    hub = LiveHub(lambda frame, config: stylize_frame(registry, frame, config), max_live, workers)
    app.state.live = hub
    limits = {"max_side": MAX_SIDE, "max_pixels": MAX_PIXELS, "min_side": MIN_SIDE,
              "max_frame_bytes": MAX_FRAME_BYTES, "max_viewers": max_live}

    @app.websocket("/api/live")
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        if not same_origin(websocket):
            await _refuse(websocket, "forbidden", "live connections from another site's page are refused", 1008)
            return
        names = list(registry.entries)
        style = default_style(names)
        if style is None or max_live <= 0:
            reason = ("live mode is off on this server (instyle serve --max-live 0)" if max_live <= 0 else
                      "no styles on this server; start it with a model: instyle serve --model MODEL.safetensors")
            await _refuse(websocket, "unavailable", reason, 1008 if max_live > 0 else BUSY_CODE)
            return
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[bytes | dict[str, Any]] = asyncio.Queue()

        def deliver(message: bytes | dict[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the viewer's loop is gone: nobody to tell
                loop.call_soon_threadsafe(outbox.put_nowait, message)

        viewer = Viewer(LiveConfig(style), deliver)
        if not hub.join(viewer):
            plural = "s" * (max_live != 1)
            await _refuse(websocket, "busy", f"the live view is full ({max_live} viewer{plural} at once); "
                          "try again later", BUSY_CODE)
            return
        try:
            await websocket.send_json({"type": "hello", "config": asdict(viewer.config), "styles": names,
                                       "fast": [n for n in names if n.endswith("-fast")], "limits": limits})
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_send_loop, websocket, outbox)
                await _receive_loop(websocket, hub, viewer, outbox, registry.entries)
                tasks.cancel_scope.cancel()
        finally:
            hub.leave(viewer)

    return hub


def same_origin(websocket: WebSocket) -> bool:
    """Browsers let any page open a WebSocket anywhere: only this server's own page (or a client that
    sends no Origin, like a script) may spend its CPU. The Origin's host:port must be the Host header."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == websocket.headers.get("host", "").lower()


async def _refuse(websocket: WebSocket, kind: str, message: str, code: int) -> None:
    """Say why before closing: a browser only sees a close code, the message tells the user what to do."""
    await websocket.send_json({"type": kind, "message": message})
    await websocket.close(code=code, reason=message[:120])


async def _send_loop(websocket: WebSocket, outbox: asyncio.Queue[bytes | dict[str, Any]]) -> None:
    """The only task that sends after the hello, so results, acks and errors never interleave."""
    while True:
        message = await outbox.get()
        try:
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_json(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the receive loop sees the disconnect and ends the session


async def _receive_loop(websocket: WebSocket, hub: LiveHub, viewer: Viewer,
                        outbox: asyncio.Queue[bytes | dict[str, Any]], styles: dict[str, Any]) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            if message.get("bytes") is not None:
                hub.submit(viewer, parse_frame(message["bytes"]))
            elif message.get("text") is not None:
                with hub._cond:  # workers read the config under the same lock
                    viewer.config = apply_control(message["text"], viewer.config, styles)
                    ack = asdict(viewer.config)
                outbox.put_nowait({"type": "config", **ack})
        except LiveError as exc:
            outbox.put_nowait(error_message(str(exc), exc.frame))

"""The web app: one plain page plus a small JSON API around ``Stylizer``.

Inference is CPU/GPU-bound and blocking, so it runs in Starlette's thread pool, never on the event
loop, and a semaphore caps how many images are stylized at once (memory, not fairness, is the
limit). Uploads are bounded twice: by Content-Length before the body is parsed, and by the bytes
actually read, so a lying client cannot get past the limit either.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from instyle.apps.serve.live import add_live_route
from instyle.core.errors import InstyleError
from instyle.core.version import __version__
from instyle.data.images import ImageError, load_image
from instyle.inference.stylizer import Stylizer
from instyle.models.modelfile import card_defaults, read_card
from instyle.zoo import ZOO_DIR, list_styles

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_PIXELS = 40_000_000  # a 40 MP photo is ~0.5 GB of float activations per layer: enough for a server
THUMB_SIDE = 160
_CHUNK = 1 << 20


_STRENGTH = "0 = the photo, 1 = full style (default: the value tuned for the style)"
_SCALE = "brush-stroke size, 2 = twice as large (default: the value tuned for the style)"


@dataclass
class StyleEntry:
    name: str
    title: str
    path: Path
    shipped: bool
    defaults: dict[str, float]  # the card's tuned strength and stroke scale


def _title(card: dict[str, Any], fallback: str) -> str:
    return str(card.get("style", {}).get("title") or card.get("name") or card.get("description") or fallback)


def _thumbnail_photo() -> Image.Image:
    """The photo every thumbnail stylizes: a bundled demo photo, else a deterministic synthetic one."""
    demo = sorted((ZOO_DIR.parent / "assets" / "demo").glob("*.jpg"))
    if demo:
        try:
            img = load_image(demo[0]).rgb
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
            return img
        except ImageError:
            pass
    yy, xx = np.mgrid[0:THUMB_SIDE, 0:THUMB_SIDE] / THUMB_SIDE
    sky = np.stack([0.3 + 0.4 * xx, 0.5 + 0.3 * yy, 0.9 - 0.3 * yy], axis=-1)
    hill = (yy > 0.6 + 0.15 * np.sin(6 * xx))[..., None]
    sun = (((xx - 0.7) ** 2 + (yy - 0.3) ** 2) < 0.015)[..., None]
    img = np.where(hill, [0.2, 0.5, 0.2], np.where(sun, [1.0, 0.85, 0.3], sky))
    return Image.fromarray((img * 255).astype(np.uint8))


class StyleRegistry:
    """Shipped styles plus models given by path; Stylizers are loaded once and cached (thread-safe)."""

    def __init__(self, models: dict[str, Path] | None, device: str = "auto", backend: str = "auto"):
        self.device = device
        self.backend = backend
        self.entries: dict[str, StyleEntry] = {}
        for name, card in list_styles().items():
            self.entries[name] = StyleEntry(name, _title(card, name), ZOO_DIR / f"{name}.safetensors", True,
                                             card_defaults(card))
        for name, path in (models or {}).items():
            card = read_card(path)  # fail at start-up, not on the first request
            self.entries[name] = StyleEntry(name, _title(card, name), Path(path), False, card_defaults(card))
        self._stylizers: dict[str, Any] = {}
        self._thumbs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def stylizer(self, name: str) -> Any:
        with self._lock:
            if name not in self._stylizers:
                self._stylizers[name] = Stylizer.load(self.entries[name].path, device=self.device, backend=self.backend)
            return self._stylizers[name]

    def thumbnail(self, name: str) -> bytes:
        with self._lock:
            if name in self._thumbs:
                return self._thumbs[name]
        custom = ZOO_DIR / f"{name}.jpg"
        if self.entries[name].shipped and custom.is_file():
            data = custom.read_bytes()
        else:
            buf = io.BytesIO()
            self.stylizer(name)(_thumbnail_photo()).save(buf, format="JPEG", quality=85)
            data = buf.getvalue()
        with self._lock:
            self._thumbs[name] = data
        return data


def _decode_upload(data: bytes, max_pixels: int) -> Any:
    """``load_image`` wants a path: a private temp file keeps its whole safety net (bomb guard, EXIF...)."""
    fd, tmp = tempfile.mkstemp(prefix="instyle-upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return load_image(tmp, max_pixels=max_pixels)
    finally:
        os.unlink(tmp)


def _run(registry: StyleRegistry, style: str, data: bytes, max_pixels: int, fmt: str,
         controls: dict[str, Any]) -> bytes:
    """Decode, stylize, encode: all blocking, so it runs in a worker thread."""
    try:
        loaded = _decode_upload(data, max_pixels)
    except ImageError as exc:
        reason = str(exc).split(": ", 1)[-1].replace("raise it with --max-pixels", "the server refuses it")
        too_big = "pixel limit" in reason or "over the limit" in reason
        raise HTTPException(413 if too_big else 415, f"upload is not a usable image: {reason}") from None
    out = registry.stylizer(style)(loaded.rgb, **controls)
    buf = io.BytesIO()
    if fmt == "png":
        if loaded.alpha is not None:
            out.putalpha(loaded.alpha)
        out.save(buf, format="PNG")
    else:
        out.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def create_app(models: dict[str, Path] | None = None, max_upload_mb: float = 20, max_pixels: int = DEFAULT_MAX_PIXELS,
               device: str = "auto", backend: str = "auto", max_concurrency: int = 2, max_live: int = 4) -> FastAPI:
    """The FastAPI app; ``models`` (name -> .safetensors) are offered next to the shipped styles."""
    registry = StyleRegistry(models, device=device, backend=backend)
    max_bytes = int(max_upload_mb * 1024 * 1024)
    # A thread semaphore, taken inside the worker: it works whatever event loop(s) serve the app.
    slots = threading.BoundedSemaphore(max_concurrency)

    def limited(fn: Callable[..., Any], *args: Any) -> Any:
        with slots:
            return fn(*args)
    app = FastAPI(
        title="instyle",
        summary="Fast feed-forward neural style transfer",
        description="Upload a photo, pick a style, get it back repainted. The page at `/` uses this API.",
        version=_version(),
    )
    app.state.registry = registry

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Refuse a declared-oversized body before anything is read or spooled to disk."""
        length = request.headers.get("content-length")
        if request.method == "POST" and length and length.isdigit() and int(length) > max_bytes + _CHUNK:
            return JSONResponse({"detail": _too_large(max_upload_mb)}, status_code=413)
        return await call_next(request)

    add_live_route(app, registry, max_live=max_live)  # /api/live: the WebSocket of the page's Live tab
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/healthz", summary="Liveness check")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "styles": len(registry.entries)}

    @app.get("/api/styles", summary="Styles this server offers")
    async def styles() -> dict[str, Any]:
        return {
            "styles": [
                {"name": e.name, "title": e.title, "shipped": e.shipped, "defaults": e.defaults,
                 "thumbnail": f"/api/styles/{e.name}/thumbnail"}
                for e in registry.entries.values()
            ],
            "limits": {"max_upload_mb": max_upload_mb, "max_pixels": max_pixels},
            "message": None if registry.entries else
            "No styles shipped in this build; start the server with a model: instyle serve --model MODEL.safetensors",
        }

    @app.get("/api/styles/{name}/thumbnail", summary="A small photo stylized with this style (JPEG)",
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    async def thumbnail(name: str) -> Response:
        _check_style(registry, name)
        data = await run_in_threadpool(limited, registry.thumbnail, name)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/stylize", summary="Stylize an uploaded image", response_class=Response,
              responses={200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "the result"},
                         404: {"description": "unknown style"}, 413: {"description": "upload too large"},
                         415: {"description": "not an image"}})
    async def stylize(
        image: Annotated[UploadFile, File(description="the photo (any format Pillow reads)")],
        style: Annotated[str, Form(description="a name from /api/styles")],
        strength: Annotated[float | None, Form(ge=0.0, le=1.0, description=_STRENGTH)] = None,
        preserve_color: Annotated[bool, Form(description="keep the photo's colours")] = False,
        scale: Annotated[float | None, Form(ge=0.1, le=8.0, description=_SCALE)] = None,
        format: Annotated[str, Form(pattern="^(png|jpeg)$", description="png or jpeg")] = "png",
    ) -> Response:
        _check_style(registry, style)
        data = await _read_limited(image, max_bytes, max_upload_mb)
        if not data:
            raise HTTPException(400, "the uploaded file is empty")
        controls = {"strength": strength, "preserve_colors": preserve_color, "scale": scale}
        try:
            result = await run_in_threadpool(limited, _run, registry, style, data, max_pixels, format, controls)
        except InstyleError as exc:
            raise HTTPException(500, f"stylization failed: {exc}") from None
        stem = Path(image.filename or "image").stem or "image"
        ext = "png" if format == "png" else "jpg"
        return Response(result, media_type=f"image/{format}",
                        headers={"Content-Disposition": f'inline; filename="{stem}-{style}.{ext}"'})

    return app


def _check_style(registry: StyleRegistry, name: str) -> None:
    if name not in registry.entries:
        known = ", ".join(registry.entries) or "none"
        raise HTTPException(404, f"unknown style {name!r} (available: {known})")


def _too_large(max_upload_mb: float) -> str:
    return f"upload too large: the limit is {max_upload_mb:g} MB"


async def _read_limited(upload: UploadFile, max_bytes: int, max_upload_mb: float) -> bytes:
    chunks, size = [], 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, _too_large(max_upload_mb))
        chunks.append(chunk)
    return b"".join(chunks)


def _version() -> str:
    return __version__

"""The web app: one plain page plus a small JSON API around ``Stylizer``.

Inference is CPU/GPU-bound and blocking, so it runs in Starlette's thread pool, never on the event
loop, and a semaphore caps how many images are stylized at once (memory, not fairness, is the
limit). Uploads are bounded while they stream (``guards.BodyLimit``: by Content-Length before
anything is read, and by the bytes actually received, chunked or not), and again by the bytes of
the file part; the pixels are bounded after decoding *and* after the stroke scale is applied.
Every response carries security headers (``guards.SecurityHeaders``).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from instyle.apps.serve.guards import BodyLimit, SecurityHeaders, content_disposition
from instyle.apps.serve.live import add_live_route
from instyle.apps.serve.textures import add_texture_routes
from instyle.core.errors import InstyleError
from instyle.core.version import __version__
from instyle.data.demo_photos import DEMO_PHOTOS
from instyle.data.images import ImageError, load_image
from instyle.inference.stylizer import Stylizer
from instyle.models.modelfile import read_card
from instyle.zoo import ZOO_DIR, list_styles

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_SERVE_PIXELS = 40_000_000  # a 40 MP photo is ~0.5 GB of float activations per layer: enough for a server
THUMB_SIDE = 160
_CHUNK = 1 << 20
_FORM_SLACK = 64 << 10  # multipart boundaries, part headers and the small form fields around the file
DEFAULT_BODY_TIMEOUT_S = 120.0  # a 20 MB upload needs 1.4 Mbit/s to make it


_STRENGTH = "0 = the photo, 1 = full style (default: the value tuned for the style)"
_SEED = "noise seed of a diversity model (other seeds, other results; default 0); other models ignore it"
_SCALE = "brush-stroke size by resizing the photo, 2 = twice as large (default: the value tuned for the style)"
_STROKE = ("styles with stroke rows (their `strokes` in /api/styles): stroke size at full resolution, "
           "within those rows (default: the style's value)")


@dataclass
class StyleEntry:
    name: str
    title: str
    path: Path
    shipped: bool
    defaults: dict[str, float]  # the card's tuned strength and stroke scale
    strokes: list[float] | None = None  # stroke sizes the model has rows for (the page shows a slider)


def _thumbnail_photo() -> Image.Image:
    """The photo every thumbnail stylizes: a bundled demo photo, else a deterministic synthetic one."""
    demo = sorted(DEMO_PHOTOS.glob("*.jpg"))
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
            self.entries[name] = StyleEntry(name, card.title, ZOO_DIR / f"{name}.safetensors", True,
                                             card.defaults.as_dict(), _strokes(card))
        self._stylizers: dict[str, Any] = {}
        for name, path in (models or {}).items():
            # Fail at start-up with one line, not on the first request: load the whole model now.
            card = _checked(path, read_card, path)
            self.entries[name] = StyleEntry(name, card.title, Path(path), False, card.defaults.as_dict(),
                                            _strokes(card))
            self._stylizers[name] = _checked(path, Stylizer.load, path, device=device, backend=backend)
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


def _checked(path: Path | str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)``, with any failure on an untrusted model file turned into one ``InstyleError`` line."""
    try:
        return fn(*args, **kwargs)
    except InstyleError:
        raise
    except Exception as exc:  # a malformed card can fail in many ways below the model layer
        detail = (str(exc).splitlines() or [""])[0][:200]
        raise InstyleError(f"{path}: not a usable model file ({type(exc).__name__}: {detail})") from None


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
        reason = _server_reason(exc)
        too_big = "pixel limit" in reason or "over the limit" in reason
        raise HTTPException(413 if too_big else 415, f"upload is not a usable image: {reason}") from None
    try:
        out = registry.stylizer(style)(loaded.rgb, max_pixels=max_pixels, **controls)
    except ImageError as exc:  # the stroke scale asks for more pixels than the limit
        raise HTTPException(413, f"upload too large once scaled: {_server_reason(exc)}") from None
    buf = io.BytesIO()
    icc = {"icc_profile": loaded.icc_profile} if loaded.icc_profile else {}  # keep wide-gamut colours right
    if fmt == "png":
        if loaded.alpha is not None:
            out.putalpha(loaded.alpha)
        out.save(buf, format="PNG", **icc)
    else:
        out.save(buf, format="JPEG", quality=92, **icc)
    return buf.getvalue()


def _server_reason(exc: ImageError) -> str:
    reason = str(exc)
    if reason.startswith("/") or "instyle-upload-" in reason.split(": ", 1)[0]:
        reason = reason.split(": ", 1)[-1]  # the private temp file's name means nothing to the client
    return reason.replace(", or raise it with --max-pixels", "").replace("raise it with --max-pixels",
                                                                          "the server refuses it")


def create_app(models: dict[str, Path] | None = None, max_upload_mb: float = 20, max_pixels: int = MAX_SERVE_PIXELS,
               device: str = "auto", backend: str = "auto", max_concurrency: int = 2,
               body_timeout_s: float | None = DEFAULT_BODY_TIMEOUT_S, max_live: int = 4,
               textures: dict[str, Path] | None = None) -> FastAPI:
    """The FastAPI app; ``models`` (name -> .safetensors) are offered next to the shipped styles.

    ``max_upload_mb`` bounds each request body as it streams, ``max_pixels`` each image after
    decoding and after the stroke scale, ``body_timeout_s`` how long a body may take to arrive,
    ``max_live`` how many live-mode viewers may stream at once (0: live mode off). ``textures``
    (name -> .safetensors) are offered in the Texture tab next to the shipped texture networks.
    """
    check_limits(max_upload_mb, max_pixels, max_concurrency, body_timeout_s)
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
    # Outermost last: the headers go on every answer, the body limit's own 413/408 included.
    app.add_middleware(BodyLimit, max_bytes=max_bytes + _FORM_SLACK, too_large=_too_large(max_upload_mb),
                       timeout_s=body_timeout_s)
    app.add_middleware(SecurityHeaders, docs_paths=[app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url])

    add_live_route(app, registry, max_live=max_live)  # /api/live: the WebSocket of the page's Live tab
    app.state.textures = add_texture_routes(app, textures, max_pixels, limited)  # /api/textures: the Texture tab
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
                 "strokes": e.strokes, "thumbnail": f"/api/styles/{e.name}/thumbnail"}
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
        stroke: Annotated[float | None, Form(ge=0.1, le=10.0, description=_STROKE)] = None,
        format: Annotated[str, Form(pattern="^(png|jpeg)$", description="png or jpeg")] = "png",
        seed: Annotated[int | None, Form(ge=0, lt=2**63, description=_SEED)] = None,
    ) -> Response:
        _check_style(registry, style)
        _check_stroke(registry.entries[style], stroke)
        data = await _read_limited(image, max_bytes, max_upload_mb)
        if not data:
            raise HTTPException(400, "the uploaded file is empty")
        controls = {"strength": strength, "preserve_colors": preserve_color, "scale": scale, "stroke": stroke,
                    "seed": seed}
        try:
            result = await run_in_threadpool(limited, _run, registry, style, data, max_pixels, format, controls)
        except InstyleError as exc:
            raise HTTPException(500, f"stylization failed: {exc}") from None
        stem = Path((image.filename or "image").replace("\\", "/").rsplit("/", 1)[-1]).stem[:100] or "image"
        ext = "png" if format == "png" else "jpg"
        return Response(result, media_type=f"image/{format}",
                        headers={"Content-Disposition": content_disposition(f"{stem}-{style}.{ext}")})

    return app


def check_limits(max_upload_mb: float, max_pixels: int | None, max_concurrency: int = 2,
                 body_timeout_s: float | None = DEFAULT_BODY_TIMEOUT_S) -> None:
    """One line for a limit that would make the server refuse everything, or nothing."""
    if not (isinstance(max_upload_mb, int | float) and math.isfinite(max_upload_mb) and max_upload_mb > 0):
        raise InstyleError(f"--max-upload-mb must be a positive number, got {max_upload_mb}")
    if max_pixels is None or isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InstyleError(f"--max-pixels must be a positive whole number, got {max_pixels}")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise InstyleError(f"max_concurrency must be at least 1, got {max_concurrency}")
    if body_timeout_s is not None and not (math.isfinite(body_timeout_s) and body_timeout_s > 0):
        raise InstyleError(f"body timeout must be a positive number of seconds, got {body_timeout_s}")


def _check_style(registry: StyleRegistry, name: str) -> None:
    if name not in registry.entries:
        known = ", ".join(registry.entries) or "none"
        raise HTTPException(404, f"unknown style {name!r} (available: {known})")


def _strokes(card: Any) -> list[float] | None:
    return list(card.strokes) if card.strokes else None


def _check_stroke(entry: StyleEntry, stroke: float | None) -> None:
    """A stroke the style has no rows for is the client's mistake (422), before the upload is read."""
    if stroke is None:
        return
    if not entry.strokes:
        raise HTTPException(422, f"style {entry.name!r} has no stroke rows; use scale to resize instead")
    low, high = entry.strokes[0], entry.strokes[-1]
    if not low <= stroke <= high:
        raise HTTPException(422, f"stroke must be between {low:g} and {high:g} for {entry.name!r}, got {stroke:g}")


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

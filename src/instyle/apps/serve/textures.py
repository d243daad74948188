"""The page's Texture tab: sample a texture network (noise in, texture out) at a size and seed.

Texture networks are the shipped ones (``instyle.zoo.list_textures``) plus any given to
``create_app(textures=...)``. A sample's pixels are bounded by the server's ``max_pixels`` and by
``MAX_SAMPLE_PIXELS`` (4K UHD; inference keeps a few full-size 48-channel activations alive, about
5 GB there), checked before any memory is allocated. Sampling runs in the worker pool under the
server's concurrency slots; each network samples under its own lock, because ``sample(tile=...)``
switches the padding mode of the shared module for the duration of the call.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from instyle.apps.serve.guards import content_disposition
from instyle.core.errors import InstyleError
from instyle.data.images import tensor_to_pil
from instyle.models.modelfile import load_model, read_card
from instyle.models.registry import TEXTURE_ARCHS
from instyle.models.ulyanov import MAX_SAMPLE_PIXELS
from instyle.zoo import TEXTURE_DIR, list_textures

THUMB_SIDE = 128
MAX_SIDE = 4096


@dataclass
class TextureEntry:
    name: str
    title: str
    path: Path
    size_multiple: int


class TextureRegistry:
    """Shipped texture networks plus given ones; each loaded once (thread-safe) and sampled under its lock."""

    def __init__(self, textures: dict[str, Path] | None = None):
        self.entries: dict[str, TextureEntry] = {}
        for name, card in list_textures().items():
            self.entries[name] = self._entry(name, card.title, TEXTURE_DIR / f"{name}.safetensors", card.arch_kwargs)
        for name, path in (textures or {}).items():
            card = read_card(path)
            if card.arch not in TEXTURE_ARCHS:
                raise InstyleError(f"{path} is a {card.arch} style network, not a texture network")
            self.entries[name] = self._entry(name, card.title, Path(path), card.arch_kwargs)
        self._models: dict[str, tuple[Any, threading.Lock]] = {}
        self._thumbs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _entry(name: str, title: str, path: Path, kwargs: dict[str, int]) -> TextureEntry:
        return TextureEntry(name, title.removeprefix("texture network: "), path, 2 ** (kwargs.get("scales", 6) - 1))

    def model(self, name: str) -> tuple[Any, threading.Lock]:
        with self._lock:
            if name not in self._models:
                self._models[name] = (load_model(self.entries[name].path)[0], threading.Lock())
            return self._models[name]

    def sample_png(self, name: str, height: int, width: int, seed: int, tile: bool, fmt: str = "PNG") -> bytes:
        model, lock = self.model(name)
        with lock:
            texture = model.sample(1, height, width, seed=seed, tile=tile)
        buf = io.BytesIO()
        tensor_to_pil(texture[0]).save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
        return buf.getvalue()

    def thumbnail(self, name: str) -> bytes:
        with self._lock:
            if name in self._thumbs:
                return self._thumbs[name]
        data = self.sample_png(name, THUMB_SIDE, THUMB_SIDE, seed=0, tile=False, fmt="JPEG")
        with self._lock:
            self._thumbs[name] = data
        return data


def add_texture_routes(app: FastAPI, textures: dict[str, Path] | None, max_pixels: int,
                       limited: Callable[..., Any]) -> TextureRegistry:
    """``/api/textures`` (the list), ``…/{name}/thumbnail`` and ``…/{name}/sample`` (a PNG)."""
    registry = TextureRegistry(textures)
    limit = min(max_pixels, MAX_SAMPLE_PIXELS)

    def check(name: str) -> None:
        if name not in registry.entries:
            known = ", ".join(registry.entries) or "none"
            raise HTTPException(404, f"unknown texture {name!r} (available: {known})")

    @app.get("/api/textures", summary="Texture networks this server offers")
    async def texture_list() -> dict[str, Any]:
        return {
            "textures": [{"name": e.name, "title": e.title, "size_multiple": e.size_multiple,
                          "thumbnail": f"/api/textures/{e.name}/thumbnail"} for e in registry.entries.values()],
            "limits": {"max_pixels": limit, "max_side": MAX_SIDE},
            "message": None if registry.entries else "No texture networks in this build; train one with "
                                                     "`instyle texture train`",
        }

    @app.get("/api/textures/{name}/thumbnail", summary="A small sample of this texture (JPEG, seed 0)",
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    async def texture_thumbnail(name: str) -> Response:
        check(name)
        data = await run_in_threadpool(limited, registry.thumbnail, name)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/textures/{name}/sample", summary="Sample a texture at a size and seed (PNG)",
             response_class=Response,
             responses={200: {"content": {"image/png": {}}}, 404: {"description": "unknown texture"},
                        413: {"description": "over the pixel limit"},
                        422: {"description": "bad size, seed, or a tileable size that is not a multiple"}})
    async def texture_sample(
        name: str,
        width: Annotated[int, Query(ge=1, le=MAX_SIDE, description="pixels")] = 512,
        height: Annotated[int, Query(ge=1, le=MAX_SIDE, description="pixels")] = 512,
        seed: Annotated[int, Query(ge=0, lt=2**63, description="the same seed gives the same texture")] = 0,
        tile: Annotated[bool, Query(description="wrap seamlessly (sides must be multiples of size_multiple)")] = False,
    ) -> Response:
        check(name)
        if width * height > limit:
            raise HTTPException(413, f"a {width}x{height} texture is over the server's limit of {limit} pixels")
        multiple = registry.entries[name].size_multiple
        if tile and (width % multiple or height % multiple or min(width, height) < 2 * multiple):
            raise HTTPException(422, f"a tileable texture needs sides that are multiples of {multiple} "
                                     f"and at least {2 * multiple} px, got {width}x{height}")
        try:
            data = await run_in_threadpool(limited, registry.sample_png, name, height, width, seed, tile)
        except InstyleError as exc:
            raise HTTPException(422, str(exc)) from None
        filename = f"{name}-seed{seed}-{width}x{height}{'-tile' if tile else ''}.png"
        return Response(data, media_type="image/png", headers={"Content-Disposition": content_disposition(filename)})

    return registry

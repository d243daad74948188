"""Stylizing images and folders with a trained generator.

``Stylizer`` is the Python API; ``stylize_paths`` is what the CLI runs: each bad input gets one
line and is skipped, outputs are written atomically and never onto an input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from instyle.core.errors import InstyleError
from instyle.core.hardware import pick_device
from instyle.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    SAVE_FORMATS,
    ImageError,
    ensure_not_input,
    list_images,
    load_image,
    pil_to_tensor,
    save_image,
    split_alpha,
    tensor_to_pil,
)
from instyle.inference.backends import BACKENDS, Runner, build_runner
from instyle.inference.controls import blend, check_scale, preserve_color, resize, scaled_size
from instyle.inference.tiling import AUTO_TILE_PIXELS, DEFAULT_OVERLAP, DEFAULT_TILE, stylize_tiled
from instyle.models.clamped import ClampedGenerator
from instyle.models.modelfile import card_defaults, load_model
from instyle.zoo import resolve_model


class Stylizer:
    """A loaded style: call it on a PIL image, or use ``.module`` as a plain ``nn.Module``."""

    def __init__(self, generator: nn.Module, card: dict[str, Any] | None = None, device: str = "auto",
                 backend: str = "auto", tile: int | None = None):
        """``backend``: see ``instyle.inference.backends`` (``auto`` picks the fastest path validated on this model).
        ``tile``: tile side for large images (``None``: only above ``AUTO_TILE_PIXELS``; 0: never)."""
        if backend not in BACKENDS:
            raise InstyleError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if tile is not None and tile != 0 and tile <= 2 * DEFAULT_OVERLAP:
            raise InstyleError(f"tile must be 0 (off) or larger than {2 * DEFAULT_OVERLAP}, got {tile}")
        self.device = pick_device(device)
        self.card = card or {}
        self.module = ClampedGenerator(generator).to(self.device).eval()
        self.backend = backend
        self.tile = tile
        self._runner: Runner | None = None

    @classmethod
    def load(cls, name_or_path: str | Path, device: str = "auto", backend: str = "auto",
             tile: int | None = None) -> Stylizer:
        generator, card = load_model(resolve_model(name_or_path))
        return cls(generator, card, device=device, backend=backend, tile=tile)

    @property
    def runner(self) -> Runner:
        """The inference path, built on first use (``auto`` validates candidates on this model)."""
        if self._runner is None:
            self._runner = build_runner(self.module, self.backend, self.device, label=self.name)
        return self._runner

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """The network on (N, 3, H, W), whole or in tiles when the image is too large."""
        h, w = x.shape[-2:]
        tile = self.tile if self.tile is not None else (DEFAULT_TILE if h * w > AUTO_TILE_PIXELS else 0)
        if tile and max(h, w) > tile:
            eager = self.runner.eager_runner  # tiles need norm layers that accept injected statistics
            return stylize_tiled(eager, eager.module, x, tile=tile)
        return self.runner(x)

    @property
    def name(self) -> str:
        return str(self.card.get("name") or self.card.get("style", {}).get("title") or "style")

    @property
    def defaults(self) -> dict[str, float]:
        """The strength and stroke scale the style's card recommends (tuned by eye for the zoo)."""
        return card_defaults(self.card)

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, *, strength: float | None = None, preserve_colors: bool = False,
                       scale: float | None = None) -> torch.Tensor:
        """(N, 3, H, W) or (3, H, W) in [0, 1] -> the same shape, on the input's device.

        ``strength`` blends with the photo, ``preserve_colors`` keeps the photo's chroma, ``scale``
        > 1 makes brush strokes larger by stylizing a smaller copy and resizing back. ``None``: the
        value in the model card's ``defaults`` (1.0 where it has none).
        """
        strength = self.defaults["strength"] if strength is None else strength
        scale = self.defaults["scale"] if scale is None else scale
        check_scale(scale)
        single = x.dim() == 3
        photo = (x.unsqueeze(0) if single else x).to(self.device, torch.float32)
        h, w = photo.shape[-2:]
        small = resize(photo, scaled_size(h, w, scale)) if scale != 1.0 else photo
        y = resize(self._run(small), (h, w))
        if preserve_colors:
            y = preserve_color(y, photo)
        if strength != 1.0:
            y = blend(y, photo, strength)
        y = y.to(x.device)
        return y[0] if single else y

    def __call__(self, image: Image.Image, **controls: Any) -> Image.Image:
        """Same size out as in; an alpha channel is carried over untouched. See ``stylize_tensor``."""
        rgb, alpha = split_alpha(image)
        out = tensor_to_pil(self.stylize_tensor(pil_to_tensor(rgb), **controls))
        if alpha is not None:
            out.putalpha(alpha)
        return out


@dataclass
class StylizeReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def plan_outputs(inputs: Sequence[str | Path], output: str | Path, suffix: str | None = None
                 ) -> list[tuple[Path, Path]]:
    """Pair each input image with its output path.

    One input file and an output with an image extension: that file. Otherwise ``output`` is a
    folder; files keep their names (folders keep their layout), with ``suffix`` if given.
    """
    out = Path(output)
    pairs: list[tuple[Path, Path]] = []
    single_file = len(inputs) == 1 and not Path(inputs[0]).is_dir() and out.suffix.lower() in IMAGE_EXTENSIONS
    if single_file:
        return [(Path(inputs[0]), out)]
    if out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir():
        raise InstyleError(f"{out}: several inputs need an output folder, not a file name")
    for item in inputs:
        src = Path(item)
        if src.is_dir():
            for f in list_images([src]):
                rel = f.relative_to(src)
                pairs.append((f, (out / rel).with_suffix(suffix or f.suffix)))
        else:
            pairs.append((src, out / (src.stem + (suffix or src.suffix))))
    # inputs in formats we read but don't write (GIF, PPM…) come out as PNG
    return [(s, d if d.suffix.lower() in SAVE_FORMATS else d.with_suffix(".png")) for s, d in pairs]


def stylize_paths(stylizer: Stylizer, inputs: Sequence[str | Path], output: str | Path, *,
                  suffix: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  progress: bool = True, warn: Any = None, **controls: Any) -> StylizeReport:
    """Stylize files and folders; failures are collected (and reported via ``warn``), never fatal."""
    pairs = plan_outputs(inputs, output, suffix)
    all_inputs: Iterable[Path] = [src for src, _ in pairs]
    report = StylizeReport()
    for src, dst in tqdm(pairs, disable=not progress or len(pairs) < 2, unit="img"):
        try:
            ensure_not_input(dst, all_inputs)
            loaded = load_image(src, max_pixels=max_pixels)
            result = stylizer(loaded.rgb, **controls)
            save_image(result, dst, alpha=loaded.alpha)
            report.written.append(dst)
        except (ImageError, InstyleError) as exc:
            report.failed.append((src, str(exc)))
            if warn:
                warn(str(exc))
    return report

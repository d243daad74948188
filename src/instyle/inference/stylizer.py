"""Stylizing images and folders with a trained generator.

``Stylizer`` is the Python API; ``stylize_paths`` is what the CLI runs: each bad input gets one
line and is skipped, outputs are written atomically and never onto an input. The whole plan is
checked before any work starts: two inputs that would write the same output, or an output that is
an input, stop the run with one line instead of silently losing a result halfway through.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from instyle.core.errors import InstyleError
from instyle.core.files import check_output_path
from instyle.core.hardware import pick_device
from instyle.data.images import (
    DEFAULT_MAX_PIXELS,
    RGB_PROFILE_MODES,
    ImageError,
    load_image,
    pil_to_tensor,
    save_image,
    split_alpha,
    tensor_to_pil,
)
from instyle.inference.backends import BACKENDS, Runner, build_runner
from instyle.inference.controls import blend, check_scale, preserve_color, resize, scaled_size
from instyle.inference.outputs import plan_outputs
from instyle.inference.tiling import AUTO_TILE_PIXELS, DEFAULT_OVERLAP, DEFAULT_TILE, stylize_tiled
from instyle.models.card import Defaults, ModelCard
from instyle.models.clamped import ClampedGenerator
from instyle.models.layers import with_noise
from instyle.models.modelfile import at_stroke, check_stroke, load_model
from instyle.models.registry import noise_channels
from instyle.zoo import resolve_model

STROKE_CACHE = 8  # stroke values whose networks a Stylizer keeps built
_NO_AOT = {"aot-fp32": "eager", "aot-bf16": "bf16", "aot-fp16": "fp16"}  # per-stroke paths: no minute-long build


class Stylizer:
    """A loaded style: call it on a PIL image, or use ``.module`` as a plain ``nn.Module``."""

    def __init__(self, generator: nn.Module, card: ModelCard | None = None, device: str = "auto",
                 backend: str = "auto", tile: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        """``backend``: see ``instyle.inference.backends`` (``auto`` picks the fastest path validated on this model).
        ``tile``: tile side for large images (``None``: only above ``AUTO_TILE_PIXELS``; 0: never).
        ``max_pixels``: the most pixels the network may be asked to stylize *after* the stroke
        scale is applied (``scale`` 0.1 multiplies them by 100); ``None``: no limit."""
        if backend not in BACKENDS:
            raise InstyleError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if tile is not None and tile != 0 and tile <= 2 * DEFAULT_OVERLAP:
            raise InstyleError(f"tile must be 0 (off) or larger than {2 * DEFAULT_OVERLAP}, got {tile}")
        self.device = pick_device(device)
        self.card = card
        # A stroke-row model (one style, several stroke sizes as norm rows) is kept whole; what runs
        # is a plain single-style network per stroke, materialised once per value (``runner_at``).
        self.rows: nn.Module | None = generator.to(self.device).eval() if card is not None and card.has_rows \
            else None
        if self.rows is not None and card is not None:
            generator = at_stroke(self.rows, card, card.defaults.stroke)
        self.module = ClampedGenerator(generator).to(self.device).eval()
        self.backend = backend
        self.tile = tile
        self.max_pixels = max_pixels
        self._runner: Runner | None = None
        self._strokes: OrderedDict[float, Runner] = OrderedDict()  # stroke -> runner, least recent first
        self._strokes_lock = threading.Lock()

    @classmethod
    def load(cls, name_or_path: str | Path, device: str = "auto", backend: str = "auto",
             tile: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Stylizer:
        generator, card = load_model(resolve_model(name_or_path))
        return cls(generator, card, device=device, backend=backend, tile=tile, max_pixels=max_pixels)

    @property
    def runner(self) -> Runner:
        """The inference path, built on first use (``auto`` validates candidates on this model)."""
        if self._runner is None:
            self._runner = build_runner(self.module, self.backend, self.device, label=self.name)
        return self._runner

    @property
    def noise_channels(self) -> int:
        """Noise channels the model takes beside the photo (a diversity model g(x, z)); 0: ``seed`` is ignored."""
        return noise_channels(self.module)

    @property
    def strokes(self) -> tuple[float, ...] | None:
        """The stroke sizes the model has rows for (``stroke=`` reaches anything between), else None."""
        return self.card.strokes if self.card is not None else None

    def runner_at(self, stroke: float | None) -> Runner:
        """The runner for a stroke size: the default stroke's is ``runner``; any other value gets a
        plain network with the rows' affine interpolated for it, built once and kept (the last
        ``STROKE_CACHE`` values). Its backend is the one ``runner`` uses (``auto``'s validated pick
        applies: only norm scales and shifts differ), except that ahead-of-time compiled packages,
        a minute each to build, give way to the same precision's eager path."""
        if stroke is None or self.rows is None or self.card is None or stroke == self.defaults.stroke:
            if stroke is not None and self.card is not None:
                check_stroke(self.card, stroke)
            return self.runner
        check_stroke(self.card, stroke)
        key = float(f"{stroke:.4g}")  # a slider's float noise does not build another network
        with self._strokes_lock:
            if key in self._strokes:
                self._strokes.move_to_end(key)
                return self._strokes[key]
            module = ClampedGenerator(at_stroke(self.rows, self.card, key)).to(self.device).eval()
            backend = _NO_AOT.get(self.runner.backend, self.runner.backend)
            runner = build_runner(module, backend, self.device, label=f"{self.name} at stroke {key:g}")
            self._strokes[key] = runner
            while len(self._strokes) > STROKE_CACHE:
                self._strokes.popitem(last=False)
            return runner

    def _run(self, x: torch.Tensor, seed: int | None = None, runner: Runner | None = None) -> torch.Tensor:
        """The network on (N, 3, H, W), whole or in tiles when the image is too large.

        A noise model gets one U(0, 1) noise field drawn from ``seed`` (None: 0) at the size the
        network runs at, the same for every image of the batch: a photo comes out the same for a
        seed however it is batched (video frames included), and tiles cut the one field."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
            raise InstyleError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        if self.noise_channels:
            field = with_noise(x[:1, :0], 0, self.noise_channels, torch.Generator().manual_seed(seed or 0))
            x = torch.cat([x, field.expand(len(x), -1, -1, -1)], dim=1)
        runner = runner or self.runner
        h, w = x.shape[-2:]
        tile = self.tile if self.tile is not None else (DEFAULT_TILE if h * w > AUTO_TILE_PIXELS else 0)
        if tile and max(h, w) > tile:
            eager = runner.eager_runner  # tiles need norm layers that accept injected statistics
            return stylize_tiled(eager, eager.module, x, tile=tile)
        return runner(x)

    @property
    def name(self) -> str:
        """The zoo name where there is one, else the card's display title."""
        return (self.card.name or self.card.title) if self.card else "style"

    @property
    def title(self) -> str:
        return self.card.title if self.card else "style"

    @property
    def defaults(self) -> Defaults:
        """The strength and stroke scale the style's card recommends (tuned by eye for the zoo)."""
        return self.card.defaults if self.card else Defaults()

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, *, strength: float | None = None, preserve_colors: bool = False,
                       scale: float | None = None, stroke: float | None = None,
                       max_pixels: int | EllipsisType | None = ..., seed: int | None = None) -> torch.Tensor:
        """(N, 3, H, W) or (3, H, W) in [0, 1] -> the same shape, on the input's device.

        ``strength`` blends with the photo, ``preserve_colors`` keeps the photo's chroma, ``scale``
        > 1 makes brush strokes larger by stylizing a smaller copy and resizing back. ``None``: the
        value in the model card's ``defaults`` (1.0 where it has none). ``stroke`` (models with
        stroke rows only, within their range) sets the stroke size at full resolution: the rows'
        scale and shift, interpolated in log(stroke); ``None``: the card's default. ``max_pixels`` overrides
        the Stylizer's bound on the pixels the network sees (``...``: keep it); a larger job
        raises ``ImageError`` before any memory is allocated for it. ``seed`` picks the noise of a
        diversity model (``noise_channels`` > 0): other seeds, other equally styled results; the
        same seed, the same pixels (None: seed 0). Models without noise channels ignore it.
        """
        strength = self.defaults.strength if strength is None else strength
        scale = self.defaults.scale if scale is None else scale
        check_scale(scale)
        single = x.dim() == 3
        h, w = x.shape[-2:]
        size = scaled_size(h, w, scale) if scale != 1.0 else (h, w)
        check_scaled_pixels((h, w), size, scale, self.max_pixels if max_pixels is ... else max_pixels)
        photo = (x.unsqueeze(0) if single else x).to(self.device, torch.float32)
        small = resize(photo, size) if scale != 1.0 else photo
        y = resize(self._run(small, seed, self.runner_at(stroke)), (h, w))
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
        if image.info.get("icc_profile") and image.mode in RGB_PROFILE_MODES:
            out.info["icc_profile"] = image.info["icc_profile"]  # Pillow's PNG/JPEG/WebP/TIFF writers embed it
        return out


def check_scaled_pixels(size: tuple[int, int], scaled: tuple[int, int], scale: float, max_pixels: int | None) -> None:
    """Refuse a job whose *scaled* size is over ``max_pixels``: the bound that matters is what the
    network computes on, and a small stroke scale multiplies it (0.1 turns 4 MP into 400 MP)."""
    if max_pixels is None or scaled[0] * scaled[1] <= max_pixels:
        return
    (h, w), (sh, sw) = size, scaled
    raise ImageError(
        f"{w}x{h} at scale {scale:g} means stylizing {sw}x{sh} pixels, over the pixel limit of {max_pixels}; "
        "use a larger scale, or raise it with --max-pixels"
    )


@dataclass
class StylizeReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def stylize_paths(stylizer: Stylizer, inputs: Sequence[str | Path], output: str | Path, *,
                  suffix: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  progress: bool = True, warn: Any = None, **controls: Any) -> StylizeReport:
    """Stylize files and folders; a bad plan raises before any work, a bad image is collected (and
    reported via ``warn``) and skipped. ``max_pixels`` bounds the decoded image and, after the
    stroke scale, what the network sees. ``report.written`` lists each file written, once."""
    pairs = plan_outputs(inputs, output, suffix)
    for dst in {d.parent: d for _, d in pairs if not d.is_dir()}.values():  # one output per folder
        check_output_path(dst)  # an unwritable output folder is one line before any work, not one per image
    report = StylizeReport()
    for src, dst in tqdm(pairs, disable=not progress or len(pairs) < 2, unit="img"):
        try:
            loaded = load_image(src, max_pixels=max_pixels)
            try:
                result = stylizer(loaded.rgb, max_pixels=max_pixels, **controls)
            except ImageError as exc:
                raise ImageError(f"{src}: {exc}") from None
            save_image(result, dst, alpha=loaded.alpha, icc_profile=loaded.icc_profile)
            report.written.append(dst)
        except (ImageError, InstyleError) as exc:
            report.failed.append((src, str(exc)))
            if warn:
                warn(str(exc))
    return report

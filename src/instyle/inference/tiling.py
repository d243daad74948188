"""Tiled stylization for images too large to stylize in one piece.

Two things make naive tiling visible, and each has its fix here:

* **Seams**: a tile's border pixels see reflection padding instead of their real neighbours.
  Tiles overlap by ``overlap`` pixels and are blended with linear ramps across the overlap, so
  every output pixel near a cut is mostly taken from the tile where it lies well inside.
* **Tone**: instance norm normalises each tile with that tile's own statistics, so a sky tile and
  a forest tile come out in different tones. ``collect_norm_stats`` runs the network once on a
  copy of the whole image (downscaled to ``stats_side`` when larger) and records every norm
  layer's per-channel mean and variance; ``fixed_norm_stats`` injects them while the tiles run.

Memory is the input, the output and a one-channel weight map at full size (about 1 GiB at
8000×8000 fp32) plus one tile's activations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instyle.models.norms import Norm2d

# Above this many pixels ``Stylizer`` tiles by default: a 4K frame (8.3 MP) still runs whole; the
# Johnson net's fp32 activations at that size already take a few GiB.
AUTO_TILE_PIXELS = 3840 * 2160
DEFAULT_TILE = 1024
DEFAULT_OVERLAP = 64
DEFAULT_STATS_SIDE = 1024

NormStats = dict[Norm2d, tuple[Tensor, Tensor]]


def _uses_input_stats(m: nn.Module) -> bool:
    return isinstance(m, Norm2d) and (m.train_stats if m.training else m.eval_stats) != "running"


@torch.inference_mode()
def collect_norm_stats(run: Callable[[Tensor], Tensor], module: nn.Module, x: Tensor) -> NormStats:
    """Per-image (N, C) mean and biased variance at every norm layer of ``module`` while ``run(x)``.

    ``run`` must execute ``module`` eagerly (hooks are forward pre-hooks on its Norm2d layers).
    """
    stats: NormStats = {}

    def hook(m: nn.Module, args: tuple[Tensor, ...]) -> None:
        h = args[0].float()
        if m.eval_stats == "batch":
            var, mean = torch.var_mean(h, dim=(0, 2, 3), correction=0)
            stats[m] = (mean[None], var[None])  # type: ignore[index]
        else:
            var, mean = torch.var_mean(h, dim=(2, 3), correction=0)
            stats[m] = (mean, var)  # type: ignore[index]

    handles = [m.register_forward_pre_hook(hook) for m in module.modules() if _uses_input_stats(m)]
    try:
        run(x)
    finally:
        for h in handles:
            h.remove()
    return stats


@contextlib.contextmanager
def fixed_norm_stats(stats: NormStats) -> Iterator[None]:
    """Norm layers use the given statistics instead of their input's while the block runs."""
    saved = {m: m.fixed_stats for m in stats}
    try:
        for m, s in stats.items():
            m.fixed_stats = s
        yield
    finally:
        for m, old in saved.items():
            m.fixed_stats = old


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: stride ``tile - overlap``, the last tile flush with the end."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _ramp(length: int, start: int, stop: int, overlap: int, total: int) -> Tensor:
    """1-D blend weights of a tile covering [start, stop): rising over ``overlap`` at each inner edge."""
    w = torch.ones(length)
    n = min(overlap, length // 2)
    if n > 0:
        ramp = (torch.arange(n, dtype=torch.float32) + 0.5) / n
        if start > 0:
            w[:n] = ramp
        if stop < total:
            w[-n:] = torch.minimum(w[-n:], ramp.flip(0))
    return w


@torch.inference_mode()
def stylize_tiled(run: Callable[[Tensor], Tensor], module: nn.Module, x: Tensor, *, tile: int = DEFAULT_TILE,
                  overlap: int = DEFAULT_OVERLAP, stats_side: int | None = DEFAULT_STATS_SIDE) -> Tensor:
    """Stylize (N, 3, H, W) ``x`` tile by tile; ``run`` must execute ``module`` eagerly.

    ``stats_side``: long side of the copy the norm statistics come from (``None``: each tile uses
    its own statistics, which shows as tone jumps between tiles). When the image is no larger,
    the statistics are those of the untiled run exactly, and only the tile borders differ.
    """
    if overlap < 0 or tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must be larger than twice the overlap ({overlap})")
    n, _, h, w = x.shape
    stats: NormStats = {}
    if stats_side is not None:
        scale = min(1.0, stats_side / max(h, w))
        small = x if scale == 1.0 else F.interpolate(
            x, size=(max(8, round(h * scale)), max(8, round(w * scale))), mode="area")
        stats = collect_norm_stats(run, module, small)
    out = torch.zeros(n, 3, h, w, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=x.device)
    with fixed_norm_stats(stats):
        for y0 in tile_starts(h, tile, overlap):
            y1 = min(h, y0 + tile)
            wy = _ramp(y1 - y0, y0, y1, overlap, h).to(x.device)
            for x0 in tile_starts(w, tile, overlap):
                x1 = min(w, x0 + tile)
                wx = _ramp(x1 - x0, x0, x1, overlap, w).to(x.device)
                mask = wy[:, None] * wx[None, :]
                y = run(x[:, :, y0:y1, x0:x1]).to(x.device, torch.float32)
                out[:, :, y0:y1, x0:x1].addcmul_(y, mask)
                weight[:, :, y0:y1, x0:x1].add_(mask)
    return out.div_(weight)

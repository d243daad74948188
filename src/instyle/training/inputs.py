"""What a run trains on: the style images at their stroke scale and the fixed photo split."""

from __future__ import annotations

from pathlib import Path

import torch

from instyle.core.errors import InstyleError
from instyle.data.datasets import split_holdout
from instyle.data.demo_photos import DEMO_SOURCES
from instyle.data.images import list_images, load_image, pil_to_tensor
from instyle.training.config import TrainConfig


def load_style_tensor(path: str | Path, long_side: int) -> torch.Tensor:
    img = load_image(path).rgb
    scale = long_side / max(img.size)
    if scale != 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), 3)
    return pil_to_tensor(img).unsqueeze(0)


def style_targets(cfg: TrainConfig) -> list[tuple[str, int]]:
    """(style image, long side) of each norm row: each style at ``style_size``, or the one style at
    ``style_size`` × each stroke (stroke 2: the painting twice as large, so its strokes cover twice
    as many photo pixels)."""
    if cfg.strokes:
        return [(cfg.style_files()[0], max(32, round(cfg.style_size * s))) for s in cfg.strokes]
    return [(f, cfg.style_size) for f in cfg.style_files()]


def content_split(cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    """(training photos, held-out photos) of a run: the demo photos never train, the split is fixed."""
    files = [f for f in list_images([cfg.content]) if f.name not in DEMO_SOURCES]
    if not files:
        raise InstyleError(f"{cfg.content}: no images found (run `instyle data fetch` for a training set)")
    n_hold = cfg.holdout if len(files) >= 5 * cfg.holdout else 0
    return split_holdout(files, n_hold, seed=0) if n_hold else (files, [])


def split_paths(cfg: TrainConfig) -> list[Path]:
    """Where a joint run writes each style's own model: ``<output folder>/<style file stem>.safetensors``."""
    out = Path(cfg.output)
    paths = [out.parent / f"{Path(f).stem}.safetensors" for f in cfg.style_files()]
    if len(set(paths)) != len(paths) or out in paths:
        raise InstyleError("jointly trained style files need distinct names, different from the output's")
    return paths


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of training step ``step``'s noise: a pure function of (seed, step, rank), so
    a resumed run draws exactly the noise an uninterrupted one would (textures and diversity models)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step + rank * 7_919_000_017) % (2**63 - 1))


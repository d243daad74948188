"""Score trained models side by side: the same held-out photos, the same objective.

A model card's held-out curve is measured on that run's own held-out photos, with that run's
settings, so two cards' numbers are not comparable (other photos, another machine's precision).
``score_models`` puts several models through one fixed test instead: the first model's loss
(layers, weights, style image at its training size) on photos none of them trained on, in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from instyle.core.errors import InstyleError
from instyle.core.files import sha256_file
from instyle.data.fetch import default_data_dir
from instyle.losses.perceptual import LossConfig, PerceptualLoss, get_preset
from instyle.models.card import ModelCard
from instyle.models.modelfile import load_model, plain_generator, read_card
from instyle.training.config import TrainConfig
from instyle.training.holdout import MAIN_TERMS, center_crops, loss_terms, run_model
from instyle.training.inputs import content_split, load_style_tensor
from instyle.training.recipe import fetched_style
from instyle.zoo import resolve_model


def default_photos(card: ModelCard) -> list[Path]:
    """The held-out photos of the run that made ``card``: its content folder where that exists here,
    else this machine's fetched training set (a shipped card names its trainer's paths)."""
    train = card.train or {}
    content = Path(train.get("content", ""))
    if not content.is_dir():
        content = default_data_dir() / "content"
    cfg = TrainConfig(style="unused", content=str(content), output="unused.safetensors",
                      holdout=train.get("holdout", 8))
    held = content_split(cfg)[1]
    if not held:
        raise InstyleError("that run held out no photos; pass --photos")
    return held


def style_file(card: ModelCard) -> Path:
    """The style image of a single-style model (a model split off a joint run names its own)."""
    entry = card.styles[0]
    if card.n_styles != 1 or not entry.get("file"):
        raise InstyleError("the first model is not a single-style model; pass --style")
    trained = (card.train or {}).get("style")
    if isinstance(trained, str) and Path(trained).is_file() and Path(trained).name == entry["file"] \
            and (not entry.get("sha256") or sha256_file(trained) == entry["sha256"]):
        return Path(trained)  # the image it trained on, where it still is on this machine
    try:
        return fetched_style(entry)
    except InstyleError as exc:
        raise InstyleError(f"{exc}; or pass --style IMAGE") from None


def score_models(models: Sequence[str | Path], photos: Sequence[Path] | None = None, size: int = 256,
                 style: Path | None = None, device: str = "cpu", loss: str | None = None) -> list[dict[str, Any]]:
    """One row per model: its mean loss terms on ``photos`` (centre crops at ``size``) under the first
    model's objective, with what its card says about how it was trained. ``loss`` pins a fixed preset's
    layers and layer weights instead (``johnson`` for a ``johnson-balanced`` model, whose card holds
    its own run's layer weights), so old and new models can be compared on the old objective."""
    paths = [resolve_model(m) for m in models]
    ref = read_card(paths[0])
    if "loss" not in ref.data or not ref.train:
        raise InstyleError(f"{paths[0]}: the card has no loss or training record to score against")
    photo_files = list(photos) if photos else default_photos(ref)
    vgg = ref.train.get("vgg_weights", "imagenet")  # the loss network the first model trained against
    objective = get_preset(loss) if loss else LossConfig.from_dict(ref.data["loss"])
    if loss:  # the preset's layers and layer weights; the first card's overall weights (its tv, say)
        for key in ("content_weight", "style_weight", "tv_weight"):
            setattr(objective, key, float(ref.data["loss"].get(key, getattr(objective, key))))
    criterion = PerceptualLoss(objective, weights=vgg).to(device)
    criterion.set_style(load_style_tensor(style or style_file(ref), ref.train.get("style_size", 256)).to(device))
    crops = center_crops(photo_files, size)
    rows = []
    for path in paths:
        model, card = load_model(path, device)
        model = plain_generator(model, card)  # a stroke-row model at its default stroke
        with torch.no_grad():
            terms = loss_terms(criterion, run_model(model, crops), crops)
        rows.append({"model": str(path), "steps": card.steps or None, "wall_time_s": card.wall_time_s or None,
                     "machine": card.data.get("machine"), "photos": len(photo_files), "size": size,
                     **{k: round(terms[k], 4) for k in MAIN_TERMS}})
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| model | steps | training time | trained on | total | content | style | tv |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        minutes = f"{r['wall_time_s'] / 60:.1f} min" if r.get("wall_time_s") else "?"
        lines.append(f"| {Path(r['model']).name} | {r['steps'] or '?'} | {minutes} | {r['machine'] or '?'} | "
                     + " | ".join(f"{r[k]:.3f}" for k in MAIN_TERMS) + " |")
    return "\n".join(lines) + "\n"

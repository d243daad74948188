"""Turning a trained model into a shipped style: fp16 weights plus a card that says what users need.

The shipped card keeps everything the training card had (config, held-out curve, wall time,
machine) and adds the zoo's own fields: ``name``, a one-line ``description``, the ``defaults``
tuned by eye (style strength, stroke scale) and the ``command`` that retrains it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from instyle.core.errors import InstyleError
from instyle.models.modelfile import load_model, save_model
from instyle.training.recipe import train_command
from instyle.zoo import TEXTURE_DIR, ZOO_DIR


def ship(model_path: str | Path, name: str, description: str, *, strength: float = 1.0, scale: float = 1.0,
         stroke: float = 1.0, dest: str | Path = ZOO_DIR, notes: str = "") -> Path:
    """Write ``dest/NAME.safetensors`` (fp16) + ``NAME.json`` from a trained model file."""
    _, card = load_model(model_path)
    defaults = {"strength": strength, "scale": scale, **({"stroke": stroke} if card.has_rows else {})}
    return _ship(model_path, name, {"description": description, "defaults": defaults,
                                    "command": train_command(card),
                                    "retrain": f"instyle retrain {name} -o runs/retrain-{name}"}, dest, notes)


def ship_texture(model_path: str | Path, name: str, description: str, command: str, *,
                 dest: str | Path = TEXTURE_DIR, notes: str = "") -> Path:
    """Write a texture network into the zoo's ``textures/`` (fp16), with the command that trained it."""
    return _ship(model_path, name, {"description": description, "command": command}, dest, notes)


def _ship(model_path: str | Path, name: str, fields: dict[str, Any], dest: str | Path, notes: str) -> Path:
    if not name.replace("-", "").isalnum() or name != name.lower():
        raise InstyleError(f"zoo names are lowercase letters, digits and dashes, got {name!r}")
    model, card = load_model(model_path)
    shipped = {k: v for k, v in card.data.items() if k != "format"}
    shipped.update(name=name, **fields)
    if notes:
        shipped["notes"] = notes
    out = Path(dest) / f"{name}.safetensors"
    save_model(model, shipped, out, dtype=torch.float16)
    return out

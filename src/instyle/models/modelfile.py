"""Model files: safetensors weights + a JSON model card, never pickles.

The card travels twice: inside the safetensors header (so a lone file is self-describing) and as
``NAME.json`` beside it (so humans and the zoo index can read it without torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_path, atomic_write_text
from instyle.models import create_model

CARD_FORMAT = "instyle-model/1"


def card_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_model(model: nn.Module, card: dict[str, Any], path: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write weights (optionally cast, e.g. fp16 for the zoo) and the card, each atomically."""
    card = {"format": CARD_FORMAT, **card}
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"instyle_card": json.dumps(card)})
    atomic_write_text(card_path(path), json.dumps(card, indent=2) + "\n")


def read_card(path: str | Path) -> dict[str, Any]:
    """The card from the safetensors header (the JSON file may be missing or edited)."""
    path = Path(path)
    if not path.is_file():
        raise InstyleError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for garbage input
        raise InstyleError(f"{path}: not a safetensors model file ({exc})") from None
    if "instyle_card" not in meta:
        raise InstyleError(f"{path}: safetensors file without an instyle model card")
    card = json.loads(meta["instyle_card"])
    if card.get("format") != CARD_FORMAT:
        raise InstyleError(f"{path}: unsupported model format {card.get('format')!r}")
    return card


def card_defaults(card: dict[str, Any]) -> dict[str, float]:
    """The controls a card recommends (``strength``, ``scale``); 1.0 where it says nothing."""
    d = card.get("defaults") or {}
    return {"strength": float(d.get("strength", 1.0)), "scale": float(d.get("scale", 1.0))}


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the generator named in the card and load its weights as float32, in eval mode."""
    card = read_card(path)
    model = create_model(card["arch"], norm=card["norm"], **card.get("arch_kwargs", {}))
    load_weights(model, path, f"{path}: weights do not match {card['arch']}/{card['norm']}")
    return model.to(device).eval(), card


def load_weights(model: nn.Module, path: str | Path, mismatch: str) -> None:
    """Load a model file's weights (as float32) into ``model``; ``mismatch: <first error line>`` if they
    do not fit its layers."""
    from safetensors.torch import load_file

    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InstyleError(f"{mismatch}: {str(exc).splitlines()[0]}") from None

"""Shipped pretrained styles: ``NAME.safetensors`` + ``NAME.json`` in this folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instyle.core.errors import InstyleError

ZOO_DIR = Path(__file__).resolve().parent


def list_styles() -> dict[str, dict[str, Any]]:
    """Name -> model card, for every shipped style."""
    out = {}
    for card in sorted(ZOO_DIR.glob("*.json")):
        if card.with_suffix(".safetensors").is_file():
            out[card.stem] = json.loads(card.read_text())
    return out


def resolve_model(name_or_path: str | Path) -> Path:
    """A path to a model file, or the name of a shipped style."""
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise InstyleError(f"{path}: no such model file")
        return path
    shipped = ZOO_DIR / f"{name_or_path}.safetensors"
    if shipped.is_file():
        return shipped
    names = ", ".join(list_styles()) or "none shipped yet; train one with `instyle train`"
    raise InstyleError(f"unknown style {str(name_or_path)!r} (available: {names})")

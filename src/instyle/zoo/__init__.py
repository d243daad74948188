"""Shipped pretrained styles: ``NAME.safetensors`` + ``NAME.json`` in this folder."""

from __future__ import annotations

from pathlib import Path

from instyle.core.errors import InstyleError
from instyle.models.card import ModelCard

ZOO_DIR = Path(__file__).resolve().parent


def list_styles() -> dict[str, ModelCard]:
    """Name -> model card (the JSON beside each weights file, checked), for every shipped style."""
    out = {}
    for card in sorted(ZOO_DIR.glob("*.json")):
        if card.with_suffix(".safetensors").is_file():
            out[card.stem] = ModelCard.from_json(card.read_text(), str(card))
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

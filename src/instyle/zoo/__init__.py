"""Shipped pretrained styles: ``NAME.safetensors`` + ``NAME.json`` in this folder; shipped texture
networks (noise in, texture out: ``instyle texture``) the same way in ``textures/``, kept apart so
that nothing that stylizes every shipped style (``make demo``, the gallery, the page) meets one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from instyle.core.errors import InstyleError
from instyle.models.card import ModelCard

ZOO_DIR = Path(__file__).resolve().parent
TEXTURE_DIR = ZOO_DIR / "textures"


def _cards(folder: Path) -> dict[str, ModelCard]:
    out = {}
    for card in sorted(folder.glob("*.json")):
        if card.with_suffix(".safetensors").is_file():
            out[card.stem] = ModelCard.from_json(card.read_text(), str(card))
    return out


def list_styles() -> dict[str, ModelCard]:
    """Name -> model card (the JSON beside each weights file, checked), for every shipped style."""
    return _cards(ZOO_DIR)


def list_textures() -> dict[str, ModelCard]:
    """Name -> model card of every shipped texture network."""
    return _cards(TEXTURE_DIR)


def _resolve(name_or_path: str | Path, folder: Path, kind: str, names: Callable[[], dict[str, ModelCard]],
             hint: str) -> Path:
    """A model file path as given, or a shipped model's file by name; else one line listing the names."""
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise InstyleError(f"{path}: no such model file")
        return path
    shipped = folder / f"{name_or_path}.safetensors"
    if shipped.is_file():
        return shipped
    raise InstyleError(f"unknown {kind} {str(name_or_path)!r} (available: {', '.join(names()) or hint})")


def resolve_texture(name_or_path: str | Path) -> Path:
    """A path to a texture model file, or the name of a shipped texture network."""
    return _resolve(name_or_path, TEXTURE_DIR, "texture", list_textures,
                    "none shipped yet; train one with `instyle texture train`")


def resolve_model(name_or_path: str | Path) -> Path:
    """A path to a model file, or the name of a shipped style."""
    return _resolve(name_or_path, ZOO_DIR, "style", list_styles,
                    "none shipped yet; train one with `instyle train`")

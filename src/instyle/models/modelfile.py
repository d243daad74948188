"""Model files: safetensors weights + a JSON model card, never pickles.

The card travels twice: inside the safetensors header (so a lone file is self-describing) and as
``NAME.json`` beside it (so humans and the zoo index can read it without torch). Only the header's
copy is trusted, and only after ``ModelCard`` has checked it; weights are checked for shape and
finiteness before a model is handed out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_path, atomic_write_text
from instyle.models.card import ModelCard
from instyle.models.norms import interpolated_state
from instyle.models.registry import create_model


def card_path(weights: str | Path) -> Path:
    """``MODEL.json`` beside ``MODEL.safetensors``."""
    return Path(weights).with_suffix(".json")


def save_model(model: nn.Module, card: dict[str, Any] | ModelCard, path: str | Path,
               dtype: torch.dtype | None = None) -> ModelCard:
    """Write weights (optionally cast, e.g. fp16 for the zoo) and the card, each atomically.

    The card is validated first, so a file this writes always loads again."""
    checked = card if isinstance(card, ModelCard) else ModelCard.from_dict(card, str(path))
    text = checked.to_json()
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"instyle_card": text})
    atomic_write_text(card_path(path), checked.to_json(indent=2) + "\n")
    return checked


def read_card(path: str | Path) -> ModelCard:
    """The card from the safetensors header (the JSON file may be missing or edited), checked."""
    path = Path(path)
    if not path.is_file():
        raise InstyleError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for garbage input
        raise InstyleError(f"{path}: not a safetensors model file ({_first_line(exc)})") from None
    if "instyle_card" not in meta:
        raise InstyleError(f"{path}: safetensors file without an instyle model card")
    return ModelCard.from_json(meta["instyle_card"], str(path))


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild the generator named in the card and load its weights as float32, in eval mode."""
    card = read_card(path)
    model = create_model(card.arch, **card.model_kwargs())
    load_weights(model, path, f"{path}: weights do not match {card.describe_net}")
    return model.to(device).eval(), card


def check_stroke(card: ModelCard, stroke: float) -> None:
    """One line for a stroke the model has no rows for (outside its rows' range, or no rows at all)."""
    if not card.strokes:
        raise InstyleError(f"stroke: this model has no stroke rows ({card.describe_net}); use scale to resize "
                          "the photo instead")
    low, high = card.strokes[0], card.strokes[-1]
    if isinstance(stroke, bool) or not isinstance(stroke, int | float) or not low <= stroke <= high:
        raise InstyleError(f"stroke must be between {low:g} and {high:g} for this model (its rows), got {stroke!r}")


def at_stroke(model: nn.Module, card: ModelCard, stroke: float) -> nn.Module:
    """The plain single-style generator of a stroke-row model at ``stroke``: the rows' scale and
    shift interpolated piecewise linearly in log(stroke), once, into an ordinary network."""
    check_stroke(card, stroke)
    assert card.strokes is not None
    kwargs = {k: v for k, v in card.model_kwargs().items() if k != "styles"}
    single = create_model(card.arch, **kwargs)
    single.load_state_dict(interpolated_state(model, card.strokes, float(stroke)))
    return single.to(next(model.parameters()).device).eval()


def plain_generator(model: nn.Module, card: ModelCard, stroke: float | None = None) -> nn.Module:
    """``model`` itself, or for a stroke-row model its single-style network at ``stroke`` (default:
    the card's): what export and evaluation run, since a row model's raw forward uses row 0."""
    if not card.has_rows:
        return model
    return at_stroke(model, card, card.defaults.stroke if stroke is None else stroke)


def load_weights(model: nn.Module, path: str | Path, mismatch: str) -> None:
    """Load a model file's weights (as float32) into ``model``.

    Refused with ``mismatch: <the first key that does not fit>`` when names or shapes differ, and
    refused when any weight is NaN or infinite (such a model renders black images without error)."""
    try:
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    except Exception as exc:
        raise InstyleError(f"{path}: unreadable weights ({_first_line(exc)})") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        if wrong:
            k = wrong[0]
            detail = f"{k} has shape {tuple(state[k].shape)}, the network needs {tuple(expected[k].shape)}"
        elif missing:
            detail = f"missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        else:
            detail = f"unexpected {unexpected[0]}" + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
        raise InstyleError(f"{mismatch}: {detail}")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise InstyleError(f"{path}: weight {bad} is not finite (NaN or infinity); the model file is broken")
    model.load_state_dict(state)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


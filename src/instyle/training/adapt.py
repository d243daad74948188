"""Norm-only adaptation: a new style from a trained trunk by training only the norm layers' affine.

The zoo's ``johnson`` styles were trained jointly and share every convolution; a style lives in the
instance-norm scale and shift (conditional instance normalization, Dumoulin et al. 2017). A new
painting then needs only new scales and shifts: the convolutions of the base model are frozen, and
the optimizer sees 0.19% of the parameters (3,200 of 1,679,235 in ``johnson``). The result is the
base network with other affine values, so it is written as an ordinary single-style model file
whose card names the base (file and sha256) and how the affine started.

Batch norm and ``--norm none`` are refused: without per-image statistics the affine does not carry
a style on its own (and ``none`` has no affine at all).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from instyle.core.errors import InstyleError
from instyle.core.files import sha256_file
from instyle.models.card import ModelCard
from instyle.models.modelfile import load_weights, read_card
from instyle.models.norms import Norm2d
from instyle.models.registry import create_model
from instyle.zoo import ZOO_DIR, resolve_model

# The zoo's johnson trunk. Every shipped full ``johnson`` style holds the same convolutions (one joint
# run); great-wave names it because starry-night was later fine-tuned into stroke rows (its convolutions
# moved off the trunk), and great-wave is the joint run's next style.
DEFAULT_BASE = "great-wave"
ADAPT_INITS = ("mean", "base")  # the new style's affine starts from the trunk's styles' mean, or the base's own
ADAPTABLE_NORMS = ("instance", "instance-running")


def norm_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """(name, parameter) of every norm layer's scale and shift: what adaptation trains."""
    for name, module in model.named_modules():
        if isinstance(module, Norm2d):
            prefix = f"{name}." if name else ""
            yield f"{prefix}weight", module.weight
            yield f"{prefix}bias", module.bias


def freeze_all_but_norms(model: nn.Module) -> list[nn.Parameter]:
    """Stop gradients for every parameter except the norm affine; returns the trainable ones."""
    keep = {id(p) for _, p in norm_parameters(model)}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return [p for p in model.parameters() if p.requires_grad]


def base_card(base: str) -> tuple[Path, ModelCard]:
    """The base model's file and card, refused in one line if its norm layers cannot carry a style."""
    path = resolve_model(base)
    card = read_card(path)
    if card.norm not in ADAPTABLE_NORMS:
        why = "has no norm layers" if card.norm == "none" else "normalises by batch statistics"
        raise InstyleError(f"--adapt: {base} is a {card.arch}/{card.norm} network, which {why}; "
                           f"norm-only adaptation needs an instance-norm base ({', '.join(ADAPTABLE_NORMS)})")
    if card.n_styles != 1:
        raise InstyleError(f"--adapt: {base} holds {card.n_styles} styles; use one of its single-style files")
    return path, card


def base_network(card: ModelCard) -> dict[str, Any]:
    """The network an adaptation of ``card``'s model trains: the base's own (TrainConfig fields)."""
    return {"arch": card.arch, "norm": card.norm, "arch_kwargs": dict(card.arch_kwargs)}


def _net(arch: str, norm: str, arch_kwargs: dict[str, Any]) -> str:
    return f"{arch}/{norm}" + (f" {arch_kwargs}" if arch_kwargs else "")


def _trunk_state(state: dict[str, torch.Tensor], norms: set[str]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k not in norms}


def trunk_siblings(base_path: Path, base: ModelCard, model: nn.Module) -> list[Path]:
    """The shipped styles of the base's joint run that hold exactly the base's convolutions.

    Only models split off a joint run count (their card has ``joint``), so adapted styles added
    to the zoo later do not move the mean a retrain starts from."""
    norms = {k for k, _ in norm_parameters(model)} | {k for k in model.state_dict() if k.endswith("running_mean")
                                                      or k.endswith("running_var")}
    from safetensors.torch import load_file

    want = _trunk_state(load_file(str(base_path)), norms)
    out = []
    for path in sorted(ZOO_DIR.glob("*.safetensors")):
        card = read_card(path)
        if (card.arch, card.norm, card.arch_kwargs) != (base.arch, base.norm, base.arch_kwargs) or not card.joint:
            continue
        other = _trunk_state(load_file(str(path)), norms)
        if other.keys() == want.keys() and all(torch.equal(other[k].float(), want[k].float()) for k in want):
            out.append(path)
    return out or [base_path]


def init_adapted(model: nn.Module, base: str, how: str, net: dict[str, Any]) -> dict[str, Any]:
    """Load ``base``'s weights into ``model`` (the run's single-style network, ``net`` as in
    ``base_network``), start the affine as ``how`` says, freeze the rest; returns the card's
    ``adapt`` record (base file and sha256, the affine's sources)."""
    path, card = base_card(base)
    if base_network(card) != net:
        raise InstyleError(f"--adapt: {base} is a {_net(**base_network(card))} network; this run "
                           f"asks for {_net(**net)} (--arch, --norm)")
    load_weights(model, path, f"--adapt: {path} ({card.describe_net}) does not fit this run")
    sources = trunk_siblings(path, card, model) if how == "mean" else [path]
    if how == "mean":
        probe = create_model(card.arch, **card.model_kwargs())
        params = dict(norm_parameters(model))
        sums = {k: torch.zeros_like(p) for k, p in params.items()}
        for src in sources:
            load_weights(probe, src, f"--adapt: {src} does not fit the base")
            for k, p in norm_parameters(probe):
                sums[k] += p.detach()
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(sums[k] / len(sources))
    freeze_all_but_norms(model)
    return {"base": base if not Path(base).suffix else path.name, "file": path.name, "sha256": sha256_file(path),
            "base_steps": card.steps, "init": how,
            "init_from": [{"file": s.name, "sha256": sha256_file(s)} for s in sources],
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def check_same_base(record: dict[str, Any], base: str) -> None:
    """A retrain or resume must start from the base the card names (same bytes)."""
    path = resolve_model(base)
    if record.get("sha256") and sha256_file(path) != record["sha256"]:
        raise InstyleError(f"--adapt: {path} is not the base this model was adapted from (sha256 differs)")

"""From a model card back to its training run: the command line that made it, and a config to redo it.

A card stores the full ``TrainConfig`` with the absolute paths of the machine that trained it. To
retrain elsewhere, the style images are found again by file name among the fetched paintings and
textures and checked against the card's sha256, and the content photos default to the fetched set.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from instyle.core.errors import InstyleError
from instyle.core.files import sha256_file
from instyle.data.fetch import default_data_dir, style_path
from instyle.training.config import TrainConfig

# TrainConfig field -> CLI flag of `instyle train`; fields without a flag must keep their defaults.
_FLAGS = {
    "arch": "--arch", "norm": "--norm", "loss": "--loss", "content_weight": "--content-weight",
    "style_weight": "--style-weight", "tv_weight": "--tv-weight", "size": "--size", "style_size": "--style-size",
    "batch": "--batch", "iters": "--iters", "lr": "--lr", "grad_clip": "--grad-clip", "seed": "--seed",
    "precision": "--precision",
    "device": "--device", "workers": "--workers", "holdout": "--holdout", "eval_every": "--eval-every",
    "checkpoint_every": "--checkpoint-every", "warmup": "--warmup", "decay": "--decay", "keep_best": "--keep-best",
    "compile": "--compile", "cuda_graphs": "--cuda-graphs",
}
_NOT_REPRODUCED = {"device", "workers", "precision", "compile", "cuda_graphs"}  # where it ran, not what it learned


def card_styles(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The style entries of a card: one for a single-style model, several for a joint one."""
    return list(card["styles"]) if "styles" in card else [card["style"]]


def _train_styles(card: dict[str, Any]) -> list[str]:
    style = card["train"]["style"]
    return [style] if isinstance(style, str) else list(style)


def _joint_style_entries(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Style entries of the run that made the card (a model split off a joint run names only its own)."""
    if "joint" in card:
        return list(card["joint"]["styles"])
    return card_styles(card)


def _from_scratch(card: dict[str, Any]) -> dict[str, Any]:
    """The card's training config as one run from scratch: a run continued with ``--init`` counts
    the steps of its whole chain (the intermediate model files are not shipped)."""
    train = dict(card["train"])
    if train.get("init"):
        train.update(init=None, warmup=None, iters=card["steps"])
    return train


def train_command(card: dict[str, Any], output: str | None = None) -> str:
    """The ``instyle train`` command line that reproduces the run (fetched styles by slug)."""
    train = _from_scratch(card)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    args = ["instyle", "train"]
    for path in _train_styles(card):
        p = Path(path)
        fetched = p.parent.name in ("style", "texture")  # the layout of `instyle data fetch`
        args += ["--style", p.stem if fetched else str(p)]
    for name, flag in _FLAGS.items():
        if name in train and train[name] != defaults.get(name) and name not in _NOT_REPRODUCED:
            args += [flag] if isinstance(train[name], bool) else [flag, str(train[name])]
    if train.get("style_scales"):
        args += ["--style-scales", *(str(v) for v in train["style_scales"])]
    out = Path(train["output"])
    args += ["-o", output or f"runs/{out.parent.name}/{out.name}"]
    return shlex.join(args)


def fetched_style(entry: dict[str, Any], trained: str | Path | None = None, data_dir: Path | None = None) -> Path:
    """The fetched image of a card's style entry (by its file name, else the trained path's), checked
    against the entry's sha256."""
    name = Path(entry.get("file") or str(trained)).stem
    path = style_path(name, data_dir)
    want = entry.get("sha256")
    if want and sha256_file(path) != want:
        raise InstyleError(f"{path} is not the image {name} was trained on (sha256 differs); "
                           "refetch with `instyle data fetch` or train on it with `instyle train`")
    return path


def config_from_card(card: dict[str, Any], output: str | Path, content: str | Path | None = None,
                     data_dir: Path | None = None, **overrides: Any) -> TrainConfig:
    """A ``TrainConfig`` that retrains the card's run on this machine, writing ``output``."""
    if "train" not in card:
        raise InstyleError("this model card has no training record (train section); it cannot be retrained")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in _from_scratch(card).items() if k in fields}
    styles = [str(fetched_style(entry, trained, data_dir))
              for entry, trained in zip(_joint_style_entries(card), _train_styles(card), strict=True)]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    kw.update(style=styles[0] if len(styles) == 1 else styles, output=str(output),
              content=str(content if content is not None else root / "content"))
    kw.update(overrides)
    return TrainConfig(**kw)

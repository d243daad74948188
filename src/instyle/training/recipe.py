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
from instyle.models.card import ModelCard
from instyle.training.adapt import check_same_base
from instyle.training.config import TrainConfig

# Where a run ran rather than what it learned: a retrain takes this machine's values, not the card's.
_MACHINE = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("machine")}


def _train_record(card: ModelCard) -> dict[str, Any]:
    if not card.train:
        raise InstyleError("this model card has no training record (train section); it cannot be retrained")
    return card.train


def _train_styles(train: dict[str, Any]) -> list[str]:
    style = train["style"]
    return [style] if isinstance(style, str) else list(style)


def _joint_style_entries(card: ModelCard) -> list[dict[str, Any]]:
    """Style entries of the run that made the card (a model split off a joint run names only its own)."""
    return list(card.joint["styles"]) if card.joint else list(card.styles)


def _from_scratch(card: ModelCard) -> dict[str, Any]:
    """The card's training config as one run from scratch: a run continued with ``--init`` counts
    the steps of its whole chain (the intermediate model files are not shipped)."""
    train = dict(_train_record(card))
    if train.get("init"):
        train.update(init=None, warmup=None, iters=card.steps)
    return train


def train_command(card: ModelCard, output: str | None = None, train: dict[str, Any] | None = None) -> str:
    """The ``instyle train`` command line that reproduces the run (fetched styles by slug); ``train``
    replaces the card's record (``instyle retrain`` prints what it will run)."""
    train = _from_scratch(card) if train is None else train
    defaults = TrainConfig.default_values(train.get("adapt"))
    args = ["instyle", "train"]
    for path in _train_styles(train):
        p = Path(path)
        fetched = p.parent.name in ("style", "texture")  # the layout of `instyle data fetch`
        args += ["--style", p.stem if fetched else str(p)]
    for f in TrainConfig.flag_fields():
        name, flag = f.name, TrainConfig.flag(f.name)
        if name in train and train[name] != defaults.get(name) and name not in _MACHINE:
            args += [flag] if isinstance(train[name], bool) else [flag, str(train[name])]
    for name in ("style_scales", "strokes"):
        if train.get(name):
            args += [TrainConfig.flag(name), *(str(v) for v in train[name])]
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


def config_from_card(card: ModelCard, output: str | Path, content: str | Path | None = None,
                     data_dir: Path | None = None, **overrides: Any) -> TrainConfig:
    """A ``TrainConfig`` that retrains the card's run on this machine, writing ``output``."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in _from_scratch(card).items() if k in fields and k not in _MACHINE}
    styles = [str(fetched_style(entry, trained, data_dir))
              for entry, trained in zip(_joint_style_entries(card), _train_styles(_train_record(card)), strict=True)]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    kw.update(style=styles[0] if len(styles) == 1 else styles, output=str(output),
              content=str(content if content is not None else root / "content"))
    if kw.get("adapt") and card.data.get("adapt"):
        check_same_base(card.data["adapt"], kw["adapt"])
    kw.update(overrides)
    if "iters" in overrides:  # a shorter retrain (a quick check) anneals over at most its own steps
        kw["decay"] = min(kw.get("decay", 0), overrides["iters"])
    return TrainConfig(**kw)

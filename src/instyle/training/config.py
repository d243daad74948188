"""The training configuration: one dataclass, the single declaration of every training option.

The CLI flags, ``instyle retrain``'s command line and the model card's ``train`` record are all
derived from it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from instyle.core.errors import InstyleError
from instyle.core.hardware import check_device, cpu_supports_bf16
from instyle.losses.perceptual import preset_names
from instyle.losses.temporal import STABILITY_MARGIN
from instyle.models import NORM_KINDS, list_models
from instyle.models.card import MAX_STROKE_ROWS, STROKE_RANGE
from instyle.models.registry import TEXTURE_ARCHS
from instyle.training.adapt import ADAPT_INITS, DEFAULT_BASE

# The --adapt schedule: only the affine trains, which takes a higher rate (measured in docs/adaptation.md).
ADAPT_ITERS, ADAPT_LR, ADAPT_DECAY, ADAPT_EVAL_EVERY = 300, 1e-2, 100, 50

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
INF = float("inf")


def option(default: Any = dataclasses.MISSING, help: str = "", *, low: float | None = None,
           high: float | None = None, choices: Callable[[], Sequence[str]] | None = None, metavar: str | None = None,
           parse: Callable[[str], Any] | None = None, machine: bool = False, retrain: bool = False,
           default_factory: Any = dataclasses.MISSING, adapted: Any = None, const: Any = None) -> Any:
    """A ``TrainConfig`` field with what the CLI and the checks need to know about it.

    ``help`` makes it a flag of ``instyle train`` (``--name-with-dashes``); ``low``/``high`` bound it
    (inclusive; ``None`` values are always allowed for optional fields); ``choices`` lists its legal
    values lazily; ``machine`` marks where a run ran rather than what it learned (``instyle retrain``
    does not copy it from the card); ``retrain`` also makes it an override flag of ``instyle retrain``.
    ``adapted``: the default under ``--adapt`` (the field then defaults to None, filled in by
    ``TrainConfig``, so the card records the value used); ``const``: the value of the bare flag."""
    meta = {"help": help, "low": low, "high": high, "choices": choices, "metavar": metavar, "parse": parse,
            "machine": machine, "retrain": retrain, "adapted": adapted, "const": const}
    if adapted is not None:
        meta.update(scratch=default, help=f"{help} (default: {default:g}; with --adapt: {adapted:g})")
        default = None
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def parse_workers(value: str) -> int | str:
    """``auto`` or a non-negative number of data-loader processes."""
    if value == "auto":
        return value
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {value!r}")
    return int(value)


def _archs() -> list[str]:
    """Photo-to-photo generators: texture generators (noise in) are trained by ``instyle texture train``."""
    return [name for name in list_models() if name not in TEXTURE_ARCHS]


def _losses() -> list[str]:
    return preset_names()


def _norms() -> list[str]:
    return list(NORM_KINDS)


def _precisions() -> list[str]:
    return list(PRECISIONS)


@dataclass
class TrainConfig:
    """Everything that determines a run; stored verbatim in the model card.

    This is the one declaration of the training options: ``instyle train``'s flags, ``instyle
    retrain``'s overrides and the command line a card records are all derived from these fields."""

    style: str | list[str]  # one style image, or several trained jointly
    content: str
    output: str
    arch: str = option("johnson", "generator architecture", choices=_archs)
    norm: str = option("instance", "normalization in the generator (instance: the paper)", choices=_norms)
    loss: str = option("johnson", "perceptual-loss preset (VGG layers and weights)", choices=_losses)
    content_weight: float | None = option(None, "content-loss weight (default: the loss preset's)", low=0, high=INF)
    style_weight: float | None = option(None, "style-loss weight (default: the loss preset's)", low=0, high=INF)
    tv_weight: float | None = option(None, "total-variation weight (default: the loss preset's)", low=0, high=INF)
    size: int = option(256, "training crop size (px)", low=32, high=4096)
    style_size: int = option(256, "long side of the style image (stroke scale)", low=32, high=4096)
    batch: int = option(4, "images per step", low=1, high=1024)
    iters: int = option(2000, "training steps (more steps on top of --init's)", low=1, high=10_000_000,
                        retrain=True, adapted=ADAPT_ITERS)
    lr: float = option(1e-3, "Adam learning rate", low=1e-12, high=10.0, adapted=ADAPT_LR)
    grad_clip: float | None = option(None, "clip the gradient norm to this (off by default)", low=1e-12, high=INF)
    seed: int = option(0, "seed of the data order, the crops and the initial weights", low=0, high=2**63 - 1)
    temporal_weight: float = option(0.0, "weight of the video-stability term: a shifted, noisier copy of each crop "
                                         "must stylize to the same pixels (0: off; instyle.losses.temporal)",
                                    low=0, high=INF)
    temporal_shift: int = option(4, "largest shift (px) of the stability term's second view", low=0, high=64)
    temporal_noise: float = option(0.04, "largest pixel-noise sigma of the stability term's second view", low=0,
                                   high=1.0)
    temporal_grain: float = option(1.0, "largest length (px) over which the stability term's noise is smooth, "
                                        "drawn per image from 1 (pixel noise) to this; real footage's frame-to-frame "
                                        "noise is smooth over a few px (try 8)", low=1.0, high=64.0)
    precision: str = option("auto", "autocast precision (auto: bf16 where the CPU or GPU does it natively)",
                            choices=_precisions, machine=True, retrain=True)
    device: str = option("auto", "auto, cpu, cuda, cuda:1 ...", machine=True, retrain=True)
    workers: int | str = option(0, "data loader worker processes, or auto (one per spare core, at most 4)",
                                parse=parse_workers, machine=True, retrain=True)
    holdout: int = option(8, "content photos kept out for the held-out curve", low=0, high=100_000)
    eval_every: int = option(200, "steps between held-out evaluations", low=1, high=10_000_000,
                             adapted=ADAPT_EVAL_EVERY)
    checkpoint_every: int = option(200, "steps between checkpoints", low=1, high=10_000_000)
    log_every: int = option(10, low=1, high=10_000_000)  # steps between log lines (no flag)
    noise_channels: int = option(0, "U(0, 1) noise channels concatenated to the photo: a generator g(x, z) whose "
                                    "stylize --seed then gives different results (3 in the paper's diversity branch)",
                                 low=0, high=16)
    diversity: float = option(0.0, "weight λ of the entropy (diversity) term among each photo's noise draws; "
                                   "needs --noise-channels; 0 = plain training", low=0, high=INF)
    diversity_copies: int = option(2, "with --diversity: noise draws per photo and step (the generator then runs "
                                      "batch x copies images)", low=2, high=64)
    vgg_weights: str = "imagenet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    style_meta: dict[str, Any] | list[dict[str, Any]] = field(default_factory=dict)  # title, license… per style
    style_scales: list[float] = field(default_factory=list)  # per-style style-weight multipliers (joint runs)
    # One style at several stroke sizes: the style image at style_size × each value, one norm row each.
    strokes: list[float] = field(default_factory=list)
    init: str | None = None  # a model file to start from: ``iters`` more steps on top of its own
    warmup: int | None = option(None, "linear learning-rate warm-up steps (default: 100 with --init, none otherwise)",
                                low=0, high=10_000_000, metavar="STEPS")
    decay: int = option(0, "anneal the learning rate to 0 over the last STEPS steps (cosine); settles the weights",
                        low=0, high=10_000_000, metavar="STEPS", adapted=ADAPT_DECAY)
    adapt: str | None = option(None, "start from a trained instance-norm model (a file or a zoo name; bare: the "
                                     f"zoo's johnson trunk, {DEFAULT_BASE}) and train only its norm layers' scale "
                                     "and shift: a new style in minutes on a CPU", const=DEFAULT_BASE,
                               metavar="BASE")
    adapt_init: str = option("mean", "with --adapt: start the scale and shift from the mean over the base's "
                                     "jointly trained zoo styles, or from the base's own",
                             choices=lambda: list(ADAPT_INITS))
    keep_best: bool = option(False, "write the weights of the best held-out evaluation instead of the last "
                                    "step's (a late loss spike then costs nothing; needs held-out photos)")
    compile: bool = option(False, "torch.compile the training step: the first step compiles for a minute or two, "
                                  "the rest run faster (1.07x on a 2-core CPU); worth it for long runs",
                           machine=True, retrain=True)
    cuda_graphs: bool = option(False, "on a GPU: --compile, and replay each step as CUDA graphs (small batches, "
                                      "where a GPU step is launch-bound); not with torchrun",
                               machine=True, retrain=True)

    def __post_init__(self) -> None:
        self.compile = self.compile or self.cuda_graphs  # CUDA graphs replay the compiled step
        if self.noise_channels:  # the card's arch_kwargs rebuild the network: it must say so there
            self.arch_kwargs = {**self.arch_kwargs, "noise_channels": self.noise_channels}
        for name, value in self.recipe_defaults(self.adapt).items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @classmethod
    def recipe_defaults(cls, adapt: str | None) -> dict[str, Any]:
        """The defaults that depend on the recipe: from scratch, or adapting a base (``adapt``)."""
        return {f.name: f.metadata["adapted"] if adapt else f.metadata["scratch"]
                for f in dataclasses.fields(cls) if f.metadata.get("adapted") is not None}

    @classmethod
    def default_values(cls, adapt: str | None = None) -> dict[str, Any]:
        """Every field's default for a run with (or without) ``adapt``: what a card's command may omit."""
        plain = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        return {**plain, **cls.recipe_defaults(adapt)}

    @staticmethod
    def flag(name: str) -> str:
        """The CLI flag of a field: ``style_size`` -> ``--style-size``."""
        return "--" + name.replace("_", "-")

    @classmethod
    def flag_fields(cls) -> list[dataclasses.Field]:
        """The fields that are flags of ``instyle train`` (those with help text)."""
        return [f for f in dataclasses.fields(cls) if f.metadata.get("help")]

    def validate(self) -> None:
        """One ``InstyleError`` line for the first option that is out of range or unknown."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            flag = self.flag(f.name)
            if meta.get("choices") and value not in meta["choices"]():
                raise InstyleError(f"{flag}: unknown value {value!r}; choose one of {', '.join(meta['choices']())}")
            if meta.get("low") is None or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) \
                    or not meta["low"] <= value <= meta["high"]:
                high = "" if meta["high"] == INF else f" and at most {meta['high']:g}"
                raise InstyleError(f"{flag} must be at least {meta['low']:g}{high}, got {value!r}")
        if self.diversity and not self.arch_kwargs.get("noise_channels"):
            raise InstyleError("--diversity needs a generator that sees noise: add --noise-channels 3")
        if self.adapt and self.init:
            raise InstyleError("--adapt and --init exclude each other (--adapt starts from its base)")
        if self.adapt and len(self.style_files()) > 1:
            raise InstyleError("--adapt trains one style; give one --style")
        if self.decay > self.iters:
            raise InstyleError(f"--decay ({self.decay}) cannot exceed --iters ({self.iters})")
        if self.temporal_weight and 2 * (self.temporal_shift + STABILITY_MARGIN) >= self.size:
            raise InstyleError(f"--temporal-shift {self.temporal_shift} leaves nothing of a {self.size} px crop "
                               f"(the term compares the views {STABILITY_MARGIN} px in from their border)")
        if not self.style_files():
            raise InstyleError("no style image given (--style)")
        self._validate_strokes()
        if Path(self.output).suffix != ".safetensors":
            raise InstyleError(f"{self.output}: the output must be a .safetensors model file")
        if not (self.workers == "auto" or (isinstance(self.workers, int) and 0 <= self.workers <= 64)):
            raise InstyleError(f"--workers must be 'auto' or 0..64, got {self.workers!r}")
        check_device(self.device)

    def _validate_strokes(self) -> None:
        if not self.strokes:
            return
        low, high = STROKE_RANGE
        if len(self.style_files()) != 1:
            raise InstyleError("--strokes trains one style at several stroke sizes; give exactly one --style")
        if not 2 <= len(self.strokes) <= MAX_STROKE_ROWS:
            raise InstyleError(f"--strokes takes 2 to {MAX_STROKE_ROWS} values, got {len(self.strokes)}")
        if any(not math.isfinite(v) or not low <= v <= high for v in self.strokes):
            raise InstyleError(f"--strokes values must be between {low:g} and {high:g}, got {self.strokes}")
        if any(b <= a for a, b in itertools.pairwise(self.strokes)):
            raise InstyleError(f"--strokes must be given in increasing order, got {self.strokes}")
        if self.norm == "none":
            raise InstyleError("stroke rows live in the norm layers; --norm none has none")

    @property
    def rows(self) -> int:
        """Norm rows of the network: one per stroke size, else one per style."""
        return len(self.strokes) or len(self.style_files())

    def style_files(self) -> list[str]:
        return [self.style] if isinstance(self.style, str) else list(self.style)

    def style_metas(self) -> list[dict[str, Any]]:
        metas = [self.style_meta] if isinstance(self.style_meta, dict) else list(self.style_meta)
        return metas if len(metas) == len(self.style_files()) else [{} for _ in self.style_files()]

    def paths(self) -> tuple[Path, Path, Path]:
        out = Path(self.output)
        stem = out.with_suffix("")
        return out, Path(f"{stem}.ckpt.safetensors"), Path(f"{stem}.log.jsonl")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = plain fp32). ``auto``: bf16 where the hardware does it natively."""
    if precision not in PRECISIONS:
        raise InstyleError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise InstyleError("fp16 training needs a CUDA GPU; use --precision bf16 or fp32 on the CPU")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)

"""The training configuration: one dataclass, the single declaration of every training option.

The CLI flags, ``instyle retrain``'s command line and the model card's ``train`` record are all
derived from it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from instyle.core.errors import InstyleError
from instyle.core.hardware import cpu_supports_bf16

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything that determines a run; stored verbatim in the model card."""

    style: str | list[str]  # one style image, or several trained jointly
    content: str
    output: str
    arch: str = "johnson"
    norm: str = "instance"
    loss: str = "johnson"
    content_weight: float | None = None  # None: the loss preset's value
    style_weight: float | None = None
    tv_weight: float | None = None
    size: int = 256
    style_size: int = 256  # long side of the style image; sets the stroke scale
    batch: int = 4
    iters: int = 2000
    lr: float = 1e-3
    grad_clip: float | None = None  # max gradient norm (None: no clipping)
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    workers: int | str = 0  # or "auto"
    holdout: int = 8  # content photos kept out of training for the held-out loss curve
    eval_every: int = 200
    checkpoint_every: int = 200
    log_every: int = 10
    vgg_weights: str = "imagenet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    style_meta: dict[str, Any] | list[dict[str, Any]] = field(default_factory=dict)  # title, license… per style
    style_scales: list[float] = field(default_factory=list)  # per-style style-weight multipliers (joint runs)
    init: str | None = None  # a model file to start from: ``iters`` more steps on top of its own
    warmup: int | None = None  # steps of linear learning-rate warm-up (None: 100 with ``init``, else 0)
    decay: int = 0  # the last ``decay`` steps anneal the learning rate to 0 (cosine)
    keep_best: bool = False  # write the weights of the best held-out evaluation, not the last step's
    compile: bool = False  # torch.compile the generator and the loss (minutes of compiling, then faster steps)
    cuda_graphs: bool = False  # compiled, and on CUDA each step replayed as CUDA graphs (small batches)

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

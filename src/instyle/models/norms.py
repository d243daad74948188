"""The normalization factory: one module serves every norm site of every generator.

The paper's whole argument is about *which statistics* a norm layer uses, so the choice is made
explicit instead of being hidden in ``train()``/``eval()`` semantics of different classes:

==================  =====================  ==========================
kind                statistics in train    statistics in eval
==================  =====================  ==========================
``batch``           the batch              running averages
``instance``        each image             each image (the paper)
``instance-running`` each image            running averages (RQ2 ablation)
``none``            —                      —
==================  =====================  ==========================

Both ``batch`` and the instance kinds keep running averages, so one trained network can be
evaluated every way (``set_eval_stats``): that is how the experiments compare IN at test time
with IN frozen to running statistics, or BN with per-image statistics, without retraining.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

NORM_KINDS = ("batch", "instance", "instance-running", "none")
Stats = Literal["batch", "instance", "running"]
_TRAIN_STATS: dict[str, Stats] = {"batch": "batch", "instance": "instance", "instance-running": "instance"}
_EVAL_STATS: dict[str, Stats] = {"batch": "running", "instance": "instance", "instance-running": "running"}


class Norm2d(nn.Module):
    """Affine per-channel normalization whose statistics source is chosen by ``kind``.

    Affine weights start U(0, 1) and biases at 0 for every kind, as in texture_nets and
    fast-neural-style, so a BN-vs-IN comparison differs only in the statistics.
    """

    def __init__(self, channels: int, kind: str = "instance", eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if kind not in _TRAIN_STATS:
            raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORM_KINDS)}")
        self.kind = kind
        self.channels = channels
        self.eps = eps
        self.momentum = momentum
        self.train_stats: Stats = _TRAIN_STATS[kind]
        self.eval_stats: Stats = _EVAL_STATS[kind]
        self.weight = nn.Parameter(torch.empty(channels).uniform_(0.0, 1.0))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        # Per-image statistics fixed from outside ((N or 1, C) mean and biased variance), used in eval
        # instead of the input's own: the tiler sets them so every tile of an image is normalised alike.
        self.fixed_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = self.train_stats if self.training else self.eval_stats
        if self.fixed_stats is not None and not self.training and stats != "running":
            mean, var = self.fixed_stats
            scale = self.weight.float() * torch.rsqrt(var + self.eps)
            shift = self.bias.float() - mean * scale
            return x * scale.to(x.dtype)[..., None, None] + shift.to(x.dtype)[..., None, None]
        if stats == "running":
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        # Running averages are only updated while training; evaluation never changes the model.
        track = self.training
        rm = self.running_mean if track else None
        rv = self.running_var if track else None
        if stats == "batch":
            return F.batch_norm(x, rm, rv, self.weight, self.bias, True, self.momentum, self.eps)
        return F.instance_norm(x, rm, rv, self.weight, self.bias, True, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.channels}, kind={self.kind}, train={self.train_stats}, eval={self.eval_stats}"


def make_norm(kind: str, channels: int) -> nn.Module:
    """The one place generators get a norm layer from."""
    if kind == "none":
        return nn.Identity()
    return Norm2d(channels, kind)


def set_eval_stats(module: nn.Module, stats: Stats | None) -> None:
    """Choose which statistics every norm layer uses in eval mode (``None`` restores each kind's own)."""
    if stats is not None and stats not in ("batch", "instance", "running"):
        raise ValueError(f"unknown statistics {stats!r}")
    for m in module.modules():
        if isinstance(m, Norm2d):
            m.eval_stats = stats if stats is not None else _EVAL_STATS[m.kind]

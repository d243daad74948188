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

A norm layer can also hold one affine pair per style (``styles`` > 1: "conditional instance
normalization", Dumoulin et al. 2017). All styles share every convolution; only the per-channel
scale and shift differ. Several zoo styles then train in one run, and each style exports as a plain
single-style network (``single_style_state``), because IN with a fixed affine pair *is* that network.

Both ``batch`` and the instance kinds keep running averages, so one trained network can be
evaluated every way (``set_eval_stats``): that is how the experiments compare IN at test time
with IN frozen to running statistics, or BN with per-image statistics, without retraining.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# Per-image statistics at test time via one var_mean reduction and one fused scale/shift
# (``instance_norm_eval``) instead of ``F.instance_norm``, which runs batch norm over a
# (1, N*C, H, W) view. None: on CUDA only, where the whole network at 4K ran 1.77x faster in
# fp16 (81 -> 46 ms) and 1.11x in fp32 (docs/benchmarks.md); on the CPU it was no faster.
_FUSED_EVAL: contextvars.ContextVar[bool | None] = contextvars.ContextVar("instyle_fused_eval", default=None)


@contextlib.contextmanager
def fused_instance_norm(enabled: bool | None) -> Iterator[None]:
    """Within the block, eval-mode instance norm uses the fused kernel (True), ATen's (False) or the
    device's default (None); the previous choice comes back afterwards, also on error, and other
    threads are not affected (a context variable, not a class attribute flipped by hand)."""
    token = _FUSED_EVAL.set(enabled)
    try:
        yield
    finally:
        _FUSED_EVAL.reset(token)


NORM_KINDS = ("batch", "instance", "instance-running", "none")
Stats = Literal["batch", "instance", "running"]
_TRAIN_STATS: dict[str, Stats] = {"batch": "batch", "instance": "instance", "instance-running": "instance"}
_EVAL_STATS: dict[str, Stats] = {"batch": "running", "instance": "instance", "instance-running": "running"}


class Norm2d(nn.Module):
    """Affine per-channel normalization whose statistics source is chosen by ``kind``.

    Affine weights start U(0, 1) and biases at 0 for every kind, as in texture_nets and
    fast-neural-style, so a BN-vs-IN comparison differs only in the statistics.
    """

    def __init__(self, channels: int, kind: str = "instance", eps: float = 1e-5, momentum: float = 0.1,
                 styles: int = 1):
        super().__init__()
        if styles < 1:
            raise ValueError(f"styles must be >= 1, got {styles}")
        if kind not in _TRAIN_STATS:
            raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORM_KINDS)}")
        self.kind = kind
        self.channels = channels
        self.eps = eps
        self.momentum = momentum
        self.train_stats: Stats = _TRAIN_STATS[kind]
        self.eval_stats: Stats = _EVAL_STATS[kind]
        self.styles = styles
        shape = (channels,) if styles == 1 else (styles, channels)
        self.weight = nn.Parameter(torch.empty(shape).uniform_(0.0, 1.0))
        self.bias = nn.Parameter(torch.zeros(shape))
        # Multi-style layers: which style each image of the next batch gets ((N,) long tensor or an int).
        self.style_index: torch.Tensor | int = 0
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        # Per-image statistics fixed from outside ((N or 1, C) mean and biased variance), used in eval
        # instead of the input's own: the tiler sets them so every tile of an image is normalised alike.
        self.fixed_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C,) or, with several styles, (N, C) scale and shift for the current ``style_index``."""
        if self.styles == 1:
            return self.weight, self.bias
        return self.weight[self.style_index], self.bias[self.style_index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.styles > 1:
            return self._forward_multi(x)
        return self._forward(x, self.weight, self.bias)

    def _forward_multi(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.affine()  # (C,) for one style index, (N, C) for one per image
        if w.dim() == 2 and w.shape[0] != x.shape[0]:
            raise ValueError(f"style_index has {w.shape[0]} entries for a batch of {x.shape[0]}")
        y = self._forward(x, None, None)
        return y * w.to(y.dtype)[..., None, None] + b.to(y.dtype)[..., None, None]

    def _forward(self, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        stats = self.train_stats if self.training else self.eval_stats
        if self.fixed_stats is not None and not self.training and stats != "running":
            mean, var = self.fixed_stats
            scale = torch.rsqrt(var + self.eps) if weight is None else weight.float() * torch.rsqrt(var + self.eps)
            shift = -mean * scale if bias is None else bias.float() - mean * scale
            return x * scale.to(x.dtype)[..., None, None] + shift.to(x.dtype)[..., None, None]
        if stats == "running":
            return F.batch_norm(x, self.running_mean, self.running_var, weight, bias, False, 0.0, self.eps)
        # Running averages are only updated while training; evaluation never changes the model.
        track = self.training
        rm = self.running_mean if track else None
        rv = self.running_var if track else None
        if stats == "batch":
            if self.training and _distributed():
                return _synced_batch_norm(x, rm, rv, weight, bias, self.momentum, self.eps)
            return F.batch_norm(x, rm, rv, weight, bias, True, self.momentum, self.eps)
        choice = _FUSED_EVAL.get()
        fused = choice if choice is not None else x.is_cuda
        if fused and not self.training:
            return instance_norm_eval(x, weight, bias, self.eps)
        return F.instance_norm(x, rm, rv, weight, bias, True, self.momentum, self.eps)

    def extra_repr(self) -> str:
        multi = f", styles={self.styles}" if self.styles > 1 else ""
        return f"{self.channels}, kind={self.kind}, train={self.train_stats}, eval={self.eval_stats}{multi}"


def instance_norm_eval(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                       eps: float) -> torch.Tensor:
    """Instance norm without running statistics, in ``x``'s own dtype and layout: per-(image,
    channel) mean and biased variance from one reduction (accumulated in fp32), then one
    multiply-add. Same result as ``F.instance_norm`` up to rounding."""
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    scale = torch.rsqrt(var.float() + eps)
    if weight is not None:
        scale = scale * weight.float()[:, None, None]
    shift = -mean.float() * scale
    if bias is not None:
        shift = shift + bias.float()[:, None, None]
    return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def _synced_batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                       weight: torch.Tensor | None, bias: torch.Tensor | None, momentum: float,
                       eps: float) -> torch.Tensor:
    """Batch norm over the *global* batch under DDP: per-channel sums are all-reduced (differentiably),
    so N processes normalise exactly like one process holding the whole batch. Plain DDP would give
    each rank its own shard's statistics, a different (noisier) model than the one being compared."""
    import warnings

    from torch.distributed.nn.functional import all_reduce

    c = x.shape[1]
    xf = x.float()
    count = torch.tensor([xf.numel() / c], device=x.device)
    with warnings.catch_warnings():  # deprecated for a private API without autograd; still the documented one
        warnings.simplefilter("ignore", FutureWarning)
        # Two passes (mean, then squares about it), not E[x²] − E[x]², which cancels badly when
        # |mean| >> std and would make ranks differ from one process by more than rounding.
        packed = all_reduce(torch.cat([xf.sum(dim=(0, 2, 3)), count]))
        n = packed[c]
        mean = packed[:c] / n
        var = all_reduce((xf - mean[:, None, None]).pow(2).sum(dim=(0, 2, 3))) / n
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.lerp_(mean.detach(), momentum)
            running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1.0), momentum)
    y = (xf - mean[:, None, None]) * torch.rsqrt(var + eps)[:, None, None]
    if weight is not None and bias is not None:
        y = y * weight.float()[:, None, None] + bias.float()[:, None, None]
    return y.to(x.dtype)


def make_norm(kind: str, channels: int, styles: int = 1) -> nn.Module:
    """The one place generators get a norm layer from."""
    if kind == "none":
        return nn.Identity()
    return Norm2d(channels, kind, styles=styles)


def make_multistyle(module: nn.Module, styles: int) -> nn.Module:
    """Give every norm layer ``styles`` affine pairs (fresh U(0, 1) scales, zero shifts), in place.

    Done after construction so that no generator needs to know about styles."""
    if styles == 1:
        return module
    norms = [m for m in module.modules() if isinstance(m, Norm2d)]
    if not norms:
        raise ValueError("a multi-style network needs norm layers (norm 'none' has none)")
    for m in norms:
        fresh = Norm2d(m.channels, m.kind, m.eps, m.momentum, styles=styles)
        m.styles, m.weight, m.bias = styles, fresh.weight, fresh.bias
    return module


def set_style_index(module: nn.Module, index: torch.Tensor | int) -> None:
    """Pick the style of each image of the next batch ((N,) long tensor) or of all of them (int)."""
    for m in module.modules():
        if isinstance(m, Norm2d) and m.styles > 1:
            if isinstance(index, int) and not 0 <= index < m.styles:
                raise ValueError(f"style index {index} out of range for {m.styles} styles")
            m.style_index = index


def single_style_state(module: nn.Module, index: int) -> dict[str, torch.Tensor]:
    """The state dict of the plain single-style network equal to ``module`` with style ``index``."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    for name, m in module.named_modules():
        if isinstance(m, Norm2d) and m.styles > 1:
            prefix = f"{name}." if name else ""
            state[f"{prefix}weight"] = m.weight[index].detach().clone()
            state[f"{prefix}bias"] = m.bias[index].detach().clone()
    return state


def set_eval_stats(module: nn.Module, stats: Stats | None) -> None:
    """Choose which statistics every norm layer uses in eval mode (``None`` restores each kind's own)."""
    if stats is not None and stats not in ("batch", "instance", "running"):
        raise ValueError(f"unknown statistics {stats!r}")
    for m in module.modules():
        if isinstance(m, Norm2d):
            m.eval_stats = stats if stats is not None else _EVAL_STATS[m.kind]


def broadcast_rows(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` of a single-style network, with each (C,) norm affine copied into every row of
    ``module``'s multi-row norm layers: fine-tuning rows from a shipped model then starts, in every
    row, from exactly the shipped look."""
    out = dict(state)
    for name, m in module.named_modules():
        if isinstance(m, Norm2d) and m.styles > 1:
            prefix = f"{name}." if name else ""
            for key in (f"{prefix}weight", f"{prefix}bias"):
                if key in out and out[key].dim() == 1:
                    out[key] = out[key].unsqueeze(0).repeat(m.styles, 1)
    return out


def row_mix(keys: Sequence[float], value: float) -> tuple[int, int, float]:
    """Where ``value`` falls among increasing positive row ``keys``, piecewise linear in log(value):
    rows ``(i, j)`` and the weight ``t`` of row ``j`` (0 at ``keys[i]``, 1 at ``keys[j]``).

    In log because stroke sizes compose by ratio: halfway between 0.5 and 2 is 1, not 1.25."""
    if len(keys) < 1 or any(b <= a for a, b in itertools.pairwise(keys)) or keys[0] <= 0:
        raise ValueError(f"row keys must be positive and increasing, got {list(keys)}")
    if not (math.isfinite(value) and keys[0] <= value <= keys[-1]):
        raise ValueError(f"{value:g} is outside the rows' range {keys[0]:g}..{keys[-1]:g}")
    if len(keys) == 1:
        return 0, 0, 0.0
    j = next((k for k in range(1, len(keys)) if value <= keys[k]), len(keys) - 1)
    i = j - 1
    t = (math.log(value) - math.log(keys[i])) / (math.log(keys[j]) - math.log(keys[i]))
    return i, j, min(1.0, max(0.0, t))


def interpolated_state(module: nn.Module, keys: Sequence[float], value: float) -> dict[str, torch.Tensor]:
    """The state dict of the plain single-style network whose norm affine lies at ``value`` between
    ``module``'s rows (one row per entry of ``keys``; ``row_mix`` says where). Computed once per value,
    so every backend (eager, compiled, ONNX) runs an ordinary single-style network; at a key the
    result is that row exactly (``torch.lerp`` is exact at t = 0 and 1)."""
    i, j, t = row_mix(keys, value)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    for name, m in module.named_modules():
        if isinstance(m, Norm2d) and m.styles > 1:
            if m.styles != len(keys):
                raise ValueError(f"{len(keys)} row keys for a norm layer with {m.styles} rows")
            prefix = f"{name}." if name else ""
            for key, param in ((f"{prefix}weight", m.weight), (f"{prefix}bias", m.bias)):
                state[key] = torch.lerp(param[i].detach(), param[j].detach(), t).clone()
    return state


def resampled_rows(source: nn.Module, keys: Sequence[float], values: Sequence[float],
                   module: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict for ``module`` from a stroke-row ``source``: ``module``'s row ``k`` is
    ``source``'s rows interpolated at ``values[k]`` (clamped to the keys' range); a ``module``
    without rows gets ``values[0]``. Lets a row model seed a run with other rows, or none."""
    low, high = keys[0], keys[-1]
    states = [interpolated_state(source, keys, min(max(float(v), low), high)) for v in values]
    out = dict(states[0])
    for name, m in module.named_modules():
        if isinstance(m, Norm2d) and m.styles > 1:
            if m.styles != len(values):
                raise ValueError(f"{len(values)} row values for a norm layer with {m.styles} rows")
            prefix = f"{name}." if name else ""
            for key in (f"{prefix}weight", f"{prefix}bias"):
                out[key] = torch.stack([s[key] for s in states])
    return out

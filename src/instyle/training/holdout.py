"""Held-out evaluation: perceptual losses, the per-image-optimisation ceiling, contrast
invariance and speed. Used by training (held-out curves) and the paper experiments."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from instyle.data.images import load_image, pil_to_tensor
from instyle.losses.perceptual import PerceptualLoss, optimize_image

MAIN_TERMS = ("total", "content", "style", "tv")
# a·x + b input changes for the contrast-invariance measure: lower contrast, and darker.
CONTRAST_CHANGES = ((0.5, 0.25), (0.6, 0.0))


def center_crops(files: Sequence[Path], size: int) -> torch.Tensor:
    """(N, 3, size, size): short side resized to ``size``, centre square cut."""
    crops = []
    for f in files:
        img = load_image(f).rgb
        s = size / min(img.size)
        img = img.resize((max(size, round(img.width * s)), max(size, round(img.height * s))), 3)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        crops.append(pil_to_tensor(img.crop((left, top, left + size, top + size))))
    return torch.stack(crops)


@torch.no_grad()
def run_model(model: nn.Module, photos: torch.Tensor, chunk: int = 4,
              autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Eval-mode outputs, clamped to [0, 1] as users get them."""
    outs = []
    device = next(model.parameters()).device
    for i in range(0, len(photos), chunk):
        x = photos[i : i + chunk].to(device)
        if autocast_dtype is None:
            y = model(x)
        else:
            with torch.autocast(device.type, dtype=autocast_dtype):
                y = model(x)
        outs.append(y.float().clamp(0, 1).cpu())
    return torch.cat(outs)


@torch.no_grad()
def loss_terms(criterion: PerceptualLoss, outputs: torch.Tensor, photos: torch.Tensor,
               chunk: int = 4, style_index: int | None = None,
               targets: list[dict[str, torch.Tensor]] | None = None) -> dict[str, float]:
    """Mean weighted loss terms over images (``total``, ``content``, ``style``, ``tv``).

    ``targets``: ``chunked_content_targets(criterion, photos, chunk)``, when the same photos are
    scored against several styles (the content targets do not depend on the style)."""
    device = criterion.device
    sums = dict.fromkeys(MAIN_TERMS, 0.0)
    for n, i in enumerate(range(0, len(photos), chunk)):
        terms = criterion(outputs[i : i + chunk].to(device), photos[i : i + chunk].to(device), style_index,
                          targets[n] if targets is not None else None)
        for k in MAIN_TERMS:
            sums[k] += terms[k].item() * len(photos[i : i + chunk])
    return {k: v / len(photos) for k, v in sums.items()}


@torch.no_grad()
def chunked_content_targets(criterion: PerceptualLoss, photos: torch.Tensor,
                            chunk: int = 4) -> list[dict[str, torch.Tensor]]:
    """The content targets of ``photos`` in ``loss_terms``' chunks, to compute them once."""
    return [criterion.content_targets(photos[i : i + chunk].to(criterion.device))
            for i in range(0, len(photos), chunk)]


def gatys_ceiling(criterion: PerceptualLoss, photos: torch.Tensor, steps: int, optimizer: str = "lbfgs",
                  progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-image optimisation of the same objective, from the photo: the quality that feed-forward
    networks try to approximate in one pass.

    ``lbfgs`` (the original's optimiser; ``steps`` counts function evaluations) is the ceiling;
    ``adam`` (lr 0.02, ``steps`` steps) was the reference of earlier reports and is kept as an extra.
    """
    device = criterion.device
    lr = 1.0 if optimizer == "lbfgs" else 0.02
    outs = []
    for i in range(len(photos)):
        outs.append(optimize_image(criterion, photos[i : i + 1].to(device), steps=steps, lr=lr,
                                   optimizer=optimizer).cpu())
        if progress:
            progress(i + 1)
    result = torch.cat(outs)
    return result, loss_terms(criterion, result, photos)


@torch.no_grad()
def contrast_change(model: nn.Module, photos: torch.Tensor) -> float:
    """Mean |G(x) − G(a·x + b)| over pixels, photos and a few (a, b): 0 means the stylization
    ignores the input's contrast, as instance normalization is meant to make it."""
    base = run_model(model, photos)
    diffs = [(run_model(model, a * photos + b) - base).abs().mean().item() for a, b in CONTRAST_CHANGES]
    return sum(diffs) / len(diffs)


@torch.no_grad()
def time_forward(model: nn.Module, size: int = 512, repeats: int = 3) -> float:
    """Median CPU milliseconds of one fp32 eager forward on a size² image (after one warm-up)."""
    model = model.cpu().eval()
    x = torch.rand(1, 3, size, size)
    model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def time_train_step(model: nn.Module, criterion: nn.Module, batch: int, size: int, repeats: int = 3) -> float:
    """Median seconds of one fp32 training step (forward, loss, backward, Adam) on random size² crops,
    after one warm-up: the per-step cost of a generator measured on the machine at hand, so training
    curves recorded on different machines or precisions can be put on one time axis."""
    model = model.cpu().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        criterion(model(x), x)["total"].backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

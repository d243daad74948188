"""The diversity term of "Improved Texture Networks" (Ulyanov, Vedaldi & Lempitsky 2017) and the
diversity measure the reports quote, shared by texture and stylization training and the experiments.

A generator that sees noise can still collapse to one output whatever the noise. Asking the
distribution q of its samples to approach the Julesz ensemble p(x) ∝ exp(−L(x)/T) in KL(q‖p) adds
q's entropy to the objective, estimated in each batch with the Kozachenko–Leonenko nearest-neighbour
estimator: objective = mean L − λ · mean_i ln min_{j≠i} ‖g(z_i) − g(z_j)‖.

Distances are on **pixels**, not VGG features: the entropy in the KL derivation is that of the
image distribution itself (a feature-space distance estimates the entropy of the features, another
quantity), it costs no extra VGG pass, and it does not depend on which layers the loss uses. They
are RMS differences (the norm over √(C·H·W)); that only shifts ln by a constant, so gradients are
the norm's, and logged values read as "typical per-pixel difference" for pixels in [0, 1].
"""

from __future__ import annotations

import math

import torch


def nearest_neighbour_log_distance(samples: torch.Tensor, groups: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """(N,) ln of each sample's RMS distance to its nearest other sample *of its group*.

    ``groups`` splits the batch into that many consecutive groups of equal size (at least two
    each): a stylization batch holds several noise draws per photo, and only draws for the same
    photo say anything about diversity (outputs of different photos differ anyway). Squared
    distances come from one product per group (‖a‖² + ‖b‖² − 2ab, float32), not a difference tensor;
    they are clamped at ``eps`` so identical samples give a large finite negative log, not −inf or NaN."""
    n = samples.shape[0]
    if groups < 1 or n % groups or n // groups < 2:
        raise ValueError(f"the nearest-neighbour distance needs groups of at least two samples, got {n} in {groups}")
    k = n // groups
    flat = samples.float().reshape(groups, k, -1)
    sq = flat.pow(2).sum(dim=2)
    d2 = (sq[:, :, None] + sq[:, None, :] - 2 * flat @ flat.transpose(1, 2)) / flat.shape[2]
    d2 = d2 + torch.diag(torch.full((k,), math.inf, device=samples.device))  # j ≠ i
    return 0.5 * torch.log(d2.min(dim=2).values.clamp_min(eps)).reshape(n)


def mean_pairwise_distance(samples: torch.Tensor) -> float:
    """Mean RMS pixel distance over all pairs of samples (the diversity the reports quote)."""
    n = samples.shape[0]
    if n < 2:
        raise ValueError("need at least two samples")
    flat = samples.float().reshape(n, -1)
    d = torch.cdist(flat[None], flat[None])[0] / math.sqrt(flat.shape[1])
    return float(d.sum() / (n * (n - 1)))

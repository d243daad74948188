"""Ulyanov et al. multi-scale texture network (texture_nets ``pyramid``), for stylization.

The input image is seen at K scales (average-pooled by 2^(K-1) … 1), optionally with noise
channels. Each scale gets a small conv block; starting from the coarsest, the running result is
upsampled ×2, normalised, concatenated with the next scale's normalised block output, and mixed
by three more convs, so the channel count grows by ``channels`` per scale (8, 16, …, 48 for K=6).
A 1×1 conv maps to RGB. About 117 k parameters for the original K=6, 8 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from instyle.models.layers import ConvNormAct, crop_to, pad_to_multiple
from instyle.models.norms import make_norm


def _block(cin: int, cout: int, norm: str) -> nn.Sequential:
    """conv3×3, conv3×3, conv1×1, each with norm and ReLU (replication padding, as the original)."""
    return nn.Sequential(
        ConvNormAct(cin, cout, 3, norm=norm, pad_mode="replicate"),
        ConvNormAct(cout, cout, 3, norm=norm, pad_mode="replicate"),
        ConvNormAct(cout, cout, 1, norm=norm),
    )


class UlyanovNet(nn.Module):
    """Multi-scale generator; input sides are padded to a multiple of 2^(K-1) and cropped back."""

    def __init__(self, norm: str = "instance", scales: int = 6, channels: int = 8, noise_channels: int = 0):
        super().__init__()
        self.scales = scales
        self.noise_channels = noise_channels
        self.size_multiple = 2 ** (scales - 1)
        # at least 2×2 at the coarsest scale: instance statistics of a single pixel are undefined
        self.min_size = 2 * self.size_multiple
        cin = 3 + noise_channels
        self.branches = nn.ModuleList(_block(cin, channels, norm) for _ in range(scales))
        # joins[j] merges the running result (channels*(j+1)) with scale j+1's branch (channels).
        self.deep_norms = nn.ModuleList(make_norm(norm, channels * (j + 1)) for j in range(scales - 1))
        self.shallow_norms = nn.ModuleList(make_norm(norm, channels) for _ in range(scales - 1))
        self.joins = nn.ModuleList(_block(channels * (j + 2), channels * (j + 2), norm) for j in range(scales - 1))
        self.to_rgb = nn.Conv2d(channels * scales, 3, 1)

    def _inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image pyramid, coarsest first."""
        out = []
        for i in range(self.scales):
            ratio = 2 ** (self.scales - 1 - i)
            xi = F.avg_pool2d(x, ratio) if ratio > 1 else x
            if self.noise_channels:
                noise = torch.rand(xi.shape[0], self.noise_channels, *xi.shape[-2:], device=x.device, dtype=x.dtype)
                xi = torch.cat([xi, noise], dim=1)
            out.append(xi)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, size = pad_to_multiple(x, self.size_multiple, self.min_size)
        pyramid = self._inputs(padded)
        y = self.branches[0](pyramid[0])
        for j in range(self.scales - 1):
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            shallow = self.shallow_norms[j](self.branches[j + 1](pyramid[j + 1]))
            y = self.joins[j](torch.cat([self.deep_norms[j](y), shallow], dim=1))
        return crop_to(self.to_rgb(y), size, padded.shape[-2:])

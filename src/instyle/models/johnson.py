"""Johnson et al. (2016) residual generator with nearest-upsample decoding.

c9s1-32, d64, d128, 5×R128, u64, u32, c9s1-3 with reflection padding. Upsampling is nearest ×2
followed by a 3×3 conv (Odena et al.'s fix for the checkerboard of transposed convs). The output is
an unbounded RGB image in [0, 1] space: clamping in training would kill gradients, so inference
clamps instead. ``noise_channels`` > 0 makes it a generator g(x, z) of the diversity branch: that
many U(0, 1) noise channels are concatenated to the RGB input (``layers.with_noise``).
"""

from __future__ import annotations

import torch
from torch import nn

from instyle.models.layers import ConvNormAct, crop_to, pad_to_multiple, with_noise
from instyle.models.norms import make_norm


class ResidualBlock(nn.Module):
    """conv3-norm-ReLU-conv3-norm + identity; no ReLU after the sum (Gross & Wilber, as Johnson)."""

    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, norm=norm),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            make_norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = ConvNormAct(cin, cout, 3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(x))


class JohnsonNet(nn.Module):
    """The residual image transformation network; ``width`` scales every hidden layer."""

    size_multiple = 4
    min_size = 16  # room for the 9×9 reflection pads, down to 1×1 inputs

    def __init__(self, norm: str = "instance", width: float = 1.0, n_res: int = 5, noise_channels: int = 0):
        super().__init__()
        self.noise_channels = noise_channels
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        self.encoder = nn.Sequential(
            ConvNormAct(3 + noise_channels, c1, 9, norm=norm),
            ConvNormAct(c1, c2, 3, stride=2, norm=norm),
            ConvNormAct(c2, c3, 3, stride=2, norm=norm),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(c3, norm) for _ in range(n_res)))
        self.decoder = nn.Sequential(
            Upsample(c3, c2, norm=norm),
            Upsample(c2, c1, norm=norm),
            ConvNormAct(c1, 3, 9, norm=None, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, size = pad_to_multiple(with_noise(x, 3, self.noise_channels), self.size_multiple, self.min_size)
        y = self.decoder(self.residuals(self.encoder(padded)))
        return crop_to(y, size, padded.shape[-2:])

"""The generator as users see it, shared by inference and export."""

from __future__ import annotations

import torch
from torch import nn


class ClampedGenerator(nn.Module):
    """The generator as users see it: [0, 1] in, [0, 1] out (training leaves the output unbounded)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x).clamp(0.0, 1.0)

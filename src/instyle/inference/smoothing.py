"""Optional temporal smoothing of stylized video: keep the previous output where the input stood still.

Blending every output with the previous one would smear moving things into ghosts. Here the
blend weight is zero wherever the *input* changed between the two frames (by more than ``tau``
after a small blur that averages pixel noise away) and rises to ``alpha`` where it did not, so a
static background settles into a running average of its stylizations while anything that moves is
the plain per-frame output. It costs one blur and a few element-wise operations per frame, and
needs no optical flow. Off unless asked for (``instyle video --smooth ALPHA``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from instyle.core.errors import InstyleError


class TemporalBlend:
    """``out_t = m · out_{t-1} + (1 - m) · y_t`` with ``m = alpha · clamp(1 - d / tau, 0, 1)``, ``d`` the
    blurred mean absolute change of the input frame."""

    def __init__(self, alpha: float, tau: float = 0.04, blur: int = 5) -> None:
        if not 0.0 <= alpha < 1.0:
            raise InstyleError(f"--smooth must be at least 0 and below 1, got {alpha}")
        if tau <= 0 or blur < 1 or blur % 2 == 0:
            raise ValueError("tau must be positive and blur an odd number of pixels")
        self.alpha, self.tau, self.blur = alpha, tau, blur
        self._prev_in: torch.Tensor | None = None
        self._prev_out: torch.Tensor | None = None

    def weight(self, prev_in: torch.Tensor, cur_in: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W) blend weight of the previous output for one frame pair."""
        d = (cur_in - prev_in).abs().mean(dim=1, keepdim=True)
        d = F.avg_pool2d(d, self.blur, stride=1, padding=self.blur // 2, count_include_pad=False)
        # dilate the changed area by the blur too, so a moving edge's neighbours count as changed
        d = F.max_pool2d(d, self.blur, stride=1, padding=self.blur // 2)
        return self.alpha * (1 - d / self.tau).clamp_(0, 1)

    def __call__(self, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Smooth (N, 3, H, W) outputs of (N, 3, H, W) inputs, in order; batches chain to each other."""
        if self.alpha == 0:
            return outputs
        result = []
        for x, y in zip(inputs.split(1), outputs.split(1), strict=True):
            if self._prev_in is not None and self._prev_in.shape == x.shape:
                m = self.weight(self._prev_in, x)
                y = m * self._prev_out + (1 - m) * y
            self._prev_in, self._prev_out = x, y
            result.append(y)
        return torch.cat(result)

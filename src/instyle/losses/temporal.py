"""A stability term for video that needs no optical flow at test time.

A per-frame network flickers because consecutive video frames differ by a little sensor noise,
compression noise and a small motion, and the network answers such small input changes with
large output changes: strokes flip from one frame to the next. Huang et al. (2017, "Real-time
neural style transfer for videos") train against the flow-warped previous output; Gupta et al.
(2017, "Characterizing and improving stability in neural style transfer") show that a network
trained to give the same output for a noise-perturbed input is much more stable on video, with
no flow at test time. ReCoNet (Gao et al. 2018) compares flow-warped luminance instead of RGB, so
that lighting changes may alter the output; it needs flow of real video pairs while training.

This term simulates the frame-to-frame change on still training crops, so it needs neither
video nor flow: a second view of each crop, moved by a random integer shift of up to ``shift``
pixels (the motion; not a multiple of the generator's stride, so it is what a strided network
aliases) and with Gaussian pixel noise of standard deviation up to ``noise`` (the sensor and
codec noise), must stylize to the same pixels as the first view where the two views overlap.
The term is the mean squared difference there, in RGB, away from a ``margin`` where border
padding differs by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

STABILITY_MARGIN = 8  # px: border padding differs between the views by construction


@dataclass(frozen=True)
class ShiftedView:
    """Where the second view's pixels sit in the first: rows/columns ``[top, top + h)`` / ``[left, left + w)``."""

    top: int
    left: int
    height: int
    width: int


def shifted_view(x: Tensor, shift: int, generator: torch.Generator | None = None) -> tuple[Tensor, ShiftedView]:
    """A (N, C, H - 2·shift, W - 2·shift) crop of ``x`` moved by a random (dy, dx) in [-shift, shift]²
    from the centre, and where it lies in ``x``. ``shift`` 0 gives ``x`` itself."""
    h, w = x.shape[-2:]
    if shift < 0 or 2 * shift >= min(h, w):
        raise ValueError(f"shift {shift} does not fit a {h}x{w} crop")
    if shift == 0:
        return x, ShiftedView(0, 0, h, w)
    dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
    view = ShiftedView(shift + dy, shift + dx, h - 2 * shift, w - 2 * shift)
    return x[:, :, view.top : view.top + view.height, view.left : view.left + view.width], view


def overlap_error(y: Tensor, y_view: Tensor, view: ShiftedView, margin: int) -> Tensor:
    """Mean squared difference between the second view's output and the first's at the same pixels,
    ``margin`` pixels in from the second view's border (float32)."""
    if y_view.shape[-2:] != (view.height, view.width):
        raise ValueError(f"view output {tuple(y_view.shape[-2:])} is not {view.height}x{view.width}")
    if 2 * margin >= min(view.height, view.width):
        raise ValueError(f"margin {margin} leaves nothing of a {view.height}x{view.width} view")
    top, left = view.top + margin, view.left + margin
    a = y[:, :, top : top + view.height - 2 * margin, left : left + view.width - 2 * margin]
    b = y_view[:, :, margin : view.height - margin, margin : view.width - margin]
    with torch.autocast(device_type=y.device.type, enabled=False):
        return (a.float() - b.float()).pow(2).mean()


class StabilityLoss(nn.Module):
    """``weight`` · mean squared output change for a shifted, noisier second view of each crop.

    ``forward(net, x, y)`` runs ``net`` once more, on the second view, and returns the weighted
    term; gradients reach both views' outputs, so the network is pulled towards an output that
    depends less on the perturbation rather than towards either view's.
    """

    def __init__(self, weight: float, shift: int = 4, noise: float = 0.04, margin: int = STABILITY_MARGIN) -> None:
        super().__init__()
        if weight < 0 or shift < 0 or noise < 0 or margin < 0:
            raise ValueError("weight, shift, noise and margin must be non-negative")
        self.weight, self.shift, self.noise, self.margin = weight, shift, noise, margin

    def forward(self, net: Callable[[Tensor], Tensor], x: Tensor, y: Tensor,
                generator: torch.Generator | None = None) -> Tensor:
        """The weighted term for inputs ``x`` and their outputs ``y = net(x)``."""
        view_x, view = shifted_view(x, self.shift, generator)
        if self.noise:
            # a per-image noise level in [0, noise]: clean pairs (a static scene) count too
            sigma = torch.rand(len(x), 1, 1, 1, generator=generator, device="cpu").to(x.device) * self.noise
            eps = torch.randn(view_x.shape, generator=generator, device="cpu").to(x.device)
            view_x = (view_x + sigma * eps).clamp(0, 1)
        return self.weight * overlap_error(y, net(view_x), view, self.margin)

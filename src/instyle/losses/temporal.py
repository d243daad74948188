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
aliases) and with Gaussian noise of standard deviation up to ``noise`` (the sensor and codec
noise), must stylize to the same pixels as the first view where the two views overlap.
The term is the mean squared difference there, in RGB, away from a ``margin`` where border
padding differs by construction.

The noise is smooth over a length drawn per image, log-uniformly from 1 px (independent pixel
noise) to ``grain`` px. Why: measured on the single-row `starry-night` (``docs/video-stability-gain.md``),
the network answers independent pixel noise with 1.5x its size but noise of the same size that is
smooth over a few px (as codec blocks, demosaicing and denoisers leave it) with 3.5-3.9x, about
what the real frame-to-frame change of ``vtest.avi`` gets (3.6x); pixel noise alone trains the
network against the perturbation it already damps.
"""

from __future__ import annotations

import math
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


def grained_noise(shape: torch.Size | tuple[int, ...], grain: float,
                  generator: torch.Generator | None = None) -> Tensor:
    """(N, C, H, W) Gaussian noise of unit standard deviation per image, smooth over a length drawn
    log-uniformly from 1 to ``grain`` px per image: noise drawn on a grid that much coarser and
    resized bilinearly (``grain`` 1: independent pixel noise)."""
    if grain < 1:
        raise ValueError(f"grain {grain} is below 1 px")
    n, c, h, w = shape
    out = torch.randn(shape, generator=generator)
    lengths = torch.rand(n, generator=generator).mul(math.log(grain)).exp()
    for i, length in enumerate(lengths.tolist()):
        gh, gw = max(1, math.ceil(h / length)) + 1, max(1, math.ceil(w / length)) + 1
        if gh > h or gw > w:  # finer than the pixels: keep the pixel noise
            continue
        coarse = torch.randn((1, c, gh, gw), generator=generator)
        smooth = nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        out[i] = smooth[0] / smooth.std().clamp_min(1e-6)
    return out


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

    def __init__(self, weight: float, shift: int = 4, noise: float = 0.04, margin: int = STABILITY_MARGIN,
                 grain: float = 1.0) -> None:
        super().__init__()
        if weight < 0 or shift < 0 or noise < 0 or margin < 0:
            raise ValueError("weight, shift, noise and margin must be non-negative")
        if grain < 1:
            raise ValueError(f"grain {grain} is below 1 px")
        self.weight, self.shift, self.noise, self.margin, self.grain = weight, shift, noise, margin, grain

    def forward(self, net: Callable[[Tensor], Tensor], x: Tensor, y: Tensor,
                generator: torch.Generator | None = None) -> Tensor:
        """The weighted term for inputs ``x`` and their outputs ``y = net(x)``."""
        view_x, view = shifted_view(x, self.shift, generator)
        if self.noise:
            # a per-image noise level in [0, noise]: clean pairs (a static scene) count too
            sigma = torch.rand(len(x), 1, 1, 1, generator=generator, device="cpu").to(x.device) * self.noise
            eps = (grained_noise(view_x.shape, self.grain, generator) if self.grain > 1
                   else torch.randn(view_x.shape, generator=generator, device="cpu")).to(x.device)
            view_x = (view_x + sigma * eps).clamp(0, 1)
        return self.weight * overlap_error(y, net(view_x), view, self.margin)

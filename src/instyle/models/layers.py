"""Building blocks shared by the generators."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instyle.core.padding import padding_for
from instyle.models.norms import make_norm


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes a spatial convolution to few channels (RGB) in channels-last
    layout on the CPU: same parameters, same function, another memory order for oneDNN.

    oneDNN's NCHW kernels handle an output of 3 channels badly. On a 2-core Zen 3, fp32, the 9x9
    convolution from 32 channels to RGB (johnson's last layer) took 1.39 s forward and backward at
    256², batch 4, and 0.41 s in channels-last, conversions included (3.4x; from 16 channels,
    johnson-half: 4.9x); at 1920x1080 inference 1.61x and 1.82x (``benchmarks/layouts.py``). The
    whole training step ran 1.16-1.20x faster. Convolutions *from* RGB and 1x1 convolutions to RGB lose
    in inference, so only a thin output of a kernel wider than 1 switches, and only plain fp32 on
    the CPU: bf16, autocast and GPUs are unmeasured.
    """

    thin_limit = 4  # at most this many output channels counts as thin

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.thin_output_layout = self.out_channels <= self.thin_limit and max(self.kernel_size) > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.thin_output_layout and x.device.type == "cpu" and x.dtype == torch.float32
                and x.is_contiguous() and not torch.is_autocast_enabled("cpu")):
            return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return super().forward(x)


class ConvNormAct(nn.Sequential):
    """Padded conv (+ norm) (+ ReLU). Explicit padding so borders follow the chosen mode."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        *,
        stride: int = 1,
        norm: str | None = "instance",
        act: bool = True,
        pad_mode: str = "reflect",
    ):
        pad = kernel // 2
        layers: list[nn.Module] = []
        if pad:
            layers.append(nn.ReflectionPad2d(pad) if pad_mode == "reflect" else nn.ReplicationPad2d(pad))
        layers.append(Conv2d(cin, cout, kernel, stride=stride))
        if norm is not None:
            layers.append(make_norm(norm, cout))
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 16) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to a multiple and at least ``min_size`` (reflection where possible).

    Every image size then works, down to 1×1: the 9×9 reflection pads inside need some room.
    """
    h, w = x.shape[-2:]
    amounts, mode = padding_for(h, w, multiple, min_size)
    if not any(amounts):
        return x, (h, w)
    return F.pad(x, amounts, mode=mode), (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    """Undo ``pad_to_multiple``: ``padded`` is the (H, W) the network saw."""
    h, w = size
    ph, pw = padded[0] - h, padded[1] - w
    if ph == 0 and pw == 0:
        return x
    return x[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]


def with_noise(x: torch.Tensor, image_channels: int, noise_channels: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The input of a generator g(x, z) (the diversity branch of texture_nets): the image with
    ``noise_channels`` of U(0, 1) noise concatenated, or ``x`` unchanged if it already carries them.

    Callers that must be reproducible (training, ``Stylizer`` with a seed) concatenate the noise
    themselves; a plain (N, 3, H, W) call draws it here from ``generator`` or the global CPU RNG
    (on the CPU, so a seed gives the same noise on every device)."""
    if not noise_channels:
        return x
    if x.shape[1] == image_channels + noise_channels:
        return x
    if x.shape[1] != image_channels:
        raise ValueError(f"expected {image_channels} image channels (+ {noise_channels} noise), got {x.shape[1]}")
    z = torch.rand(x.shape[0], noise_channels, *x.shape[-2:], generator=generator)
    return torch.cat([x, z.to(x.device, x.dtype)], dim=1)


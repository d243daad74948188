"""Building blocks shared by the generators."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from instyle.models.norms import make_norm


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
        layers.append(nn.Conv2d(cin, cout, kernel, stride=stride))
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
    th = max(min_size, -(-h // multiple) * multiple)
    tw = max(min_size, -(-w // multiple) * multiple)
    th, tw = -(-th // multiple) * multiple, -(-tw // multiple) * multiple
    ph, pw = th - h, tw - w
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode), (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    """Undo ``pad_to_multiple``: ``padded`` is the (H, W) the network saw."""
    h, w = size
    ph, pw = padded[0] - h, padded[1] - w
    if ph == 0 and pw == 0:
        return x
    return x[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]

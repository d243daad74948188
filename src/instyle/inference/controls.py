"""Artistic controls applied around the generator: strength, colour preservation, stroke scale.

All work on (N, 3, H, W) tensors in [0, 1] so images, video frames and the web app share them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ITU-R BT.601 full-range (JPEG) luma/chroma, the same transform Pillow's YCbCr mode uses.
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC2RGB = torch.linalg.inv(_RGB2YCC)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _RGB2YCC.to(x), x)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _YCC2RGB.to(x), x)


def preserve_color(stylized: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """Luminance from the stylized image, chroma from the photo (Gatys et al. 2016, 'colour preservation')."""
    y = rgb_to_ycbcr(stylized)[:, :1]
    cbcr = rgb_to_ycbcr(photo)[:, 1:]
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1)).clamp(0, 1)


def check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")


def blend(stylized: torch.Tensor, photo: torch.Tensor, strength: float) -> torch.Tensor:
    """``strength`` 0 gives the photo back, 1 the full stylization."""
    check_strength(strength)
    return torch.lerp(photo, stylized, strength)


def check_scale(scale: float) -> None:
    if not 0.1 <= scale <= 8.0:
        raise ValueError(f"scale must be between 0.1 and 8, got {scale}")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-averaging when shrinking (no aliasing), bicubic when enlarging."""
    if tuple(x.shape[-2:]) == size:
        return x
    shrinking = size[0] * size[1] < x.shape[-2] * x.shape[-1]
    if shrinking:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """Stroke scale s means the network sees the image 1/s as large, so strokes come out s× larger."""
    return max(8, round(h / scale)), max(8, round(w / scale))

"""Image similarity, one definition for every comparison (backend checks, tiling, the demo gallery)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np


def psnr(a: Any, b: Any, peak: float = 1.0) -> float:
    """PSNR in dB between two images (tensors or arrays of the same shape, values up to ``peak``);
    ``inf`` when identical."""
    x = a.detach().float().cpu().numpy() if hasattr(a, "detach") else np.asarray(a, dtype=np.float32)
    y = b.detach().float().cpu().numpy() if hasattr(b, "detach") else np.asarray(b, dtype=np.float32)
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def luma(img: Any) -> np.ndarray:
    """(H, W) BT.601 luminance of an (H, W, 3) array in [0, 1] or a (3, H, W) tensor."""
    if hasattr(img, "detach"):
        img = img.detach().float().cpu().numpy().transpose(1, 2, 0)
    x = np.asarray(img, dtype=np.float64)
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def gaussian_blur(y: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of a 2-D array (in the Fourier domain, edges reflected so nothing wraps)."""
    pad = math.ceil(3 * sigma)
    big = np.pad(y, pad, mode="reflect")
    fy = np.fft.fftfreq(big.shape[0])[:, None]
    fx = np.fft.rfftfreq(big.shape[1])[None, :]
    kernel = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fx**2 + fy**2))
    out = np.fft.irfft2(np.fft.rfft2(big) * kernel, s=big.shape)
    return out[pad : pad + y.shape[0], pad : pad + y.shape[1]]


def high_frequency_energy(img: Any) -> float:
    """Mean squared luminance detail finer than about 4 px (the image minus its σ = 1 px blur):
    what a down-and-up resize removes, so it tells a crisp result from a soft one."""
    y = luma(img)
    return float(np.mean((y - gaussian_blur(y, 1.0)) ** 2))


def correlation_length(stylized: Any, photo: Any, detrend_sigma: float = 24.0, level: float = 0.5) -> float:
    """Stroke size in pixels: the distance at which the autocorrelation of what the stylization
    added (luminance residual against the photo, with its broad shifts above ``detrend_sigma`` px
    removed) falls to ``level``. Larger brush strokes keep the residual alike over longer distances."""
    r = luma(stylized) - luma(photo)
    r = r - gaussian_blur(r, detrend_sigma)
    h, w = r.shape
    spec = np.fft.rfft2(r, s=(2 * h, 2 * w))  # zero-padded: no wrap-around correlation
    auto = np.fft.irfft2(np.abs(spec) ** 2, s=(2 * h, 2 * w))
    if auto[0, 0] <= 0:
        return 0.0
    auto = auto / auto[0, 0]
    limit = min(h, w) // 4
    dy = np.minimum(np.arange(2 * h), 2 * h - np.arange(2 * h))[:, None]
    dx = np.minimum(np.arange(2 * w), 2 * w - np.arange(2 * w))[None, :]
    radius = np.sqrt(dy**2 + dx**2)
    ring = np.rint(radius).astype(int)
    inside = ring <= limit
    sums = np.bincount(ring[inside], weights=auto[inside], minlength=limit + 1)
    counts = np.bincount(ring[inside], minlength=limit + 1)
    profile = sums / np.maximum(counts, 1)
    below = np.nonzero(profile < level)[0]
    if not len(below):
        return float(limit)
    k = int(below[0])
    a, b = profile[k - 1], profile[k]
    return float(k - 1 + (a - level) / (a - b)) if a != b else float(k)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), as the experiment reports quote them."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

"""Image similarity, one definition for every comparison (backend checks, tiling, the demo gallery)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def psnr(a: Any, b: Any, peak: float = 1.0) -> float:
    """PSNR in dB between two images (tensors or arrays of the same shape, values up to ``peak``);
    ``inf`` when identical."""
    x = a.detach().float().cpu().numpy() if hasattr(a, "detach") else np.asarray(a, dtype=np.float32)
    y = b.detach().float().cpu().numpy() if hasattr(b, "detach") else np.asarray(b, dtype=np.float32)
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)

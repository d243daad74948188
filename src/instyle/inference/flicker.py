"""Flicker that motion does not explain: the warped frame-to-frame error of a stylized video.

The plain frame-change numbers of ``instyle.inference.video.Flicker`` count motion as flicker:
a walking person changes the output as much as a stroke that flips. Here each stylized frame is
compared with the previous stylized frame *moved by the motion of the input frames*: dense
optical flow of the input (OpenCV's DIS, a classical method, from ``opencv-python-headless``)
warps output ``t-1`` onto frame ``t``, and only pixels whose flow passes a forward-backward check
count (occlusions, disocclusions and frame borders fail it; the check is the one of Sundaram et
al. 2010, used for the same purpose by Ruder et al. 2016's video style transfer). What is left is
change the motion does not explain: flicker. The same error of the input frames themselves is
the floor (flow error, noise), so the output's error is also given relative to it.

Flow is needed only to measure; nothing at run time uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from instyle.core.errors import InstyleError


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise InstyleError("the warped flicker metric needs OpenCV: pip install 'instyle[video-metrics]'") from None
    return cv2


def _gray(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 luminance (flow runs on it)."""
    return _cv2().cvtColor(frame, _cv2().COLOR_RGB2GRAY)


def dense_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow from uint8 frame ``a`` to ``b``: ``a[p] ≈ b[p + flow[p]]`` (x, y order)."""
    cv2 = _cv2()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray(a), _gray(b), None)


def warp(img: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``img`` sampled at ``p + flow[p]`` (bilinear), and where that point lies inside the frame."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    out = cv2.remap(img, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return out, inside


def reliable(back: np.ndarray, fwd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of frame ``t`` whose backward flow (``t -> t-1``) the forward flow (``t-1 -> t``) undoes.

    Forward-backward check: at ``q = p + back[p]`` the forward flow should point back to ``p``, so
    ``|back + fwd(q)|² <= 0.01 (|back|² + |fwd(q)|²) + 0.5`` (px²); the rest is occluded, newly
    visible or mismatched. Returns the mask and ``fwd(q)``."""
    fwd_at, inside = warp(fwd, back)
    err = ((back + fwd_at) ** 2).sum(-1)
    bound = 0.01 * ((back**2).sum(-1) + (fwd_at**2).sum(-1)) + 0.5
    return (err <= bound) & inside, fwd_at


@dataclass
class PairError:
    """One frame pair: mean |f_t - warp(f_{t-1})| over reliable pixels (``input``, ``output``), the plain
    mean |f_t - f_{t-1}| over all pixels (``change_in``, ``change_out``: what ``instyle video`` prints)."""

    input: float
    output: float
    change_in: float
    change_out: float
    reliable: float  # fraction of pixels that passed the check


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(-1) / 255.0


def pair_error(prev_in: np.ndarray, cur_in: np.ndarray, prev_out: np.ndarray, cur_out: np.ndarray) -> PairError:
    """Warped error of one frame pair (uint8 (H, W, 3) frames, output the size of the input)."""
    back = dense_flow(cur_in, prev_in)
    fwd = dense_flow(prev_in, cur_in)
    mask, _ = reliable(back, fwd)
    change_in, change_out = float(_abs_diff(cur_in, prev_in).mean()), float(_abs_diff(cur_out, prev_out).mean())
    if not mask.any():
        return PairError(0.0, 0.0, change_in, change_out, 0.0)

    def err(prev: np.ndarray, cur: np.ndarray) -> float:
        return float(_abs_diff(cur, warp(prev, back)[0])[mask].mean())

    return PairError(err(prev_in, cur_in), err(prev_out, cur_out), change_in, change_out, float(mask.mean()))


@dataclass
class WarpedFlicker:
    """Running warped frame-to-frame error over a video; feed (input, output) frames in order."""

    pairs: list[PairError] = field(default_factory=list)
    _last: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, inputs: torch.Tensor | np.ndarray, outputs: torch.Tensor | np.ndarray) -> None:
        """(N, 3, H, W) float tensors in [0, 1] or (N, H, W, 3) uint8 arrays; batches chain to each other."""
        for a, b in zip(_uint8_frames(inputs), _uint8_frames(outputs), strict=True):
            if a.shape != b.shape:
                raise InstyleError(f"input frame {a.shape[1]}x{a.shape[0]} and output {b.shape[1]}x{b.shape[0]} "
                                   "differ in size")
            if self._last is not None:
                self.pairs.append(pair_error(self._last[0], a, self._last[1], b))
            self._last = (a, b)

    def _mean(self, key: str) -> float:
        return float(np.mean([getattr(p, key) for p in self.pairs])) if self.pairs else 0.0

    @property
    def input(self) -> float:
        return self._mean("input")

    @property
    def output(self) -> float:
        return self._mean("output")

    @property
    def reliable(self) -> float:
        return self._mean("reliable")

    @property
    def ratio(self) -> float:
        """Output warped error over the input's: 1 = no flicker beyond what the input's own warp leaves."""
        return self.output / self.input if self.input > 1e-9 else float("nan")

    @property
    def change_ratio(self) -> float:
        """The plain frame-change ratio (output over input), motion included."""
        change_in = self._mean("change_in")
        return self._mean("change_out") / change_in if change_in > 1e-9 else float("nan")

    def summary(self) -> str:
        return (f"warped flicker: input {self.input:.5f}, output {self.output:.5f}, ratio {self.ratio:.3f} "
                f"({self.reliable:.0%} of pixels with reliable flow, {len(self.pairs)} pairs)")


def _uint8_frames(frames: torch.Tensor | np.ndarray) -> Iterator[np.ndarray]:
    if isinstance(frames, torch.Tensor):
        arr = frames.detach().float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()
        frames = arr.numpy()
    for f in frames:
        yield np.ascontiguousarray(f)

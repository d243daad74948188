"""The warped flicker metric on a synthetic clip with known motion, and the smoothing option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("cv2", reason="the warped flicker metric needs the 'video-metrics' extra (OpenCV)")

from instyle.inference.flicker import WarpedFlicker, dense_flow, reliable, warp


def translating_clip(n: int = 6, w: int = 96, h: int = 72, step: int = 2, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8 frames of one smooth random texture moving ``step`` px right per frame."""
    rng = np.random.default_rng(seed)
    big = rng.random((h // 4, (w + n * step) // 4 + 2, 3)).astype(np.float32)
    import cv2

    big = cv2.resize(big, (big.shape[1] * 4, big.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), 1.5)
    big = (np.clip(big, 0, 1) * 255).astype(np.uint8)
    return np.stack([big[:h, n * step - i * step : n * step - i * step + w] for i in range(n)])


def test_flow_finds_the_known_motion() -> None:
    clip = translating_clip(step=3)
    fwd = dense_flow(clip[0], clip[1])  # frame 0 -> 1: content moves 3 px right
    inner = fwd[10:-10, 10:-10]
    assert np.median(inner[..., 0]) == pytest.approx(3.0, abs=0.3)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.3)
    back = dense_flow(clip[1], clip[0])
    mask, _ = reliable(back, fwd)
    assert mask[10:-10, 10:-10].mean() > 0.9
    assert not mask[:, :2].any()  # newly visible on the left: nothing to warp from
    warped, _ = warp(clip[0], back)
    diff = np.abs(warped.astype(float) - clip[1].astype(float))[mask].mean()
    assert diff < 3.0  # grey levels


def test_warped_error_is_zero_for_consistent_and_large_for_noisy_stylization() -> None:
    clip = translating_clip()
    identity = WarpedFlicker()
    identity.update(clip, clip)
    assert len(identity.pairs) == len(clip) - 1
    assert identity.ratio == pytest.approx(1.0)
    # a fixed colour map is as consistent as the identity: still motion only
    mapped = WarpedFlicker()
    mapped.update(clip, 255 - clip)
    assert mapped.output == pytest.approx(identity.output, rel=0.05)
    noisy = WarpedFlicker()
    rng = np.random.default_rng(1)
    jitter = np.clip(clip + rng.normal(0, 20, clip.shape), 0, 255).astype(np.uint8)
    noisy.update(clip, jitter)
    assert noisy.output > 5 * identity.output
    assert noisy.ratio > 5
    # motion alone makes the plain frame-change ratio of a consistent stylization ~1, not 0
    assert identity.change_ratio == pytest.approx(1.0)
    assert identity.input < 0.2 * identity.pairs[0].change_in


def test_batches_chain_and_tensors_work() -> None:
    clip = translating_clip()
    whole = WarpedFlicker()
    whole.update(clip, clip)
    parts = WarpedFlicker()
    t = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
    parts.update(t[:2], t[:2])
    parts.update(t[2:], t[2:])
    assert len(parts.pairs) == len(whole.pairs)
    assert parts.output == pytest.approx(whole.output, abs=1e-6)


def test_smoothing_steadies_still_areas_and_leaves_moving_ones_alone() -> None:
    from instyle.inference.smoothing import TemporalBlend

    g = torch.Generator().manual_seed(0)
    n, h, w = 10, 40, 60
    x = torch.full((n, 3, h, w), 0.4)
    for i in range(n):  # a bright square moving 4 px a frame over a still background
        x[i, :, 10:20, 4 * i + 5 : 4 * i + 15] = 0.9
    plain = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)  # a flickering "stylization"
    out = TemporalBlend(0.8)(x, plain)
    still = (slice(None), slice(None), slice(28, 40), slice(None))
    assert (out[1:] - out[:-1])[still].abs().mean() < 0.6 * (plain[1:] - plain[:-1])[still].abs().mean()
    moved = (x[1:] - x[:-1]).abs().amax(1, keepdim=True).expand(-1, 3, -1, -1) > 0.1
    assert torch.equal(out[1:][moved], plain[1:][moved])  # no ghost where the input changed
    assert torch.equal(out[0], plain[0])
    # batches chain like one call
    blend = TemporalBlend(0.8)
    assert torch.allclose(torch.cat([blend(x[:3], plain[:3]), blend(x[3:], plain[3:])]), out)
    assert torch.equal(TemporalBlend(0.0)(x, plain), plain)

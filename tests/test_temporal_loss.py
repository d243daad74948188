"""The video-stability term: zero for a network that commutes with the shift, positive for one that
aliases it, gradients to the network, shapes and shift ranges checked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from instyle.losses.temporal import StabilityLoss, grained_noise, overlap_error, shifted_view


def test_view_lies_where_it_says() -> None:
    x = torch.arange(2 * 3 * 20 * 24, dtype=torch.float32).reshape(2, 3, 20, 24)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        v, where = shifted_view(x, 3, g)
        assert v.shape == (2, 3, 14, 18)
        assert 0 <= where.top <= 6 and 0 <= where.left <= 6
        torch.testing.assert_close(v, x[:, :, where.top : where.top + 14, where.left : where.left + 18])
    same, where = shifted_view(x, 0)
    assert same is x and (where.height, where.width) == (20, 24)
    with pytest.raises(ValueError, match="does not fit"):
        shifted_view(x, 10)


def test_pointwise_network_is_perfectly_stable_and_a_strided_one_is_not() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 48)
    pointwise = nn.Conv2d(3, 3, 1)  # commutes with any shift: nothing to penalise without noise
    term = StabilityLoss(1.0, shift=4, noise=0.0, margin=4)
    assert term(pointwise, x, pointwise(x), torch.Generator().manual_seed(1)).item() == pytest.approx(0.0, abs=1e-10)

    def strided(t: torch.Tensor) -> torch.Tensor:  # subsample by 4 and back: shifts not of 4 px alias
        return F.interpolate(t[:, :, ::4, ::4], scale_factor=4, mode="nearest")

    values = [term(strided, x, strided(x), torch.Generator().manual_seed(s)).item() for s in range(8)]
    assert max(values) > 1e-2
    noisy = StabilityLoss(1.0, shift=0, noise=0.1, margin=4)
    assert noisy(pointwise, x, pointwise(x), torch.Generator().manual_seed(2)).item() > 0  # noise alone counts


def test_weight_scales_and_gradients_reach_the_network() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
                        nn.Conv2d(8, 3, 3, padding=1))
    x = torch.rand(2, 3, 32, 32)
    one = StabilityLoss(1.0, shift=3, noise=0.05)(net, x, net(x), torch.Generator().manual_seed(3))
    ten = StabilityLoss(10.0, shift=3, noise=0.05)(net, x, net(x), torch.Generator().manual_seed(3))
    assert ten.item() == pytest.approx(10 * one.item(), rel=1e-5) and one.item() > 0
    ten.backward()
    # every weight moves (the last bias cannot: it shifts both views alike)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters() if p.dim() > 1)


def _neighbour_correlation(e: torch.Tensor) -> torch.Tensor:
    """Per image, the correlation of each pixel's noise with its right neighbour's."""
    a, b = e[..., :, 1:].flatten(1), e[..., :, :-1].flatten(1)
    return torch.stack([torch.corrcoef(torch.stack([x, y]))[0, 1] for x, y in zip(a, b, strict=True)])


def test_grained_noise_has_unit_size_and_the_grain_it_is_asked_for() -> None:
    """Grain 1 is independent pixel noise; a larger grain draws, per image, noise smooth over 1 to
    ``grain`` px: neighbours from uncorrelated (the short end) to nearly equal (the long end)."""
    g = torch.Generator().manual_seed(0)
    pixel = grained_noise((32, 3, 64, 64), 1.0, g)
    assert pixel.shape == (32, 3, 64, 64)
    assert _neighbour_correlation(pixel).abs().max() < 0.05
    grained = grained_noise((32, 3, 64, 64), 16.0, g)
    torch.testing.assert_close(grained.flatten(1).std(1), torch.ones(32), atol=2e-2, rtol=0)
    corr = _neighbour_correlation(grained)
    assert corr.median() > 0.7 and corr.max() > 0.95 and corr.min() < 0.6
    with pytest.raises(ValueError, match="below 1 px"):
        grained_noise((1, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match="below 1 px"):
        StabilityLoss(1.0, grain=0.5)


def test_grained_noise_is_what_a_pointwise_network_sees_and_a_smoothing_one_does_not_remove() -> None:
    """A blur damps pixel noise far more than grained noise of the same size: the reason the term
    draws grain (a network that smooths passes the grained change through, so training must see it)."""
    torch.manual_seed(0)
    x = torch.rand(8, 3, 48, 48) * 0.5 + 0.25
    blur = nn.Conv2d(3, 3, 5, padding=2, groups=3, bias=False)
    nn.init.constant_(blur.weight, 1 / 25)
    with torch.no_grad():
        pixel = StabilityLoss(1.0, shift=0, noise=0.1, margin=4)(blur, x, blur(x), torch.Generator().manual_seed(4))
        grained = StabilityLoss(1.0, shift=0, noise=0.1, margin=4, grain=16.0)(
            blur, x, blur(x), torch.Generator().manual_seed(4))
    assert grained.item() > 3 * pixel.item() > 0


def test_overlap_checks_shapes() -> None:
    x = torch.rand(1, 3, 32, 32)
    v, where = shifted_view(x, 2, torch.Generator().manual_seed(0))
    assert overlap_error(x, v, where, margin=3).item() == 0.0
    with pytest.raises(ValueError, match="is not"):
        overlap_error(x, v[..., 1:], where, margin=3)
    with pytest.raises(ValueError, match="leaves nothing"):
        overlap_error(x, v, where, margin=14)
    with pytest.raises(ValueError, match="non-negative"):
        StabilityLoss(-1.0)

"""Inference rewrites compute the same function as the network they rewrite."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from instyle.fast import sample_image
from instyle.models import create_model
from instyle.models.norms import set_style_index
from instyle.rewrite import SubpixelUpConv, ThinConv2d, fold_upsampling, widen_thin_convs


def _trained_like(arch: str, styles: int = 1) -> nn.Module:
    """Random weights moved off their init (zero biases and U(0, 1) scales would hide mistakes)."""
    torch.manual_seed(0)
    net = create_model(arch, norm="instance", styles=styles).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


@pytest.mark.parametrize("arch", ["johnson", "johnson-half"])
@pytest.mark.parametrize("size", [(40, 56), (33, 47), (16, 16)])
def test_folded_upsampling_is_the_same_function(arch: str, size: tuple[int, int]) -> None:
    net = _trained_like(arch)
    folded = fold_upsampling(copy.deepcopy(net))
    assert sum(isinstance(m, SubpixelUpConv) for m in folded.modules()) == 2
    assert not any(isinstance(m, nn.Upsample) for m in folded.modules())
    x = sample_image(size, n=2)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=0, atol=5e-5)


def test_folded_upsampling_keeps_several_styles() -> None:
    net = _trained_like("johnson-half", styles=3)
    folded = fold_upsampling(copy.deepcopy(net))
    x = sample_image((32, 48), n=3)
    for model in (net, folded):
        set_style_index(model, torch.tensor([2, 0, 1]))
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=0, atol=5e-5)


def test_only_plain_3x3_convolutions_fold() -> None:
    with pytest.raises(ValueError, match="3x3"):
        SubpixelUpConv(nn.Conv2d(4, 4, 5))
    with pytest.raises(ValueError, match="3x3"):
        SubpixelUpConv(nn.Conv2d(4, 4, 3, stride=2))


def test_widened_thin_convs_compute_the_same_function() -> None:
    """The CUDA fp16 paths pad the 3-channel convolutions with zero channels: exact, not approximate."""
    plain = _trained_like("johnson")
    widened = widen_thin_convs(copy.deepcopy(plain))
    thin = [m for m in widened.modules() if isinstance(m, ThinConv2d)]
    assert len(thin) == 2, "the 9x9 convolutions from and to RGB"
    assert all(m.conv.in_channels % 8 == 0 and m.conv.out_channels % 8 == 0 for m in thin)
    x = sample_image((40, 56), n=2)
    with torch.no_grad():
        torch.testing.assert_close(widened(x), plain(x), rtol=0, atol=1e-5)



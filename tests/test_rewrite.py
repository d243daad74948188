"""Inference rewrites compute the same function as the network they rewrite."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from instyle.inference.backends import sample_image
from instyle.inference.rewrites import (
    GatherUpConv,
    Nearest2x,
    SpaceToDepthConv,
    SubpixelUpConv,
    ThinConv2d,
    fold_upsampling,
    index_upsampling,
    space_to_depth_convs,
    widen_thin_convs,
)
from instyle.models import create_model
from instyle.models.norms import set_style_index


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


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (40, 56)])
def test_index_upsampling_is_bit_identical(size: tuple[int, int]) -> None:
    x = torch.randn(2, 5, *size)
    assert torch.equal(Nearest2x()(x), nn.Upsample(scale_factor=2, mode="nearest")(x))
    net = _trained_like("johnson-half")
    rewritten = index_upsampling(copy.deepcopy(net))
    assert sum(isinstance(m, GatherUpConv) for m in rewritten.modules()) == 2
    assert not any(isinstance(m, nn.Upsample) for m in rewritten.modules())
    plain = index_upsampling(nn.Sequential(nn.Upsample(scale_factor=2), nn.Upsample(scale_factor=3),
                                           nn.Upsample(scale_factor=2, mode="bilinear")))
    assert [type(m).__name__ for m in plain] == ["Nearest2x", "Upsample", "Upsample"]  # other factors, modes stay
    for image in (sample_image((36, 44), n=2), sample_image((16, 20)), sample_image((4, 4))):
        with torch.no_grad():
            assert torch.equal(rewritten(image), net(image))


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




@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("kernel", [(9, 9), (3, 5)])
@pytest.mark.parametrize("size", [(37, 41), (24, 24), (9, 12)])
def test_space_to_depth_conv_is_the_same_convolution(factor: int, kernel: tuple[int, int],
                                                      size: tuple[int, int]) -> None:
    torch.manual_seed(factor)
    conv = nn.Conv2d(6, 3, kernel).double()
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(SpaceToDepthConv(conv, factor)(x), conv(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("inputs", [False, True])
def test_space_to_depth_rewrite_of_the_johnson_net(inputs: bool) -> None:
    net = _trained_like("johnson")
    rewritten = space_to_depth_convs(copy.deepcopy(net), 2, inputs=inputs)
    s2d = [m for m in rewritten.modules() if isinstance(m, SpaceToDepthConv)]
    assert [m.conv.out_channels for m in s2d] == ([128, 12] if inputs else [12]), "the 9x9 convs from/to RGB"
    widen_thin_convs(rewritten)  # the CUDA paths widen afterwards: 12 channels become 16
    assert all(isinstance(m.conv, ThinConv2d) and m.conv.conv.in_channels % 8 == m.conv.conv.out_channels % 8 == 0
               for m in s2d)
    x = sample_image((44, 52), n=2)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), net(x), rtol=0, atol=5e-5)


def test_space_to_depth_needs_a_plain_convolution() -> None:
    with pytest.raises(ValueError, match="stride-1"):
        SpaceToDepthConv(nn.Conv2d(3, 3, 9, stride=2))
    with pytest.raises(ValueError, match="unpadded"):
        SpaceToDepthConv(nn.Conv2d(3, 3, 9, padding=4))

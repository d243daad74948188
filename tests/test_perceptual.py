"""Perceptual loss terms against hand computations, and the PerceptualLoss module's contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instyle.core.errors import InstyleError
from instyle.losses.perceptual import (
    PRESETS,
    LossConfig,
    PerceptualLoss,
    content_distance,
    get_preset,
    gram_matrix,
    optimize_image,
    style_distance,
    total_variation,
)
from instyle.losses.vgg import VGG16Features


def _gram_loops(f: np.ndarray) -> np.ndarray:
    n, c, h, w = f.shape
    g = np.zeros((n, c, c))
    for b in range(n):
        for i in range(c):
            for j in range(c):
                g[b, i, j] = sum(f[b, i, y, x] * f[b, j, y, x] for y in range(h) for x in range(w))
    return g / (c * h * w)


def test_gram_matches_explicit_loops() -> None:
    f = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    got = gram_matrix(f)
    assert got.shape == (2, 3, 3) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), _gram_loops(f.double().numpy()), rtol=1e-5, atol=1e-6)


def test_gram_is_float32_under_bf16_autocast() -> None:
    f = torch.randn(1, 8, 16, 16) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gram_matrix(f.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, gram_matrix(f.bfloat16().float()))


def test_style_distance_by_hand() -> None:
    g = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (1, C, C) broadcast over the batch
    # squared errors: image 0 -> 0, 4, 9, 4; image 1 -> 1, 0, 0, 4; mean over 8 entries
    assert style_distance(g, target).item() == pytest.approx((0 + 4 + 9 + 4 + 1 + 0 + 0 + 4) / 8)


def test_content_distance_by_hand() -> None:
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    b = torch.tensor([[[[1.0, 0.0], [0.0, 4.0]]]])
    assert content_distance(a, b).item() == pytest.approx((0 + 4 + 9 + 0) / 4)


def test_total_variation_by_hand() -> None:
    img = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0]]).view(1, 1, 3, 3)
    # vertical neighbours: (0,-1,2), (1,1,-1) -> squares 0,1,4,1,1,1 -> mean 8/6
    # horizontal neighbours: (1,-1), (0,2), (0,0) -> squares 1,1,0,4,0,0 -> mean 6/6
    assert total_variation(img).item() == pytest.approx(8 / 6 + 6 / 6)
    assert total_variation(torch.full((2, 3, 5, 5), 0.3)).item() == 0.0


def test_loss_config_round_trips_through_json() -> None:
    cfg = get_preset("johnson")
    again = LossConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match="bogus"):
        LossConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_presets_layers_and_copies() -> None:
    assert list(PRESETS["johnson"].content_layers) == ["relu3_3"]
    assert list(PRESETS["johnson"].style_layers) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert list(PRESETS["ulyanov"].content_layers) == ["relu4_2"]
    assert list(PRESETS["ulyanov"].style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    cfg = get_preset("johnson")
    cfg.style_weight = -1
    assert PRESETS["johnson"].style_weight > 0
    with pytest.raises(InstyleError, match="johnson, ulyanov"):
        get_preset("nope")


@pytest.fixture(scope="module")
def small_loss() -> PerceptualLoss:
    cfg = LossConfig(
        content_layers={"relu2_2": 1.0},
        style_layers={"relu1_2": 0.5, "relu2_1": 2.0},
        content_weight=3.0,
        style_weight=7.0,
        tv_weight=0.25,
    )
    loss = PerceptualLoss(cfg, weights="random")
    loss.set_style(torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(1)))
    return loss


def test_forward_matches_manual_terms(small_loss: PerceptualLoss) -> None:
    gen = torch.Generator().manual_seed(2)
    out, content = torch.rand(2, 3, 16, 16, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)
    style = small_loss.style_targets()
    fo, fc = small_loss.vgg(out), small_loss.vgg(content)
    want_content = 3.0 * torch.mean((fo["relu2_2"] - fc["relu2_2"]) ** 2)
    want_style = 7.0 * sum(
        w * torch.mean((gram_matrix(fo[name]) - style[name][0]) ** 2)
        for name, w in {"relu1_2": 0.5, "relu2_1": 2.0}.items()
    )
    want_tv = 0.25 * total_variation(out)
    got = small_loss(out, content)
    torch.testing.assert_close(got["content"], want_content)
    torch.testing.assert_close(got["style"], want_style)
    torch.testing.assert_close(got["tv"], want_tv)
    torch.testing.assert_close(got["total"], want_content + want_style + want_tv)
    assert set(got) >= {"detail/content/relu2_2", "detail/style/relu1_2", "detail/style/relu2_1"}


def test_gradients_reach_output_not_content(small_loss: PerceptualLoss) -> None:
    out = torch.rand(1, 3, 16, 16, requires_grad=True)
    content = torch.rand(1, 3, 16, 16, requires_grad=True)
    small_loss(out, content)["total"].backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert content.grad is None
    assert all(not p.requires_grad for p in small_loss.parameters())


def test_style_targets_are_buffers(small_loss: PerceptualLoss) -> None:
    names = {n for n, _ in small_loss.named_buffers()}
    assert {"style_gram_relu1_2", "style_gram_relu2_1"} <= names
    assert small_loss.style_targets()["relu1_2"].shape == (1, 64, 64)
    assert not small_loss.style_targets()["relu1_2"].requires_grad


def test_forward_before_set_style_is_a_clear_error() -> None:
    loss = PerceptualLoss(LossConfig(style_layers={"relu1_1": 1.0}), weights="random")
    with pytest.raises(InstyleError, match="set_style"):
        loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_shared_vgg_must_provide_layers() -> None:
    vgg = VGG16Features(["relu1_1"], weights="random")
    with pytest.raises(ValueError, match="relu2_2"):
        PerceptualLoss(LossConfig(content_layers={"relu2_2": 1.0}), vgg=vgg)


def test_optimize_image_lowers_the_loss(small_loss: PerceptualLoss) -> None:
    content = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    start = small_loss(content, content)["total"].item()
    result = optimize_image(small_loss, content, steps=15, lr=0.05)
    assert result.shape == content.shape and not result.requires_grad
    assert result.min().item() >= 0.0 and result.max().item() <= 1.0
    assert small_loss(result, content)["total"].item() < start

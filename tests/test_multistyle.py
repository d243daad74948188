"""Several styles in one network (conditional instance norm), and exporting each as a plain model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instyle.core.errors import InstyleError
from instyle.losses.perceptual import LossConfig, PerceptualLoss
from instyle.losses.vgg import VGG16Features
from instyle.models import create_model, set_style_index, single_style_state
from instyle.models.modelfile import load_model
from instyle.training.config import TrainConfig
from instyle.training.holdout import chunked_content_targets, loss_terms
from instyle.training.loop import train


def test_a_fixed_style_index_is_exactly_the_exported_single_style_network() -> None:
    torch.manual_seed(0)
    joint = create_model("johnson-half", styles=3).eval()
    x = torch.rand(2, 3, 48, 40)
    for index in range(3):
        set_style_index(joint, index)
        single = create_model("johnson-half").eval()
        single.load_state_dict(single_style_state(joint, index))
        torch.testing.assert_close(single(x), joint(x), atol=1e-5, rtol=1e-5)
    # per-image indices: each image gets its own style, as with separate calls
    set_style_index(joint, 2)
    ref = joint(x)
    set_style_index(joint, torch.tensor([0, 2]))
    mixed = joint(x)
    torch.testing.assert_close(mixed[1], ref[1], atol=1e-5, rtol=1e-5)
    assert (mixed[0] - ref[0]).abs().max() > 1e-3, "style 0 must differ from style 2"


def test_multistyle_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="norm layers"):
        create_model("johnson-half", norm="none", styles=2)
    joint = create_model("johnson-half", styles=2)
    with pytest.raises(ValueError, match="out of range"):
        set_style_index(joint, 2)
    set_style_index(joint, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="batch of 2"):
        joint(torch.rand(2, 3, 32, 32))


def test_loss_judges_each_image_by_its_own_style() -> None:
    vgg = VGG16Features(["relu1_2", "relu2_2"], weights="random")
    cfg = LossConfig(content_layers={"relu2_2": 1.0}, style_layers={"relu1_2": 1.0, "relu2_2": 1.0},
                     style_weight=10.0, tv_weight=1.0)
    styles = [torch.rand(1, 3, 40, 56), torch.rand(1, 3, 32, 32).pow(3)]
    both = PerceptualLoss(cfg, vgg=vgg)
    both.set_style(styles)
    assert both.num_styles == 2
    out, content = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="style_index"):
        both(out, content)
    for s in range(2):
        one = PerceptualLoss(cfg, vgg=vgg)
        one.set_style(styles[s])
        expected = one(out, content)["total"]
        torch.testing.assert_close(both(out, content, s)["total"], expected)
        torch.testing.assert_close(both(out, content, torch.tensor([s, s]))["total"], expected)
    # precomputed content targets give the same loss as computing them inside
    targets = both.content_targets(content)
    torch.testing.assert_close(both(out, content, 1, targets)["total"], both(out, content, 1)["total"])
    # and so do loss_terms' chunks (a joint run scores the held-out photos against every style)
    outs, photos = torch.rand(5, 3, 32, 32), torch.rand(5, 3, 32, 32)
    chunked = chunked_content_targets(both, photos, chunk=2)
    assert len(chunked) == 3
    for s in range(2):
        assert loss_terms(both, outs, photos, 2, s, chunked) == pytest.approx(loss_terms(both, outs, photos, 2, s))


@pytest.fixture()
def second_style(tmp_path: Path) -> Path:
    yy, xx = np.mgrid[0:80, 0:80]
    img = np.stack([(np.sin(xx / 3) > 0) * 220, (np.cos(yy / 5) > 0) * 180, np.full_like(xx, 60)], -1)
    path = tmp_path / "waves.png"
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_joint_training_writes_one_plain_model_per_style(photos_dir, style_image, second_style, tmp_path) -> None:
    out = tmp_path / "zoo" / "joint.safetensors"
    cfg = TrainConfig(style=[str(style_image), str(second_style)], content=str(photos_dir), output=str(out),
                      arch="johnson-half", size=48, style_size=64, batch=2, iters=4, precision="fp32", holdout=2,
                      eval_every=2, checkpoint_every=2, vgg_weights="random",
                      style_meta=[{"title": "Stripes"}, {"title": "Waves"}])
    card = train(cfg, progress=False)
    assert [s["title"] for s in card.data["styles"]] == ["Stripes", "Waves"]
    assert card.data["arch_kwargs"] == {"styles": 2}
    # every held-out evaluation covers every style
    assert [(r["step"], r["style_index"]) for r in card.data["metrics"]["holdout_curve"]] == [
        (2, 0), (2, 1), (4, 0), (4, 1)]
    joint, _ = load_model(out)
    x = torch.rand(1, 3, 48, 48)
    for index, name in enumerate(["stripes", "waves"]):
        single, single_card = load_model(out.parent / f"{name}.safetensors")
        assert single_card.data["style"]["title"] == ["Stripes", "Waves"][index]
        assert single_card.data["joint"]["index"] == index and single_card.data["joint"]["model"] == "joint.safetensors"
        assert [s["title"] for s in single_card.data["joint"]["styles"]] == ["Stripes", "Waves"]
        assert [r["step"] for r in single_card.data["metrics"]["holdout_curve"]] == [2, 4]
        assert "styles" not in single_card.data["arch_kwargs"]
        set_style_index(joint, index)
        torch.testing.assert_close(single(x), joint(x), atol=1e-5, rtol=1e-5)


def test_joint_training_needs_distinct_style_names(photos_dir, style_image, tmp_path) -> None:
    cfg = TrainConfig(style=[str(style_image), str(style_image)], content=str(photos_dir),
                      output=str(tmp_path / "j.safetensors"), arch="johnson-half", size=32, iters=1,
                      vgg_weights="random", holdout=0)
    with pytest.raises(InstyleError, match="distinct names"):
        train(cfg, progress=False)


def test_style_scales_weigh_each_style_of_a_joint_loss() -> None:
    vgg = VGG16Features(["relu1_2"], weights="random")
    cfg = LossConfig(style_layers={"relu1_2": 1.0}, style_weight=10.0)
    styles = [torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32).pow(2)]
    plain, scaled = PerceptualLoss(cfg, vgg=vgg), PerceptualLoss(cfg, vgg=vgg)
    plain.set_style(styles)
    scaled.set_style(styles, scales=[1.0, 3.0])
    out, content = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    idx = torch.tensor([0, 1])
    a = plain(out[:1], content[:1], idx[:1])["style"]
    b = plain(out[1:], content[1:], idx[1:])["style"]
    torch.testing.assert_close(scaled(out, content, idx)["style"], (a + 3 * b) / 2)
    torch.testing.assert_close(scaled(out[1:], content[1:], 1)["style"], 3 * b)
    with pytest.raises(ValueError, match="scales"):
        scaled.set_style(styles, scales=[1.0])

"""Texture networks (#17): any-size seeded sampling, seamless tiling, the diversity term, training and cards.

Tiny generators (3 scales, 4 channels) and a random-weight VGG: what is tested is the mechanics,
not texture quality (docs/textures.md has the real run)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

from instyle.apps.cli import main
from instyle.core.errors import InstyleError
from instyle.losses.diversity import mean_pairwise_distance, nearest_neighbour_log_distance
from instyle.losses.perceptual import PerceptualLoss
from instyle.models import create_model
from instyle.models.card import ModelCard
from instyle.models.modelfile import load_model, read_card, save_model
from instyle.models.ulyanov import UlyanovTexture
from instyle.training.inputs import load_style_tensor
from instyle.training.texture import (
    TextureConfig,
    lr_factor,
    seam_ratios,
    step_noise,
    texture_loss_config,
    texture_objective,
    train_texture,
)

TINY = {"scales": 3, "channels": 4}


def _net(seed: int = 0, **kw: int) -> UlyanovTexture:
    torch.manual_seed(seed)
    model = create_model("ulyanov-texture", **{**TINY, **kw})
    assert isinstance(model, UlyanovTexture)
    return model


@pytest.fixture(scope="module")
def texture_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small stripy texture: strong, simple Gram statistics."""
    tmp_path = tmp_path_factory.mktemp("texture")
    torch.manual_seed(5)
    x = torch.linspace(0, 12.0, 48)
    img = (0.5 + 0.4 * torch.sin(x[None, :] + 0.5 * x[:, None]))[None].repeat(3, 1, 1)
    img = (img + 0.1 * torch.rand_like(img)).clamp(0, 1)
    path = tmp_path / "stripes.png"
    Image.fromarray((img.permute(1, 2, 0) * 255).byte().numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def plain_run(texture_image: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TextureConfig, ModelCard]:
    """One λ = 0 run, shared by the tests that only read it."""
    cfg = _cfg(texture_image, tmp_path_factory.mktemp("plain") / "plain.safetensors", diversity=0.0)
    return cfg, train_texture(cfg, progress=False)


def _cfg(texture: Path, out: Path, **kw: object) -> TextureConfig:
    base = dict(texture=str(texture), output=str(out), size=16, texture_size=24, batch=3, iters=4, lr=0.05,
                lr_every=2, seed=1, vgg_weights="random", arch_kwargs=dict(TINY), log_every=1, checkpoint_every=2)
    base.update(kw)
    return TextureConfig(**base)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (13, 29), (40, 24), (64, 100)])
def test_samples_come_at_any_requested_size(size: tuple[int, int]) -> None:
    out = _net().sample(2, *size, seed=0)
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


def test_same_seed_same_pixels_different_seeds_differ() -> None:
    model = _net()
    a, b, c = model.sample(1, 24, 20, seed=3), model.sample(1, 24, 20, seed=3), model.sample(1, 24, 20, seed=4)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-3
    pair = model.sample(2, 24, 20, seed=3)
    assert (pair[0] - pair[1]).abs().mean() > 1e-3, "samples of one call get different noise"
    assert model.training, "sampling leaves the mode as it found it"


def _smooth_net() -> UlyanovTexture:
    """A generator whose output is smooth (box-filter weights, only the coarsest scale's noise), so
    that a seam, if there is one, stands out: a random network's output is close to white noise."""
    model = _net()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                m.bias.zero_()
        for branch in model.branches[1:]:
            for p in branch.parameters():
                p.zero_()
    return model


def _wrap_z_scores(x: torch.Tensor, multiple: int) -> tuple[float, float]:
    """How many standard deviations the mean |difference| across the wrap edge lies from that of
    the interior edges at the same phase of the upsampling grid (columns, then rows)."""
    scores = []
    for t in (x, x.transpose(-1, -2)):
        edges = torch.stack([(t[..., k] - t[..., k - 1]).abs().mean() for k in range(multiple, t.shape[-1], multiple)])
        wrap = (t[..., 0] - t[..., -1]).abs().mean()
        scores.append(float((wrap - edges.mean()) / edges.std()))
    return scores[0], scores[1]


def test_tile_sample_wraps_without_a_seam() -> None:
    """Across the wrap edge a --tile sample differs like neighbouring interior pixels (same phase of
    the upsampling grid): within 3 standard deviations of the interior edges, ratio about 1. The
    same network with replication padding has a seam there, so the measure can tell."""
    model = _smooth_net()
    tiled = model.sample(16, 64, 64, seed=1, tile=True)
    z_col, z_row = _wrap_z_scores(tiled, model.size_multiple)
    assert abs(z_col) < 3 and abs(z_row) < 3, (z_col, z_row)
    assert all(0.5 < r < 1.5 for r in seam_ratios(tiled, model.size_multiple))
    with model.padding("replicate"):
        seamed = model.sample(16, 64, 64, seed=1)
    z_col, z_row = _wrap_z_scores(seamed, model.size_multiple)
    assert z_col > 10 and z_row > 10, (z_col, z_row)
    assert all(r > 5 for r in seam_ratios(seamed, model.size_multiple))


def test_circular_generator_is_a_function_on_the_torus() -> None:
    """Exactly: rolling the noise of every scale by the same image-space shift rolls the output."""
    model = _net().eval()
    z = model.noise(1, 32, 24, torch.Generator().manual_seed(0))
    shift = (8, 12)  # multiples of size_multiple (4), so every scale shifts by whole pixels
    rolled = [zi.roll((shift[0] * zi.shape[-2] // 32, shift[1] * zi.shape[-1] // 24), dims=(-2, -1)) for zi in z]
    with torch.no_grad():
        torch.testing.assert_close(model(rolled), model(z).roll(shift, dims=(-2, -1)), atol=1e-5, rtol=1e-5)
        with model.padding("replicate"):
            assert not torch.allclose(model(rolled), model(z).roll(shift, dims=(-2, -1)), atol=1e-3)


def test_sampling_refuses_bad_sizes_with_one_line() -> None:
    model = _net()
    with pytest.raises(InstyleError, match="multiples of 4"):
        model.sample(1, 30, 32, tile=True)
    with pytest.raises(InstyleError, match="over the limit"):
        model.sample(1, 40_000, 40_000)
    with pytest.raises(InstyleError, match="takes noise, not photos"):
        model(torch.rand(1, 3, 16, 16))


# ----------------------------------------------------------------------------- the objective


def test_diversity_term_is_finite_even_for_identical_samples() -> None:
    same = torch.rand(1, 3, 8, 8).repeat(3, 1, 1, 1).requires_grad_(True)
    log_nn = nearest_neighbour_log_distance(same)
    assert torch.isfinite(log_nn).all()
    log_nn.mean().backward()
    assert same.grad is not None and torch.isfinite(same.grad).all()
    # and it is the ln RMS distance to the nearest other sample
    x = torch.zeros(3, 1, 2, 2)
    x[1] += 0.1
    x[2] += 0.5
    torch.testing.assert_close(nearest_neighbour_log_distance(x), torch.tensor([0.1, 0.1, 0.4]).log())


@pytest.mark.slow
def test_zero_diversity_reproduces_plain_training(texture_image: Path, plain_run) -> None:
    """λ = 0 trains exactly the plain texture network: a hand-written Gram-only Adam loop on the
    same noise gives the same weights, bit for bit (that λ > 0 changes them is the next test's)."""
    cfg = plain_run[0]
    trained, _ = load_model(cfg.output)

    torch.manual_seed(cfg.seed)
    ref = create_model("ulyanov-texture", **TINY)
    criterion = PerceptualLoss(texture_loss_config(), weights="random")
    criterion.set_style(load_style_tensor(texture_image, cfg.texture_size))
    opt = torch.optim.Adam(ref.parameters(), lr=cfg.lr)
    for step in range(cfg.iters):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, step)
        samples = ref(step_noise(ref, cfg.batch, cfg.size, cfg.seed, step))  # type: ignore[arg-type]
        loss = criterion(samples, samples)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, value in ref.state_dict().items():
        assert torch.equal(value, trained.state_dict()[name]), name



@pytest.mark.slow
def test_diversity_increases_the_spread_of_samples(texture_image: Path, tmp_path: Path) -> None:
    """Toy case: a few steps with λ > 0 leave samples further apart than the same steps with λ = 0."""
    spreads = {}
    for lam in (0.0, 5.0):  # (not the shared run: this one takes more, larger steps)
        cfg = _cfg(texture_image, tmp_path / f"l{lam}.safetensors", diversity=lam, iters=4, lr=0.05, lr_every=100,
                   batch=3, checkpoint_every=100)
        card = train_texture(cfg, progress=False)
        model, _ = load_model(cfg.output)
        spreads[lam] = mean_pairwise_distance(model.sample(6, 16, 16, seed=11))  # type: ignore[operator]
        if lam:
            assert all(torch.isfinite(torch.tensor(r["log_nn_distance"])) for r in card.metrics["curve"])
    assert spreads[5.0] > 1.5 * spreads[0.0], spreads


def test_objective_with_diversity_subtracts_the_entropy_estimate() -> None:
    criterion = PerceptualLoss(texture_loss_config(), weights="random")
    criterion.set_style(torch.rand(1, 3, 16, 16))
    samples = torch.rand(3, 3, 16, 16)
    plain, div = texture_objective(criterion, samples, 0.0), texture_objective(criterion, samples, 2.0)
    assert "log_nn_distance" not in plain
    torch.testing.assert_close(div["total"], plain["total"] - 2.0 * div["log_nn_distance"])


# ----------------------------------------------------------------------------- the run and its file


def test_training_writes_a_card_that_round_trips(plain_run, tmp_path: Path) -> None:
    cfg, card = plain_run
    assert card.arch == "ulyanov-texture" and card.data["kind"] == "texture"
    assert card.arch_kwargs == {**TINY, "noise_channels": 3, "circular": 1}
    assert card.data["train"]["diversity"] == 0.0 and card.steps == cfg.iters
    assert card.data["loss"]["content_layers"] == {} and len(card.data["loss"]["style_layers"]) == 5
    assert not Path(cfg.paths()[1]).exists(), "the checkpoint goes once the model is written"
    assert [r["step"] for r in card.metrics["curve"]] == list(range(1, cfg.iters + 1))
    model, loaded = load_model(cfg.output)
    assert loaded.data == read_card(cfg.output).data
    again = tmp_path / "again.safetensors"
    save_model(model, loaded, again)
    model2, _ = load_model(again)
    assert torch.equal(model.sample(1, 20, 12, seed=2), model2.sample(1, 20, 12, seed=2))  # type: ignore[operator]


@pytest.mark.parametrize("bad, why", [({"circular": 2}, "circular must be"), ({"noise_channels": 0}, "noise_channels"),
                                      ({"styles": 2}, "no hyper-parameter 'styles'")])
def test_cards_outside_the_texture_limits_are_refused(bad: dict[str, int], why: str) -> None:
    with pytest.raises(InstyleError, match=why):
        ModelCard.from_dict({"arch": "ulyanov-texture", "norm": "instance", "arch_kwargs": {**TINY, **bad}})


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(texture_image: Path, plain_run, tmp_path: Path) -> None:
    ref = plain_run[0]
    cfg = _cfg(texture_image, tmp_path / "run.safetensors", diversity=0.0)

    def stop(rec: dict[str, object]) -> None:
        if rec["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_texture(cfg, progress=False, on_log=stop)  # checkpoint at step 2
    with pytest.raises(InstyleError, match="--resume continues it"):
        train_texture(cfg, progress=False)
    with pytest.raises(InstyleError, match="different diversity"):
        train_texture(dataclasses.replace(cfg, diversity=0.7), resume=True, progress=False)
    with pytest.raises(InstyleError, match="exclude each other"):
        train_texture(cfg, resume=True, restart=True, progress=False)
    train_texture(cfg, resume=True, progress=False)
    a, _ = load_model(ref.output)
    b, _ = load_model(cfg.output)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], atol=0, rtol=0)


@pytest.mark.parametrize("kw, why", [({"size": 18}, "multiple of 4"), ({"batch": 1, "diversity": 1.0}, "--batch 2"),
                                     ({"diversity": -1.0}, "--diversity"), ({"output": "x.png"}, "safetensors")])
def test_bad_training_options_get_one_line(texture_image: Path, tmp_path: Path, kw: dict, why: str) -> None:
    out = Path(kw.pop("output", tmp_path / "x.safetensors"))
    with pytest.raises(InstyleError, match=why):
        train_texture(_cfg(texture_image, out, **kw), progress=False)


# ----------------------------------------------------------------------------- the command


def test_cli_samples_any_size_seeded_and_tileable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_path = tmp_path / "tex.safetensors"
    save_model(_net(), {"arch": "ulyanov-texture", "norm": "instance", "arch_kwargs": {**TINY, "circular": 1}},
               model_path)
    assert main(["texture", "sample", str(model_path), "-o", str(tmp_path / "a.png"), "--size", "50x30",
                 "--seed", "3"]) == 0
    assert main(["texture", "sample", str(model_path), "-o", str(tmp_path / "b.png"), "--size", "50x30",
                 "--seed", "3"]) == 0
    assert main(["texture", "sample", str(model_path), "-o", str(tmp_path / "c.png"), "--size", "48",
                 "--tile"]) == 0
    assert Image.open(tmp_path / "a.png").size == (50, 30)
    assert Image.open(tmp_path / "c.png").size == (48, 48)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert "seed" in capsys.readouterr().out
    assert main(["texture", "sample", str(model_path), "-o", str(tmp_path / "d.png"), "--size", "50x30",
                 "--tile"]) == 2
    assert main(["texture", "sample", str(model_path), "-o", str(tmp_path / "d.png"), "--size", "big"]) == 2
    err = capsys.readouterr().err
    assert "multiples of 4" in err and "WIDTHxHEIGHT" in err and "Traceback" not in err
    assert not (tmp_path / "d.png").exists()


def test_cli_refuses_a_style_network_as_a_texture_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    style = tmp_path / "style.safetensors"
    save_model(create_model("ulyanov", scales=2, channels=2), {"arch": "ulyanov", "norm": "instance",
                                                                "arch_kwargs": {"scales": 2, "channels": 2}}, style)
    assert main(["texture", "sample", str(style), "-o", str(tmp_path / "x.png")]) == 2
    assert "not a texture network" in capsys.readouterr().err


# ----------------------------------------------------------------------------- shipped texture networks


def test_shipped_textures_are_listed_apart_from_styles_and_sample_by_name(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import instyle.zoo as zoo
    from instyle.training.ship import ship_texture

    folder = tmp_path / "textures"
    trained = tmp_path / "t.safetensors"
    save_model(_net(), {"arch": "ulyanov-texture", "norm": "instance", "arch_kwargs": {**TINY, "circular": 1},
                        "kind": "texture"}, trained)
    ship_texture(trained, "dots", "tiny dots", "instyle texture train --texture dots -o dots.safetensors",
                 dest=folder)
    assert load_file_dtype(folder / "dots.safetensors") == torch.float16
    monkeypatch.setattr(zoo, "TEXTURE_DIR", folder)
    assert list(zoo.list_textures()) == ["dots"] and "dots" not in zoo.list_styles()
    assert zoo.resolve_texture("dots") == folder / "dots.safetensors"
    with pytest.raises(InstyleError, match=r"unknown texture 'nope'.*dots"):
        zoo.resolve_texture("nope")
    assert main(["styles"]) == 0
    assert "textures (noise in, texture out):\ndots" in capsys.readouterr().out
    assert main(["texture", "sample", "dots", "-o", str(tmp_path / "d.png"), "--size", "24x16", "--seed", "1"]) == 0
    assert Image.open(tmp_path / "d.png").size == (24, 16)


def load_file_dtype(path: Path) -> torch.dtype:
    from safetensors.torch import load_file

    return next(iter(load_file(str(path)).values())).dtype


def _shipped_textures() -> list[str]:
    from instyle.zoo import list_textures

    return list(list_textures())


@pytest.mark.parametrize("name", _shipped_textures())
def test_each_shipped_texture_is_seeded_tiles_and_says_where_it_came_from(name: str, one_thread: None) -> None:
    """The real shipped weights: two seeds differ clearly, the same seed repeats, a --tile sample
    wraps like its interior (docs/texture-zoo.json has the full-size numbers), and the card names
    the texture's package, its licence and the command that trained it."""
    from instyle.zoo import resolve_texture

    model, card = load_model(resolve_texture(name))
    a, b = model.sample(1, 64, 96, seed=0), model.sample(1, 64, 96, seed=1)
    assert a.shape == (1, 3, 64, 96) and torch.isfinite(a).all()
    assert (a - b).abs().mean() > 0.03, "two seeds give clearly different samples"
    assert torch.equal(a, model.sample(1, 64, 96, seed=0))
    tiled = model.sample(8, 128, 128, seed=2, tile=True)
    assert all(0.7 < r < 1.3 for r in seam_ratios(tiled, model.size_multiple))
    meta = card.data["style"]
    assert meta.get("license") and meta.get("package")
    assert card.data["command"].startswith("instyle texture train --texture ")

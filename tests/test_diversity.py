"""Diverse stylization (#17): generators g(x, z) with noise channels, --diversity training, --seed.

Tiny generators and a random-weight VGG: what is tested is the mechanics (noise in the card, seeds,
the entropy term, refusals), not quality (docs/experiments/diversity.md has the measured run)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instyle.apps.cli import main
from instyle.core.errors import InstyleError
from instyle.inference.backends import build_runner
from instyle.inference.export import export_model
from instyle.inference.stylizer import Stylizer
from instyle.losses.diversity import nearest_neighbour_log_distance
from instyle.models import create_model
from instyle.models.clamped import ClampedGenerator
from instyle.models.modelfile import load_model, save_model
from instyle.models.registry import noise_channels
from instyle.training.config import TrainConfig
from instyle.training.loop import diversity_inputs, train


def _noise_model(path: Path, arch: str = "johnson-half", seed: int = 0, **kw: int) -> Path:
    torch.manual_seed(seed)
    kwargs = {"noise_channels": 3, **kw}
    save_model(create_model(arch, **kwargs), {"arch": arch, "norm": "instance", "arch_kwargs": kwargs,
                                              "style": {"title": "noisy"}}, path)
    return path


@pytest.fixture(scope="module")
def noise_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _noise_model(tmp_path_factory.mktemp("noise") / "noisy.safetensors")


def _pixels(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image)).float()


def _photo() -> Image.Image:
    torch.manual_seed(5)
    return Image.fromarray((torch.rand(37, 45, 3) * 255).byte().numpy())


@pytest.mark.parametrize("arch, kw", [("johnson-half", {}), ("ulyanov", {"scales": 3, "channels": 4})])
def test_noise_channels_widen_the_first_layer_and_plain_calls_draw_noise(arch: str, kw: dict) -> None:
    net = create_model(arch, noise_channels=3, **kw).eval()
    assert noise_channels(net) == 3 and noise_channels(ClampedGenerator(net)) == 3
    assert noise_channels(create_model(arch, **kw)) == 0
    x = torch.rand(1, 3, 40, 36)
    z = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        given = net(torch.cat([x, z], dim=1))
        assert given.shape == (1, 3, 40, 36)
        torch.testing.assert_close(net(torch.cat([x, z], dim=1)), given)  # explicit noise: deterministic
        assert (net(torch.cat([x, torch.rand_like(z)], dim=1)) - given).abs().max() > 1e-4  # the noise matters
        assert net(x).shape == (1, 3, 40, 36)  # a plain photo call draws its own noise
    with pytest.raises(ValueError, match="image channels"):
        net(torch.rand(1, 4, 40, 36))


def test_pooled_noise_keeps_its_variance_at_every_scale() -> None:
    net = create_model("ulyanov", noise_channels=3, scales=4, channels=2)
    pyramid = net._inputs(torch.cat([torch.zeros(2, 3, 64, 64), torch.rand(2, 3, 64, 64)], dim=1))
    for level in pyramid:
        noise = level[:, 3:]
        assert abs(noise.mean().item() - 0.5) < 0.05 and abs(noise.var().item() - 1 / 12) < 0.02, noise.shape


def test_seeds_give_different_results_and_the_same_seed_the_same(noise_model: Path) -> None:
    stylizer = Stylizer.load(noise_model, device="cpu")
    assert stylizer.noise_channels == 3 and stylizer.runner.backend == "eager"
    photo = _photo()
    a, b, c = (_pixels(stylizer(photo, seed=s)) for s in (1, 1, 2))
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1.0, "another seed must change the result visibly"
    default = _pixels(stylizer(photo))
    assert torch.equal(default, _pixels(stylizer(photo, seed=0)))
    # one noise field per call: an image gives the same pixels alone and inside a batch
    x = torch.rand(3, 3, 24, 28)
    batch = stylizer.stylize_tensor(x, seed=4)
    torch.testing.assert_close(stylizer.stylize_tensor(x[1], seed=4), batch[1])
    # tiles cut the one field: tiled and whole agree up to the tile borders
    tiled = Stylizer.load(noise_model, device="cpu", tile=160)
    big = torch.rand(1, 3, 150, 300)
    assert (tiled.stylize_tensor(big, seed=3) - stylizer.stylize_tensor(big, seed=3)).abs().mean() < 0.05
    with pytest.raises(InstyleError, match="seed"):
        stylizer(photo, seed=-1)


def test_models_without_noise_ignore_the_seed(model_file: Path) -> None:
    stylizer = Stylizer.load(model_file, device="cpu", backend="eager")
    x = torch.rand(1, 3, 20, 24)
    assert stylizer.noise_channels == 0
    torch.testing.assert_close(stylizer.stylize_tensor(x, seed=1), stylizer.stylize_tensor(x, seed=99))


def test_compiled_paths_and_export_refuse_the_noise_input(noise_model: Path, tmp_path: Path) -> None:
    module = ClampedGenerator(load_model(noise_model)[0])
    for backend in ("onnxruntime", "compile", "aot-fp32", "int8"):
        with pytest.raises(InstyleError, match="noise input"):
            build_runner(module, backend, "cpu")
    assert build_runner(module, "auto", "cpu").backend == "eager"
    assert build_runner(module, "channels_last", "cpu").backend == "channels_last"
    with pytest.raises(InstyleError, match="diversity model"):
        export_model(noise_model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_cli_stylize_seed(noise_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "p.png"
    _photo().save(src)
    outs = []
    for i, seed in enumerate((3, 3, 4)):
        dst = tmp_path / f"o{i}.png"
        assert main(["stylize", str(src), "-m", str(noise_model), "-o", str(dst), "--seed", str(seed),
                     "--device", "cpu"]) == 0
        outs.append(dst.read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    assert main(["stylize", str(src), "-m", str(noise_model), "-o", str(tmp_path / "bad.png"), "--seed", "-2"]) != 0
    assert "--seed" in capsys.readouterr().err


def test_web_api_passes_the_seed(noise_model: Path) -> None:
    pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")
    from fastapi.testclient import TestClient

    from instyle.apps.serve import create_app

    buf = io.BytesIO()
    _photo().save(buf, format="PNG")
    with TestClient(create_app(models={"noisy": noise_model}, device="cpu", backend="eager")) as client:
        def post(**form: str) -> bytes:
            r = client.post("/api/stylize", files={"image": ("p.png", buf.getvalue(), "image/png")},
                            data={"style": "noisy", **form})
            assert r.status_code == 200, r.text
            return r.content

        assert post(seed="5") == post(seed="5") != post(seed="6")
        assert post() == post(seed="0")
        bad = client.post("/api/stylize", files={"image": ("p.png", buf.getvalue(), "image/png")},
                          data={"style": "noisy", "seed": "-1"})
        assert bad.status_code == 422


# ----------------------------------------------------------------------------- training


def _cfg(photos: Path, style: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(style=str(style), content=str(photos), output=str(out), arch="ulyanov", size=32,
                style_size=48, batch=2, iters=4, lr=5e-3, seed=1, precision="fp32", holdout=0,
                checkpoint_every=2, log_every=1, vgg_weights="random", arch_kwargs={"scales": 3, "channels": 4})
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_diversity_needs_noise_channels(photos_dir: Path, style_image: Path, tmp_path: Path) -> None:
    with pytest.raises(InstyleError, match="--noise-channels"):
        _cfg(photos_dir, style_image, tmp_path / "m.safetensors", diversity=1.0).validate()


def test_diversity_inputs_repeat_each_photo_with_its_own_noise(photos_dir: Path, style_image: Path,
                                                               tmp_path: Path) -> None:
    cfg = _cfg(photos_dir, style_image, tmp_path / "m.safetensors", noise_channels=3, diversity=1.0,
               diversity_copies=3)
    x = torch.rand(2, 3, 8, 8)
    photos, inputs, index = diversity_inputs(cfg, x, torch.tensor([0, 1]), step=5, rank=0)
    assert photos.shape == (6, 3, 8, 8) and inputs.shape == (6, 6, 8, 8)
    assert torch.equal(photos[0], photos[2]) and torch.equal(photos[3], x[1]) and index.tolist() == [0, 0, 0, 1, 1, 1]
    assert not torch.equal(inputs[0, 3:], inputs[1, 3:])
    again = diversity_inputs(cfg, x, None, step=5, rank=0)[1]
    assert torch.equal(again, inputs) and not torch.equal(diversity_inputs(cfg, x, None, step=6, rank=0)[1], inputs)
    plain = _cfg(photos_dir, style_image, tmp_path / "m.safetensors")
    assert diversity_inputs(plain, x, None, step=5, rank=0)[1] is x
    # groups: each sample's nearest neighbour is sought among its own photo's draws only
    spread = torch.tensor([0.0, 0.3])[:, None, None, None]
    far = torch.cat([torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.1) + spread])
    expected = torch.tensor([1e-4, 1e-4, 0.3, 0.3]).log()  # identical draws: clamped at eps = 1e-8 squared
    torch.testing.assert_close(nearest_neighbour_log_distance(far, groups=2), expected)


def test_diversity_training_writes_a_noise_model_whose_seeds_differ(photos_dir: Path, style_image: Path,
                                                                     tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "div.safetensors"
    card = train(_cfg(photos_dir, style_image, out, noise_channels=3, diversity=2.0), progress=False)
    assert card.arch_kwargs["noise_channels"] == 3 and card.data["train"]["diversity"] == 2.0
    log = [json.loads(line) for line in (tmp_path / "div.log.jsonl").read_text().splitlines()]
    assert all("log_nn_distance" in r for r in log) and len(log) == 4
    stylizer = Stylizer.load(out, device="cpu")
    x = torch.rand(1, 3, 32, 32)
    assert (stylizer.stylize_tensor(x, seed=1) - stylizer.stylize_tensor(x, seed=2)).abs().mean() > 1e-3


def test_resumed_noise_run_matches_an_uninterrupted_one(photos_dir: Path, style_image: Path, tmp_path: Path,
                                                    one_thread: None) -> None:
    kw = {"noise_channels": 3, "diversity": 1.0}
    ref = tmp_path / "ref.safetensors"
    train(_cfg(photos_dir, style_image, ref, **kw), progress=False)
    out = tmp_path / "run.safetensors"
    cfg = _cfg(photos_dir, style_image, out, **kw)

    class Kill(Exception):
        pass

    def die(rec: dict) -> None:
        if rec["step"] == 3:
            raise Kill

    with pytest.raises(Kill):
        train(cfg, progress=False, on_log=die)
    train(cfg, resume=True, progress=False)
    a, b = load_model(ref)[0].state_dict(), load_model(out)[0].state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)

"""Stroke size as a control (#24): stroke rows in training, cards, inference, CLI and the web app."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from instyle.apps.cli import main
from instyle.core.errors import InstyleError
from instyle.core.metrics import correlation_length, high_frequency_energy
from instyle.inference.stylizer import Stylizer
from instyle.losses.perceptual import (
    LossConfig,
    PerceptualLoss,
    balance_style_layers,
    get_preset,
    style_layer_shares,
)
from instyle.losses.vgg import VGG16Features
from instyle.models import Norm2d, create_model, set_style_index
from instyle.models.card import ModelCard
from instyle.models.modelfile import at_stroke, load_model, save_model
from instyle.models.norms import broadcast_rows, interpolated_state, row_mix
from instyle.training.config import TrainConfig
from instyle.training.evaluate import score_models
from instyle.training.loop import init_from_model, train
from instyle.training.recipe import train_command

STROKES = [0.5, 1.0, 2.0]


def _rows_card(**extra: object) -> dict:
    return {"arch": "johnson-half", "norm": "instance", "arch_kwargs": {"styles": 3}, "style": {"title": "rows"},
            "strokes": STROKES, **extra}


def _rows_model() -> torch.nn.Module:
    torch.manual_seed(1)
    model = create_model("johnson-half", styles=3).eval()
    with torch.no_grad():  # rows far apart, so an interpolation error would show
        for m in model.modules():
            if isinstance(m, Norm2d):
                m.weight.copy_(torch.rand_like(m.weight) * 2)
                m.bias.copy_(torch.randn_like(m.bias))
    return model


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "rows.safetensors"
    save_model(_rows_model(), _rows_card(), path)
    return path


def test_row_mix_is_piecewise_linear_in_log_stroke() -> None:
    assert row_mix(STROKES, 0.5) == (0, 1, 0.0)
    assert row_mix(STROKES, 1.0) == (0, 1, 1.0)
    assert row_mix(STROKES, 2.0) == (1, 2, 1.0)
    i, j, t = row_mix(STROKES, math.sqrt(2))  # halfway between 1 and 2 in log
    assert (i, j) == (1, 2) and t == pytest.approx(0.5)
    for bad in (0.4, 2.5, float("nan")):
        with pytest.raises(ValueError, match="outside"):
            row_mix(STROKES, bad)


def test_interpolated_rows_hit_the_rows_at_the_ends_and_average_between() -> None:
    model = _rows_model()
    norms = [(n, m) for n, m in model.named_modules() if isinstance(m, Norm2d)]
    for index, stroke in enumerate(STROKES):
        state = interpolated_state(model, STROKES, stroke)
        for name, m in norms:
            assert torch.equal(state[f"{name}.weight"], m.weight[index]), (name, stroke)
            assert torch.equal(state[f"{name}.bias"], m.bias[index])
    mid = interpolated_state(model, STROKES, math.sqrt(0.5))
    for name, m in norms:
        torch.testing.assert_close(mid[f"{name}.weight"], (m.weight[0] + m.weight[1]) / 2)
        torch.testing.assert_close(mid[f"{name}.bias"], (m.bias[0] + m.bias[1]) / 2)
    # a stroke at a row is exactly that row of the multi-row network
    card = ModelCard.from_dict(_rows_card())
    x = torch.rand(1, 3, 40, 36)
    set_style_index(model, 2)
    torch.testing.assert_close(at_stroke(model, card, 2.0)(x), model(x), atol=1e-5, rtol=1e-5)


def test_card_records_and_checks_the_rows() -> None:
    card = ModelCard.from_dict(_rows_card())
    assert card.strokes == (0.5, 1.0, 2.0) and card.has_rows and card.defaults.stroke == 1.0
    assert card.n_styles == 1 and "3 stroke rows" in card.describe_net
    assert ModelCard.from_dict(_rows_card(strokes=[1, 2, 4])).defaults.stroke == 1.0
    assert ModelCard.from_dict({**_rows_card(strokes=[2, 3, 4])}).defaults.stroke == 2.0  # nearest row
    bad = [
        (_rows_card(strokes=[1, 0.5, 2]), "increase"),
        (_rows_card(strokes=[0.5, 2]), "2 strokes for a network of 3"),
        (_rows_card(strokes=[0.5, 1, 50]), "strokes must be a list"),
        (_rows_card(strokes="big"), "strokes must be a list"),
        ({**_rows_card(), "styles": [{}, {}, {}]}, "single style entry"),
        (_rows_card(defaults={"stroke": 3.0}), "defaults.stroke"),
    ]
    for data, needle in bad:
        with pytest.raises(InstyleError, match=needle):
            ModelCard.from_dict(data)
    old = ModelCard.from_dict({"arch": "johnson-half", "norm": "instance", "style": {}})
    assert old.strokes is None and not old.has_rows


def test_old_single_row_models_still_load_and_refuse_a_stroke(model_file: Path) -> None:
    stylizer = Stylizer.load(model_file, device="cpu", backend="eager")
    assert stylizer.strokes is None and stylizer.rows is None
    x = torch.rand(3, 40, 48)
    assert stylizer.stylize_tensor(x, scale=2.0).shape == x.shape  # --scale stays for them
    with pytest.raises(InstyleError, match="no stroke rows"):
        stylizer.stylize_tensor(x, stroke=1.0)


def test_stylizer_stroke_runs_at_full_resolution_and_builds_each_value_once(rows_file: Path) -> None:
    stylizer = Stylizer.load(rows_file, device="cpu", backend="eager")
    assert stylizer.strokes == (0.5, 1.0, 2.0)
    rows, _card = load_model(rows_file)
    x = torch.rand(1, 3, 44, 52)
    for index, stroke in enumerate(STROKES):
        set_style_index(rows, index)
        ref = rows(x).clamp(0, 1)
        torch.testing.assert_close(stylizer.stylize_tensor(x, stroke=stroke), ref, atol=1e-5, rtol=1e-5)
    assert stylizer.runner_at(1.3) is stylizer.runner_at(1.3 + 1e-9)  # built once per value
    assert stylizer.runner_at(None) is stylizer.runner  # the default stroke's network
    between = stylizer.stylize_tensor(x, stroke=0.7)
    assert between.shape == x.shape
    ends = [stylizer.stylize_tensor(x, stroke=s) for s in (0.5, 1.0)]
    assert (between - ends[0]).abs().mean() > 1e-4 and (between - ends[1]).abs().mean() > 1e-4
    with pytest.raises(InstyleError, match=r"between 0\.5 and 2"):
        stylizer.stylize_tensor(x, stroke=4.0)


def test_cli_stroke_out_of_range_is_one_line(rows_file: Path, model_file: Path, tmp_path: Path, style_image: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.png"
    for model, stroke, needle in ((rows_file, "3", "--stroke must be between 0.5 and 2"),
                                  (model_file, "1", "--stroke: this model has no stroke rows")):
        code = main(["stylize", str(style_image), "-m", str(model), "-o", str(out), "--stroke", stroke,
                     "--backend", "eager"])
        err = capsys.readouterr().err
        assert code == 2 and needle in err, err
        assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["stylize", str(style_image), "-m", str(rows_file), "-o", str(out), "--stroke", "1.5",
                 "--backend", "eager"]) == 0
    assert out.is_file()


def test_web_app_lists_rows_and_checks_the_stroke(rows_file: Path, model_file: Path) -> None:
    pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from instyle.apps.serve import create_app

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (120, 60, 200)).save(buf, format="PNG")
    png = buf.getvalue()
    app = create_app(models={"rows": rows_file, "plain": model_file}, device="cpu", backend="eager")
    with TestClient(app) as client:
        styles = {s["name"]: s for s in client.get("/api/styles").json()["styles"]}
        assert styles["rows"]["strokes"] == STROKES and styles["rows"]["defaults"]["stroke"] == 1.0
        assert styles["plain"]["strokes"] is None

        def post(style: str, **form: str):
            return client.post("/api/stylize", files={"image": ("p.png", png, "image/png")},
                               data={"style": style, **form})

        ok = post("rows", stroke="1.41")
        assert ok.status_code == 200 and Image.open(io.BytesIO(ok.content)).size == (40, 30)
        far = post("rows", stroke="3")
        assert far.status_code == 422 and "between 0.5 and 2" in far.json()["detail"]
        assert post("plain", stroke="1").status_code == 422
        assert post("plain", scale="2").status_code == 200


def test_init_copies_a_single_style_affine_into_every_row(model_file: Path, tmp_path: Path, style_image: Path,
                                                          photos_dir: Path) -> None:
    cfg = TrainConfig(style=str(style_image), content=str(photos_dir), output=str(tmp_path / "r.safetensors"),
                      arch="johnson-half", strokes=STROKES, init=str(model_file))
    model = create_model("johnson-half", styles=3)
    init_from_model(model, cfg)
    single, _ = load_model(model_file)
    plain = dict(single.named_modules())
    for name, m in model.named_modules():
        if isinstance(m, Norm2d):
            for row in range(3):
                assert torch.equal(m.weight[row], plain[name].weight) and torch.equal(m.bias[row], plain[name].bias)
    assert broadcast_rows(single.state_dict(), model).keys() == model.state_dict().keys()


def test_init_from_a_row_model_starts_each_new_row_where_stroke_would_be(rows_file: Path, tmp_path: Path,
                                                                        style_image: Path, photos_dir: Path) -> None:
    rows, card = load_model(rows_file)

    def cfg(strokes: list[float]) -> TrainConfig:
        return TrainConfig(style=str(style_image), content=str(photos_dir), output=str(tmp_path / "r.safetensors"),
                           arch="johnson-half", strokes=strokes, init=str(rows_file))

    single = create_model("johnson-half")  # no --strokes: the network of the card's default stroke (1)
    init_from_model(single, cfg([]))
    want = at_stroke(rows, card, 1.0).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in single.state_dict().items())
    other = create_model("johnson-half", styles=2)  # other rows: each at its stroke, clamped to 0.5..2
    init_from_model(other, cfg([0.7, 4.0]))
    at = {s: dict(at_stroke(rows, card, s).named_modules()) for s in (0.7, 2.0)}
    norms = [(n, m) for n, m in other.named_modules() if isinstance(m, Norm2d)]
    assert norms and all(torch.equal(m.weight[r], at[s][n].weight) and torch.equal(m.bias[r], at[s][n].bias)
                         for n, m in norms for r, s in ((0, 0.7), (1, 2.0)))
    with pytest.raises(InstyleError, match="another architecture"):
        init_from_model(create_model("ulyanov"), cfg([]))


def test_stroke_training_writes_the_rows_into_the_card(tmp_path: Path, style_image: Path, photos_dir: Path,
                                                       model_file: Path) -> None:
    cfg = TrainConfig(style=str(style_image), content=str(photos_dir), output=str(tmp_path / "r.safetensors"),
                      arch="johnson-half", size=32, style_size=48, batch=3, iters=2, holdout=2, eval_every=2,
                      vgg_weights="random", precision="fp32", strokes=STROKES, init=str(model_file),
                      loss="johnson-balanced", log_every=1)
    card = train(cfg, progress=False)
    assert card.strokes == (0.5, 1.0, 2.0) and card.arch_kwargs["styles"] == 3
    assert [r["stroke"] for r in card.metrics["holdout_curve"]] == STROKES
    balance = card.data["loss_balance"]
    assert set(balance["start_shares"].values()) == {0.25}
    assert card.data["loss"]["style_layers"] == pytest.approx(balance["style_layers"], rel=1e-5)
    shares = card.metrics["style_layer_shares"]
    assert set(shares) == {"first_log", "last_log"} and shares["last_log"]["step"] == 2
    assert sum(v for k, v in shares["last_log"].items() if k != "step") == pytest.approx(1, abs=0.01)
    loaded = Stylizer.load(cfg.output, device="cpu", backend="eager")
    assert loaded.stylize_tensor(torch.rand(3, 36, 36), stroke=0.7).shape == (3, 36, 36)
    assert "--strokes 0.5 1.0 2.0" in train_command(card)
    # evaluate: a row model at its default stroke, on its own (balanced) objective, or on a fixed preset's
    own = score_models([cfg.output], size=32)[0]
    at_one = [r for r in card.metrics["holdout_curve"] if r["stroke"] == 1.0][-1]
    assert own["total"] == pytest.approx(at_one["total"], rel=1e-3)
    assert score_models([cfg.output], size=32, loss="johnson")[0]["style"] != pytest.approx(own["style"], rel=1e-2)
    for bad, needle in (({"strokes": [1.0]}, "2 to"), ({"strokes": [2.0, 1.0]}, "increasing"),
                        ({"strokes": [1.0, 20.0]}, "between"), ({"style": [str(style_image)] * 2}, "exactly one")):
        with pytest.raises(InstyleError, match=needle):
            TrainConfig(**{**cfg.__dict__, **bad}).validate()


def test_balanced_preset_equalises_layers_and_leaves_the_fixed_preset_alone() -> None:
    base = get_preset("johnson")
    assert get_preset("johnson-balanced").to_dict() == base.to_dict()  # resolved per run, not here
    vgg = VGG16Features(["relu1_2", "relu2_2", "relu3_3", "relu4_3"], weights="random")
    loss = PerceptualLoss(get_preset("johnson-balanced"), vgg=vgg)
    loss.set_style(torch.rand(1, 3, 48, 48).pow(3))
    photos = torch.rand(2, 3, 40, 40)
    info = balance_style_layers(loss, photos)
    assert set(info["start_shares"].values()) == {0.25}
    assert info["start_shares_unbalanced"] != info["start_shares"]
    before = sum(base.style_layers[k] * v for k, v in info["start_distances"].items())
    after = sum(loss.config.style_layers[k] * v for k, v in info["start_distances"].items())
    assert after == pytest.approx(before, rel=1e-4)  # the style term keeps its size at the start
    assert get_preset("johnson").style_layers == {k: 1.0 for k in base.style_layers}
    assert style_layer_shares(LossConfig(style_layers={"a": 1.0, "b": 3.0}), {"a": 1.0, "b": 1.0}) == \
        {"a": 0.25, "b": 0.75}


def test_stroke_figures_follow_stroke_size_and_sharpness() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    photo = np.full((160, 200, 3), 0.5)
    sizes, energies = [], []
    for block in (2, 4, 8):
        noise = rng.random((160 // block + 1, 200 // block + 1, 1)).repeat(block, 0).repeat(block, 1)[:160, :200]
        styled = np.clip(photo + 0.3 * (np.repeat(noise, 3, 2) - 0.5), 0, 1)
        sizes.append(correlation_length(styled, photo))
        energies.append(high_frequency_energy(styled))
    assert sizes[0] < sizes[1] < sizes[2] and sizes[2] / sizes[0] > 3
    assert energies[0] > energies[1] > energies[2]


def test_live_mode_takes_a_stroke_and_clamps_it_to_each_styles_rows(rows_file: Path, model_file: Path) -> None:
    pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")
    import io

    from PIL import Image

    from instyle.apps.serve.app import StyleRegistry
    from instyle.apps.serve.live import Frame, LiveConfig, LiveError, apply_control, stylize_frame

    registry = StyleRegistry({"rows": rows_file, "plain": model_file}, device="cpu", backend="eager")
    config = apply_control('{"stroke": 1.5}', LiveConfig("rows"), registry.entries)
    assert config.stroke == 1.5
    with pytest.raises(LiveError, match="stroke must be a number"):
        apply_control('{"stroke": 50}', config, registry.entries)
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), (30, 90, 160)).save(buf, format="PNG")
    frame = Frame(1, buf.getvalue())
    for cfg in (config, LiveConfig("rows", stroke=9.0), LiveConfig("plain", stroke=1.5)):  # clamped / ignored
        assert Image.open(io.BytesIO(stylize_frame(registry, frame, cfg))).size == (48, 40)


def test_an_interpolated_stroke_runs_on_onnx_runtime_like_eager(rows_file: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the export extra")
    onnx = Stylizer.load(rows_file, device="cpu", backend="onnxruntime")
    eager = Stylizer.load(rows_file, device="cpu", backend="eager")
    x = torch.rand(1, 3, 40, 52)
    assert onnx.runner_at(0.8).backend == "onnxruntime"
    torch.testing.assert_close(onnx.stylize_tensor(x, stroke=0.8), eager.stylize_tensor(x, stroke=0.8),
                               atol=1e-4, rtol=0)

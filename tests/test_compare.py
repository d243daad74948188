"""`instyle evaluate`: several models scored on the same held-out photos under one objective."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instyle.apps.cli import main
from instyle.models.modelfile import load_model, read_card, save_model
from instyle.training.config import TrainConfig
from instyle.training.evaluate import default_photos, score_models
from instyle.training.loop import train


def _train(photos: Path, style: Path, out: Path, iters: int) -> Path:
    train(TrainConfig(style=str(style), content=str(photos), output=str(out), arch="johnson-half", size=48,
                      style_size=64, batch=2, iters=iters, lr=5e-3, precision="fp32", holdout=2, eval_every=iters,
                      checkpoint_every=1000, vgg_weights="random"), progress=False)
    return out


@pytest.fixture(scope="module")
def two_models(photos_dir: Path, style_image: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("models")
    return [_train(photos_dir, style_image, root / "short.safetensors", 2),
            _train(photos_dir, style_image, root / "long.safetensors", 12)]


def test_scores_reproduce_the_runs_own_held_out_loss(two_models: list[Path], style_image: Path) -> None:
    short, long = two_models
    card = read_card(short)
    held = default_photos(card)
    assert len(held) == 2 and all(p.parent == Path(card.data["train"]["content"]) for p in held)
    rows = score_models([short, long], style=style_image, size=48)
    assert [Path(r["model"]).name for r in rows] == ["short.safetensors", "long.safetensors"]
    assert rows[0]["photos"] == rows[1]["photos"] == 2
    # same photos, crops, loss and precision as the held-out evaluation at the end of training
    assert rows[0]["total"] == pytest.approx(card.data["metrics"]["holdout_final"]["total"], rel=1e-3)
    assert rows[1]["total"] < rows[0]["total"], "the longer run scores better on the same test"


def test_the_training_style_image_is_found_where_it_was(two_models: list[Path], photos_dir: Path) -> None:
    rows = score_models(two_models, [photos_dir / "p00.jpg"], size=48)  # no --style needed
    assert rows[1]["total"] < rows[0]["total"]


def test_cli_prints_a_table_and_writes_json(two_models: list[Path], style_image: Path, photos_dir: Path,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scores.json"
    code = main(["evaluate", *map(str, two_models), "--style", str(style_image), "--size", "48",
                 "--photos", str(photos_dir), "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "| short.safetensors | 2 |" in text and "| long.safetensors | 12 |" in text
    rows = json.loads(out.read_text())
    assert [r["photos"] for r in rows] == [12, 12]


def test_bad_requests_get_one_line_errors(two_models: list[Path], photos_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # the style it trained on moved away and is not among the fetched data: say so, ask for --style
    card = read_card(two_models[0])
    moved = tmp_path / "moved.safetensors"
    card.data["train"]["style"] = str(tmp_path / "gone" / "stripes.png")
    save_model(load_model(two_models[0])[0], card, moved)
    assert main(["evaluate", str(moved), "--photos", str(photos_dir)]) == 2
    assert "style 'stripes' not found" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.safetensors")]) == 2
    assert "no such model file" in capsys.readouterr().err

"""Stylizing every odd kind of input through the API and the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instyle.apps.cli import main
from instyle.inference.stylizer import Stylizer


@pytest.fixture(scope="module")
def stylizer(model_file: Path) -> Stylizer:
    return Stylizer.load(model_file, device="cpu")


def _odd_inputs(root: Path) -> dict[str, Path]:
    """One file per awkward kind of image users throw at us."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (53, 71, 3), dtype=np.uint8))
    files: dict[str, Path] = {}

    def put(name: str, img: Image.Image, **kw: object) -> None:
        files[name] = root / name
        img.save(files[name], **kw)

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    put("exif.jpg", rgb, exif=exif)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(71, dtype=np.uint8) * 3, (53, 1))))
    put("rgba.png", rgba)
    put("gray.png", rgb.convert("L"))
    put("gray16.png", Image.fromarray((rng.integers(0, 65535, (40, 30))).astype(np.uint16)))
    put("palette.gif", rgb.convert("P"))
    put("cmyk.jpg", rgb.convert("CMYK"))
    put("odd.png", rgb.resize((333, 77)))
    put("tiny.png", rgb.resize((1, 1)))
    return files


def test_api_returns_same_size_and_keeps_alpha(stylizer: Stylizer) -> None:
    img = Image.new("RGBA", (37, 23), (10, 200, 30, 128))
    out = stylizer(img)
    assert out.size == img.size and out.mode == "RGBA"
    assert np.array(out.getchannel("A")).max() == 128
    assert stylizer(Image.new("L", (50, 9))).size == (50, 9)
    x = torch.rand(2, 3, 30, 41)
    y = stylizer.module(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


def test_cli_stylizes_every_odd_kind(model_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    files = _odd_inputs(src)
    before = {p: p.read_bytes() for p in files.values()}
    out = tmp_path / "out"
    assert main(["stylize", str(src), "-m", str(model_file), "-o", str(out)]) == 0
    for name, path in files.items():
        res = Image.open(out / name.replace(".gif", ".png"))
        with Image.open(path) as orig:
            w, h = orig.size
        expected = (h, w) if name == "exif.jpg" else (w, h)  # EXIF orientation applied
        assert res.size == expected, name
    assert Image.open(out / "rgba.png").mode == "RGBA"
    assert all(p.read_bytes() == b for p, b in before.items()), "inputs are never modified"


def test_bad_files_get_one_line_and_the_rest_are_done(model_file: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (40, 30), "red").save(src / "good.jpg")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (src / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (src / "notes.png").write_text("this is not an image")
    code = main(["stylize", str(src), "-m", str(model_file), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert (tmp_path / "out" / "good.jpg").exists()
    assert "truncated.jpg" in err and "notes.png" in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "truncated.jpg" in ln]) == 1


def test_output_onto_input_is_refused(model_file: Path, tmp_path: Path, capsys) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (20, 20), "blue").save(photo)
    data = photo.read_bytes()
    assert main(["stylize", str(photo), "-m", str(model_file), "-o", str(photo)]) != 0
    assert photo.read_bytes() == data
    assert "input" in capsys.readouterr().err


def test_decompression_bomb_is_refused_unless_allowed(model_file: Path, tmp_path: Path, capsys) -> None:
    photo = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(photo)
    out = tmp_path / "o.png"
    assert main(["stylize", str(photo), "-m", str(model_file), "-o", str(out), "--max-pixels", "10000"]) == 1
    assert "max-pixels" in capsys.readouterr().err and not out.exists()
    assert main(["stylize", str(photo), "-m", str(model_file), "-o", str(out), "--max-pixels", "0"]) == 0
    assert Image.open(out).size == (200, 100)


def test_format_follows_output_extension(model_file: Path, tmp_path: Path) -> None:
    photo = tmp_path / "p.png"
    Image.new("RGBA", (20, 16), (1, 2, 3, 40)).save(photo)
    for ext, fmt in ((".jpg", "JPEG"), (".webp", "WEBP"), (".tiff", "TIFF")):
        out = tmp_path / f"o{ext}"
        assert main(["stylize", str(photo), "-m", str(model_file), "-o", str(out)]) == 0
        assert Image.open(out).format == fmt
    assert main(["stylize", str(photo), "-m", str(model_file), "-o", str(tmp_path / "f"), "--format", "jpg"]) == 0
    assert (tmp_path / "f" / "p.jpg").exists()

"""The artistic controls (strength, colour preservation, stroke scale) and their CLI flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instyle.apps.cli import main
from instyle.inference.controls import rgb_to_ycbcr
from instyle.inference.stylizer import Stylizer


@pytest.fixture(scope="module")
def stylizer(model_file: Path) -> Stylizer:
    return Stylizer.load(model_file, device="cpu", backend="eager")


class Stripes(torch.nn.Module):
    """A stand-in 'style' with known strokes: vertical stripes 4 px apart, in shifted colours.

    A random-init network's texture has no defined stroke size or colour cast, so scale and colour
    preservation are checked against this one, where both are known exactly.
    """

    period = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = torch.arange(x.shape[-1], dtype=x.dtype)
        stripes = 0.15 * torch.cos(2 * torch.pi * cols / self.period)
        return 0.6 * x[:, [2, 0, 1]] + 0.2 + stripes


@pytest.fixture(scope="module")
def stripes() -> Stylizer:
    return Stylizer(Stripes(), device="cpu", backend="eager")


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """Mid-tone smooth colours, so colour transfers stay inside the RGB gamut (no clamping)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    return torch.stack([0.3 + 0.4 * xx, 0.35 + 0.3 * yy, 0.6 - 0.2 * xx * yy])[None]


def test_strength_zero_is_the_photo_and_one_the_stylization(stylizer: Stylizer, photo: torch.Tensor) -> None:
    full = stylizer.stylize_tensor(photo)
    assert torch.allclose(stylizer.stylize_tensor(photo, strength=0.0), photo, atol=1e-6)
    assert torch.allclose(stylizer.stylize_tensor(photo, strength=1.0), full)
    with torch.no_grad():
        assert torch.allclose(full, stylizer.module(photo))
    half = stylizer.stylize_tensor(photo, strength=0.5)
    assert torch.allclose(half, (photo + full) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="strength"):
        stylizer.stylize_tensor(photo, strength=1.5)


def test_preserve_color_keeps_the_photos_chroma(stripes: Stylizer, photo: torch.Tensor) -> None:
    plain = stripes.stylize_tensor(photo)
    kept = stripes.stylize_tensor(photo, preserve_colors=True)
    ycc_photo, ycc_plain, ycc_kept = (rgb_to_ycbcr(t) for t in (photo, plain, kept))
    assert (ycc_kept[:, 1:] - ycc_photo[:, 1:]).abs().mean() < 0.01  # chroma from the photo
    assert (ycc_plain[:, 1:] - ycc_photo[:, 1:]).abs().mean() > 0.02  # ... which plain output does not have
    assert (ycc_kept[:, :1] - ycc_plain[:, :1]).abs().mean() < 0.02  # luminance from the stylization


def _stroke_period(x: torch.Tensor) -> float:
    """The dominant horizontal period (px) of the image's luminance: the stroke spacing."""
    luma = rgb_to_ycbcr(x)[0, 0]
    spectrum = torch.fft.rfft(luma - luma.mean(dim=1, keepdim=True), dim=1).abs().mean(dim=0)
    return x.shape[-1] / int(spectrum[1:].argmax() + 1)


def test_scale_changes_strokes_not_size(stripes: Stylizer, stylizer: Stylizer, photo: torch.Tensor) -> None:
    big = torch.nn.functional.interpolate(photo, size=(64, 128), mode="bilinear", align_corners=False)
    periods = {}
    for scale in (1.0, 2.0, 4.0):
        out = stripes.stylize_tensor(big, scale=scale)
        assert out.shape == big.shape
        periods[scale] = _stroke_period(out)
    assert periods == {1.0: 4, 2.0: 8, 4.0: 16}
    real = [stylizer.stylize_tensor(big, scale=s) for s in (0.5, 1.0, 2.0)]
    assert all(r.shape == big.shape for r in real)
    assert not torch.allclose(real[1], real[2], atol=1e-3)
    with pytest.raises(ValueError, match="scale"):
        stylizer.stylize_tensor(big, scale=0.0)


def test_pil_call_forwards_controls(stylizer: Stylizer, photo: torch.Tensor) -> None:
    img = Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    out = stylizer(img, strength=0.0, preserve_colors=True, scale=1.5)
    assert out.size == img.size
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(img, dtype=int)).max() <= 1


@pytest.mark.parametrize(("flags", "message"), [
    (["--strength", "1.5"], "--strength must be between 0 and 1"),
    (["--strength", "-0.1"], "--strength must be between 0 and 1"),
    (["--scale", "0"], "--scale must be between 0.1 and 8"),
    (["--scale", "9"], "--scale must be between 0.1 and 8"),
])
def test_cli_validates_control_flags(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     flags: list[str], message: str) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (20, 16), (120, 80, 40)).save(src)
    assert main(["stylize", str(src), "-m", str(model_file), "-o", str(tmp_path / "out.png"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_cli_controls_are_applied(model_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (20, 16), (120, 80, 40)).save(src)
    out = tmp_path / "out.png"
    assert main(["stylize", str(src), "-m", str(model_file), "-o", str(out), "--strength", "0",
                 "--preserve-color", "--scale", "2", "--backend", "eager"]) == 0
    assert np.abs(np.asarray(Image.open(out), dtype=int) - np.asarray(Image.open(src), dtype=int)).max() <= 1
    with pytest.raises(SystemExit):
        main(["stylize", str(src), "-m", str(model_file), "-o", str(out), "--strength", "lots"])

"""``instyle export``: ONNX and TorchScript files that match PyTorch on sizes not seen at export time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from instyle.apps.cli import main
from instyle.inference.export import ExportWrapper, min_side, size_multiple
from instyle.inference.stylizer import Stylizer

SIZES = [(64, 64), (70, 45)]  # 70x45: not a multiple of 4, so the graph must compute its own padding


def _inputs(h: int, w: int) -> torch.Tensor:
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))


@pytest.mark.slow
def test_onnx_matches_pytorch_on_two_sizes(model_file: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need the 'export' extra")
    pytest.importorskip("onnx", reason="ONNX export needs the 'export' extra")
    out = tmp_path / "tiny.onnx"
    assert main(["export", "-m", str(model_file), "--format", "onnx", "-o", str(out)]) == 0
    card = json.loads((tmp_path / "tiny.onnx.json").read_text())
    assert card["export_format"] == "onnx" and card["input"]["shape"] == ["N", 3, "H", "W"]
    assert card["model"]["arch"] == "johnson-half"
    module = Stylizer.load(model_file, device="cpu").module
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for h, w in SIZES:
        x = _inputs(h, w)
        got = session.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            want = module(x).numpy()
        assert got.shape == (2, 3, h, w)
        assert np.abs(got - want).max() < 1e-4
        assert got.min() >= 0 and got.max() <= 1


@pytest.mark.slow
def test_torchscript_handles_new_sizes(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    assert main(["export", "-m", str(model_file), "--format", "torchscript", "-o", str(out)]) == 0
    loaded = torch.jit.load(str(out))
    module = Stylizer.load(model_file, device="cpu").module
    for h, w in [*SIZES, (33, 100)]:
        x = _inputs(h, w)
        with torch.no_grad():
            assert (loaded(x) - module(x)).abs().max().item() < 1e-5


def test_wrapper_matches_eager_padding(model_file: Path) -> None:
    module = Stylizer.load(model_file, device="cpu").module
    multiple, min_size = size_multiple(module)
    wrapper = ExportWrapper(module, multiple, min_size).eval()
    assert (multiple, min_size) == (4, 16) and min_side(4) == 9 and min_side(32, 64) == 33
    x = _inputs(21, 30)
    with torch.no_grad():
        assert torch.equal(wrapper(x), module(x))


def test_export_errors(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "-m", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "no such model file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "-m", str(model_file), "--format", "tflite", "-o", str(tmp_path / "x.tflite")])

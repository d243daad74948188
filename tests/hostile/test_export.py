"""``instyle export`` against outputs that would destroy the model, and arguments it cannot honour.

Every refusal happens before the model is loaded, so these cases are fast; one export per format
checks the happy path still writes both files atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from tests.hostile.conftest import assert_refused, snapshot

from instyle.core.errors import InstyleError
from instyle.inference.export import MIN_OPSET, export_model, max_opset

pytest.importorskip("onnx", reason="ONNX export needs the 'export' extra")


@pytest.fixture
def model(model_file: Path, tmp_path: Path) -> Path:
    """A private copy of the model with its ``.json`` card, so a failed refusal cannot spoil others."""
    dst = tmp_path / "m.safetensors"
    shutil.copy(model_file, dst)
    shutil.copy(model_file.with_suffix(".json"), tmp_path / "m.json")
    return dst


def unwritable_dir(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: chmod 555 as a user, a sysfs folder as root."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    candidates = [ro, Path("/sys/kernel")]
    for d in candidates:
        try:
            fd, name = tempfile.mkstemp(dir=d)
        except OSError:
            return d
        os.close(fd)
        os.unlink(name)
    pytest.skip("no folder here refuses writes (root on a writable /sys)")


def _targets(tmp: Path, model: Path) -> dict[str, Path]:
    link = tmp / "link.onnx"
    link.symlink_to(model)
    hard = tmp / "hard.onnx"
    os.link(model, hard)
    return {
        "the-model": model,                                 # #16 item 2
        "the-models-card": model.with_suffix(".json"),
        "bare-name": tmp / "m",                             # its card m.json would be the model's card
        "symlink-to-model": link,
        "hard-link-to-model": hard,
        "dotdot-path": tmp / "sub" / ".." / "m.safetensors",
    }


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("target", ["the-model", "the-models-card", "bare-name", "symlink-to-model",
                                    "hard-link-to-model", "dotdot-path"])
def test_output_onto_the_model_is_refused(cli, model: Path, tmp_path: Path, fmt: str, target: str) -> None:
    out = _targets(tmp_path, model)[target]
    (tmp_path / "sub").mkdir(exist_ok=True)
    before = snapshot([tmp_path])
    assert_refused(cli("export", "-m", model, "--format", fmt, "-o", out), says="refusing to overwrite the model",
                   unchanged=before)


def test_output_that_is_a_folder_is_refused(cli, model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    assert_refused(cli("export", "-m", model, "-o", folder), says="is a folder")
    assert list(folder.iterdir()) == []


def test_card_path_that_is_a_folder_is_refused(cli, model: Path, tmp_path: Path) -> None:
    (tmp_path / "x.onnx.json").mkdir()
    assert_refused(cli("export", "-m", model, "-o", tmp_path / "x.onnx"), says="is a folder")
    assert not (tmp_path / "x.onnx").exists()


def test_unwritable_output_folder_is_refused(cli, model: Path, tmp_path: Path) -> None:
    ro = unwritable_dir(tmp_path)
    assert_refused(cli("export", "-m", model, "-o", ro / "x.onnx"), says="cannot write")


@pytest.mark.parametrize("opset", ["3", "10", "99", "-1"])
def test_unsupported_opset_is_refused_before_loading(cli, model: Path, tmp_path: Path, opset: str) -> None:
    out = tmp_path / "x.onnx"
    assert_refused(cli("export", "-m", model, "-o", out, "--opset", opset), says="--opset")
    assert not out.exists()


def test_opset_bounds_are_the_ones_that_work() -> None:
    assert MIN_OPSET == 11 and max_opset() >= 17
    with pytest.raises(InstyleError, match="opset"):
        export_model("any", "x.onnx", opset=True)  # a bool is not an opset number


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "name"), [("onnx", "x.onnx"), ("torchscript", "x.pt")])
def test_export_still_writes_both_files_and_leaves_no_temp(cli, model: Path, tmp_path: Path, fmt: str,
                                                            name: str) -> None:
    before = snapshot([model, model.with_suffix(".json")])
    out = tmp_path / "exports" / name
    outcome = cli("export", "-m", model, "--format", fmt, "-o", out, "--opset", str(MIN_OPSET))
    assert outcome.code == 0, outcome
    assert json.loads((tmp_path / "exports" / f"{name}.json").read_text())["file"] == name
    assert snapshot([model, model.with_suffix(".json")]) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]

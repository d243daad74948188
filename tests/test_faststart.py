"""The torch-free fast start of ``instyle stylize`` (#23): which command lines it takes, and that it
steps aside (writing nothing) whenever it cannot vouch for the result. The full round trip, with a
compiled package, is in tests/test_compiled_cache.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instyle.inference import faststart


@pytest.mark.parametrize(("argv", "want"), [
    (["stylize", "a.jpg", "-s", "starry-night", "-o", "b.png"], ("a.jpg", "starry-night", "b.png")),
    (["stylize", "-o", "b.png", "--model", "m.safetensors", "a.jpg"], ("a.jpg", "m.safetensors", "b.png")),
    (["stylize", "a.jpg", "b.jpg", "-s", "x", "-o", "out"], None),  # two inputs
    (["stylize", "a.jpg", "-s", "x", "-o", "b.png", "--strength", "0.5"], None),  # any other flag
    (["stylize", "a.jpg", "--style=x", "-o", "b.png"], None),
    (["stylize", "a.jpg", "-s", "x", "-s", "y", "-o", "b.png"], None),
    (["stylize", "a.jpg", "-s", "x"], None),
    (["stylize", "a.jpg", "-o"], None),
    (["train", "--style", "x"], None),
    ([], None),
])
def test_only_a_plain_stylize_is_taken(argv: list[str], want: tuple[str, str, str] | None) -> None:
    assert faststart._parse(argv) == want


def test_without_a_record_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style_image: Path
                                            ) -> None:
    monkeypatch.setenv("INSTYLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("INSTYLE_AOT", "1")  # the suite turns compiled packages off; here they are allowed
    out = tmp_path / "out.png"
    argv = ["stylize", str(style_image), "-s", "starry-night", "-o", str(out)]
    assert faststart._parse(argv) is not None and faststart._load_record(faststart._model_path("starry-night")) is None
    assert faststart.try_stylize(argv) is None
    assert not out.exists()
    monkeypatch.setenv("INSTYLE_FASTSTART", "0")
    assert faststart.try_stylize(["stylize", str(style_image), "-s", "starry-night", "-o", str(out)]) is None


def test_the_fast_start_modules_import_without_torch() -> None:
    code = ("import sys; import instyle.apps.cli, instyle.inference.faststart, instyle.data.images, "
            "instyle.inference.outputs; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_the_thread_count_follows_torch_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert faststart._threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert faststart._threads() is None  # never equal to a recorded count: the torch path runs
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= faststart._threads() <= (os.cpu_count() or 1)


def fresh_stylize(env: dict[str, str], *argv: str) -> tuple[int, bool]:
    """``instyle stylize`` in a new process: (its return code, whether torch got imported). The
    fast-start tests of both engines use it (``test_compiled_cache`` for the compiled package)."""
    code = ("import sys; from instyle.apps.cli import main; rc = main(sys.argv[1:]); "
            "print('rc', rc, 'torch', 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, "stylize", *argv], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    return int(words[-3]), words[-1] == "True"


@pytest.mark.slow
def test_an_onnx_runtime_pick_also_skips_torch_and_writes_the_same_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPUs without AMX ``auto`` usually picks ONNX Runtime: its fast start runs the cached,
    checked graph without torch, byte for byte the torch path's file; a damaged graph, another
    thread count or a changed model sends the call back to the torch path."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import torch
    from PIL import Image

    from instyle.inference import backends
    from instyle.models.modelfile import load_model, save_model
    from instyle.zoo import resolve_model

    cache, model, photo = tmp_path / "cache", tmp_path / "m.safetensors", tmp_path / "p.png"
    generator, card = load_model(resolve_model("starry-night-fast"))
    save_model(generator, card, model)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (70, 93, 3), dtype=np.uint8)).save(photo)
    monkeypatch.setenv("INSTYLE_CACHE", str(cache))
    monkeypatch.setenv("INSTYLE_AOT", "1")  # the suite turns fast starts off; here they are the point
    monkeypatch.setattr(backends, "auto_candidates", lambda device: ["onnxruntime", "eager"])
    monkeypatch.setattr(backends, "RACE_SIZE", (64, 64))
    monkeypatch.setattr(backends, "_race", lambda runners, size: {"onnxruntime": 1.0, "eager": 2.0})
    from instyle.apps.cli import main

    assert main(["stylize", str(photo), "-m", str(model), "-o", str(tmp_path / "torch.png")]) == 0
    (record,) = (cache / "compiled" / "faststart").glob("*.json")
    assert json.loads(record.read_text())["engine"] == "onnxruntime"
    env = {"INSTYLE_CACHE": str(cache), "INSTYLE_AOT": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    assert fresh_stylize(env, str(photo), "-m", str(model), "-o", str(tmp_path / "fast.png")) == (0, False)
    assert (tmp_path / "fast.png").read_bytes() == (tmp_path / "torch.png").read_bytes()

    graph = Path(json.loads(record.read_text())["graph"])
    intact = graph.read_bytes()
    graph.write_bytes(intact[:-1] + bytes([intact[-1] ^ 1]))  # one bit: never run, the torch path decides
    assert faststart._load_record(model) is None
    graph.write_bytes(intact)
    assert faststart._load_record(model) is not None
    original = model.read_bytes()
    with torch.no_grad():
        next(generator.parameters()).mul_(1.01)
    save_model(generator, card, model)  # the model changed under its record
    assert faststart._load_record(model) is None
    model.write_bytes(original)
    other = {**env, "OMP_NUM_THREADS": str(torch.get_num_threads() + 1)}
    assert fresh_stylize(other, str(photo), "-m", str(model), "-o", str(tmp_path / "t.png"))[1] is True

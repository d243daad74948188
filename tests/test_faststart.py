"""The torch-free fast start of ``instyle stylize`` (#23): which command lines it takes, and that it
steps aside (writing nothing) whenever it cannot vouch for the result. The full round trip, with a
compiled package, is in tests/test_compiled_cache.py."""

from __future__ import annotations

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

"""``instyle stylize`` against output plans that would lose results, and stroke-scale bombs.

A plan is checked before any work: two inputs that would write one output, or an output that is an
input, stop the run with one line and nothing written. The report counts what is really on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.hostile.conftest import Outcome, assert_refused, snapshot

from instyle.data.images import ImageError
from instyle.inference.stylizer import Stylizer, plan_outputs


def _img(path: Path, w: int = 24, h: int = 18, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_skipped(outcome: Outcome, says: str) -> None:
    """A run whose inputs all failed: exit 1, one line for the file (with ``says``) plus the summary."""
    assert outcome.code == 1, outcome
    assert "Traceback" not in outcome.err + outcome.out
    lines = outcome.error_lines()
    assert len(lines) == 2 and says.lower() in lines[0].lower() and "failed" in lines[1], lines


def _clash_two_folders(tmp: Path) -> tuple[list[Path], list[str]]:
    return [_img(tmp / "d1" / "x.png"), _img(tmp / "d2" / "x.png", seed=1)], [str(tmp / "d1"), str(tmp / "d2")]


def _clash_two_files(tmp: Path) -> tuple[list[Path], list[str]]:
    files = [_img(tmp / "d1" / "x.png"), _img(tmp / "d2" / "x.png", seed=1)]
    return files, [str(f) for f in files]


def _clash_format(tmp: Path) -> tuple[list[Path], list[str]]:
    files = [_img(tmp / "dir" / "x.png"), _img(tmp / "dir" / "x.jpg", seed=1)]
    return files, [str(tmp / "dir"), "--format", "jpg"]


def _clash_gif(tmp: Path) -> tuple[list[Path], list[str]]:
    """GIF is read but not written, so x.gif comes out as x.png, next to x.png's own result."""
    files = [_img(tmp / "dir" / "x.png"), _img(tmp / "dir" / "x.gif", seed=1)]
    return files, [str(tmp / "dir")]


def _clash_48(tmp: Path) -> tuple[list[Path], list[str]]:
    """The reported 48-image folder: 39 'written', 35 left. Some names differ only in extension."""
    files = []
    for i in range(40):
        files.append(_img(tmp / "dir" / f"p{i:02d}.png", seed=i))
    for i in range(8):
        files.append(_img(tmp / "dir" / f"p{i:02d}.jpg", seed=100 + i))
    return files, [str(tmp / "dir"), "--format", "webp"]


@pytest.mark.parametrize("build", [_clash_two_folders, _clash_two_files, _clash_format, _clash_gif, _clash_48])
def test_output_name_clashes_are_refused_before_any_work(cli, model_file: Path, tmp_path: Path, build) -> None:
    """#16 item 5: fails on the old code, which wrote one result over the other."""
    files, args = build(tmp_path)
    before = snapshot(files)
    out = tmp_path / "out"
    outcome = cli("stylize", *args, "-m", model_file, "-o", out)
    assert_refused(outcome, says="would both be written", unchanged=before)
    assert _files(out) == [], "nothing is written when the plan is refused"


def test_folder_run_mirrors_layout_and_reports_what_is_on_disk(cli, model_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    for i in range(24):
        _img(src / f"day{i % 4}" / f"p{i:02d}.jpg", w=12, h=10, seed=i)  # the same names under day0..day3
    _img(src / "p00.png", w=12, h=10)  # a top-level file named like the ones in the sub-folders
    out = tmp_path / "styled"
    outcome = cli("stylize", src, "-m", model_file, "-o", out, "--backend", "eager")
    assert outcome.code == 0, outcome
    written = _files(out)
    assert len(written) == 25 and f"wrote {len(written)} images" in outcome.out
    assert (out / "day3" / "p23.jpg").is_file() and (out / "p00.png").is_file()


def test_rerun_into_a_folder_inside_the_input_does_not_stylize_its_own_results(cli, model_file: Path,
                                                                               tmp_path: Path) -> None:
    src = tmp_path / "photos"
    originals = [_img(src / f"p{i}.png", seed=i) for i in range(3)]
    out = src / "styled"
    for _ in range(2):
        outcome = cli("stylize", src, "-m", model_file, "-o", out, "--backend", "eager")
        assert outcome.code == 0, outcome
    assert sorted(p.name for p in _files(out)) == ["p0.png", "p1.png", "p2.png"]
    assert not (out / "styled").exists()
    assert all(p.is_file() for p in originals)


def test_same_file_twice_is_done_once(cli, model_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "dir"
    f = _img(src / "x.png")
    outcome = cli("stylize", src, f, src, "-m", model_file, "-o", tmp_path / "out", "--backend", "eager")
    assert outcome.code == 0 and "wrote" in outcome.out and outcome.out.count("wrote") == 1, outcome


def _onto_itself(tmp: Path) -> tuple[list[Path], list[str | Path], Path]:
    f = _img(tmp / "a.png")
    return [f], [f], f


def _onto_own_folder(tmp: Path) -> tuple[list[Path], list[str | Path], Path]:
    files = [_img(tmp / "dir" / f"p{i}.png", seed=i) for i in range(3)]
    return files, [tmp / "dir"], tmp / "dir"


def _onto_hard_link(tmp: Path) -> tuple[list[Path], list[str | Path], Path]:
    f = _img(tmp / "a.png")
    os.link(f, tmp / "same.png")
    return [f], [f], tmp / "same.png"


def _onto_symlink(tmp: Path) -> tuple[list[Path], list[str | Path], Path]:
    f = _img(tmp / "a.png")
    (tmp / "link.png").symlink_to(f)
    return [f], [f], tmp / "link.png"


def _onto_other_input(tmp: Path) -> tuple[list[Path], list[str | Path], Path]:
    """in/sub/x.png's result would land on in2/sub/x.png, which is the other input."""
    a, b = _img(tmp / "in" / "sub" / "x.png"), _img(tmp / "in2" / "sub" / "x.png", seed=1)
    return [a, b], [tmp / "in", b], tmp / "in2"


@pytest.mark.parametrize("build", [_onto_itself, _onto_own_folder, _onto_hard_link, _onto_symlink, _onto_other_input])
def test_output_onto_an_input_is_refused_in_one_line(cli, model_file: Path, tmp_path: Path, build) -> None:
    files, inputs, out = build(tmp_path)
    before = snapshot(files)
    assert_refused(cli("stylize", *inputs, "-m", model_file, "-o", out), says="refusing to overwrite",
                   unchanged=before)


def test_plan_is_checked_in_one_pass_on_a_big_folder(tmp_path: Path) -> None:
    """5000 names: the plan (clash and not-an-input checks) must stay linear, not 2.5e7 path comparisons."""
    import time

    src = tmp_path / "many"
    src.mkdir()
    for i in range(5000):
        (src / f"{i:05d}.png").touch()
    t0 = time.perf_counter()
    pairs = plan_outputs([src], tmp_path / "out")
    assert len(pairs) == 5000 and time.perf_counter() - t0 < 15


@pytest.mark.parametrize(("side", "scale"), [(200, "0.1"), (120, "0.25")])
def test_cli_scale_bomb_is_refused_per_image(cli, model_file: Path, tmp_path: Path, side: int, scale: str) -> None:
    """#16 item 7 on the CLI: --max-pixels bounds what the network sees after --scale."""
    f = _img(tmp_path / "p.png", side, side)
    out = tmp_path / "o.png"
    outcome = cli("stylize", f, "-m", model_file, "-o", out, "--scale", scale, "--max-pixels", "100000")
    assert_skipped(outcome, says="pixel limit")
    assert not out.exists()


def test_api_scale_bomb_is_refused_before_allocating(model_file: Path) -> None:
    """A 1000x1000 photo at scale 0.1 would be 100 MP (1.2 GB of input alone); refused at once."""
    stylizer = Stylizer.load(model_file, device="cpu", backend="eager", max_pixels=2_000_000)
    with pytest.raises(ImageError, match="pixel limit"):
        stylizer.stylize_tensor(torch.zeros(3, 1000, 1000), scale=0.1)
    with pytest.raises(ImageError, match="pixel limit"):
        stylizer(Image.new("RGB", (1000, 1000)), scale=0.5)
    assert stylizer(Image.new("RGB", (40, 30)), scale=0.5, max_pixels=None).size == (40, 30)


def test_unwritable_output_folder_is_one_line_before_any_work(cli, model_file: Path, tmp_path: Path) -> None:
    from tests.hostile.test_export import unwritable_dir

    files = [_img(tmp_path / "in" / f"p{i}.png", seed=i) for i in range(3)]
    before = snapshot(files)
    assert_refused(cli("stylize", tmp_path / "in", "-m", model_file, "-o", unwritable_dir(tmp_path) / "out"),
                   says="cannot write", unchanged=before)


def test_output_folder_that_is_a_file_is_one_line(cli, model_file: Path, tmp_path: Path) -> None:
    files = [_img(tmp_path / "in" / f"p{i}.png", seed=i) for i in range(2)]
    (tmp_path / "notes").write_text("keep me")
    before = snapshot([*files, tmp_path / "notes"])
    assert_refused(cli("stylize", tmp_path / "in", "-m", model_file, "-o", tmp_path / "notes"), says="is a file",
                   unchanged=before)

"""The in-vs-bn experiment end to end on tiny data (the `smoke` preset), with the real VGG16."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from instyle.apps.cli import main
from instyle.experiments.in_vs_bn import PRESETS, VARIANTS


@pytest.mark.slow
def test_smoke_preset_writes_a_full_report(photos_dir: Path, style_image: Path, tmp_path: Path) -> None:
    out, work = tmp_path / "report", tmp_path / "work"
    second_style = tmp_path / "second.png"
    shutil.copy(style_image, second_style)
    args = ["experiment", "in-vs-bn", "--preset", "smoke", "--out", str(out), "--work", str(work),
            "--content", str(photos_dir), "--styles", f"{style_image},{second_style}", "--quiet"]
    assert main(args) == 0

    res = json.loads((out / "results.json").read_text())
    p = PRESETS["smoke"]
    assert len(res["per_run"]) == len(p.generators) * 2 * len(p.seeds) * len(VARIANTS)
    held = set(res["held_out"])
    trained = {f.name.split("_", 1)[1] for f in (work / "train_content").iterdir()}
    assert held and not held & trained, "held-out photos never reach training"
    for row in res["per_run"]:
        assert row["total"] > 0 and row["total_vs_gatys"] > 0 and row["contrast_change"] >= 0
    report = (out / "in-vs-bn.md").read_text()
    for needle in ("RQ1", "RQ2", "RQ3", "IN (running stats)", "BN (per-image stats)", "grid-stripes.png"):
        assert needle in report
    assert (out / "grid-stripes.png").stat().st_size > 1000
    assert (out / "training-curves.png").stat().st_size > 1000

    # a second run reuses the trained networks instead of training again
    before = {f: f.stat().st_mtime_ns for f in (work / "models").glob("*.safetensors")}
    assert main(args) == 0
    assert before == {f: f.stat().st_mtime_ns for f in (work / "models").glob("*.safetensors")}

"""The benchmark scripts run end to end at toy sizes, so a lent GPU's minutes are never spent on a
script that fails on its arguments (the measured numbers live in docs/benchmarks.md, not here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "src" / "instyle" / "zoo" / "starry-night-fast.safetensors"


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_inference_benchmark_reports_speed_psnr_and_gflops(tmp_path: Path) -> None:
    _run("inference.py", "-m", str(MODEL), "--backends", "eager", "channels_last", "--sizes", "40x32",
         "--rounds", "1", "--warmup", "1", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "inference-cpu.json").read_text())["rows"]
    assert [r["backend"] for r in rows] == ["eager", "channels_last"]
    assert all(r["gflops"] > 0 and r["ms"] > 0 for r in rows) and rows[1]["psnr_db"] > 60


def test_training_benchmark_runs_the_training_step(tmp_path: Path) -> None:
    _run("training.py", "--arch", "johnson-half", "--size", "32", "--batch", "2", "--modes", "fp32",
         "fp32-hostcheck", "--rounds", "1", "--steps", "1", "--vgg", "random", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "training-cpu.json").read_text())["rows"]
    assert [r["mode"] for r in rows] == ["fp32-nchw", "fp32", "fp32-hostcheck"] and all(r["gflops"] > 0 for r in rows)


def test_variant_names_spell_their_rewrites(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    _run("variants.py", "-m", str(MODEL), "--device", "cpu", "--sizes", "40x32", "--rounds", "1", "--variants",
         "eager-fp32-aten", "eager-fp32-aten-fold-s2d2", "eager-fp32-nhwc-aten-s2d4io", "ort-fold-s2d2",
         "--out", str(tmp_path))
    rows = json.loads((tmp_path / "variants-cpu.json").read_text())
    assert len(rows) == 4 and all(r["psnr_db"] > 80 for r in rows[1:]), rows  # exact rewrites


def test_roofline_counts_the_work(tmp_path: Path) -> None:
    out = _run("roofline.py", "-m", str(MODEL), "--sizes", "64x64", "128x128", "--train-size", "32",
               "--batch", "1", "--gemm", "256", "--out", str(tmp_path))
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| stylize")]
    small, big = (float(r[2]) for r in rows)
    assert big == pytest.approx(4 * small, rel=0.05)  # the work grows with the pixels


def test_winograd_benchmark_computes_the_same_convolution(tmp_path: Path) -> None:
    out = _run("winograd.py", "--size", "40x24", "--channels", "8", "--rounds", "1", "--out", str(tmp_path))
    errors = [float(line.split("|")[4]) for line in out.splitlines() if line.startswith(("| direct", "| Winograd"))]
    assert len(errors) == 2 and max(errors) < 1e-5, out


def test_layouts_benchmark_times_every_thin_convolution(tmp_path: Path) -> None:
    _run("layouts.py", "--crop", "16", "--batch", "1", "--size", "40x24", "--rounds", "1", "--out", str(tmp_path))
    rows = [line for line in (tmp_path / "layouts.md").read_text().splitlines() if line.startswith("| johnson")]
    assert len(rows) == 4 and all(float(r.split("|")[4].strip().rstrip("x")) > 0 for r in rows)


def test_flicker_benchmark_writes_the_doc_and_the_strip(tmp_path: Path) -> None:
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    from tests.test_video import make_video

    clip = make_video(tmp_path / "clip.mp4", n=6, w=48, h=32, audio=False)
    (tmp_path / "video-stability.md").write_text("old table\n<!-- notes -->\nkept notes\n")
    _run("flicker.py", "--pair", "starry-night-fast=great-wave-fast", "--clips", str(clip), "--frames", "6",
         "--strip", str(tmp_path / "strip.jpg"), "--strip-start", "1", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "video-stability.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["plain", "stable", "plain + smooth 0.8"]
    assert all(r["warped_out"] > 0 and r["frames"] == 6 for r in rows)
    doc = (tmp_path / "video-stability.md").read_text()
    assert "old table" not in doc and doc.endswith("kept notes\n") and "| clip.mp4 |" in doc
    assert (tmp_path / "strip.jpg").stat().st_size > 0


def test_stability_gain_benchmark_measures_every_perturbation(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from tests.test_video import make_video

    clip = make_video(tmp_path / "clip.mp4", n=4, w=48, h=32, audio=False)
    _run("stability_gain.py", "-m", "starry-night-fast", "--clips", str(clip), "--frames", "4", "--static", "1",
         "--out", str(tmp_path))
    (row,) = json.loads((tmp_path / "video-stability-gain.json").read_text())["rows"]
    assert len(row["gains"]) == 7 and all(0 < g < 100 for g in row["gains"].values()), row
    assert "| clip.mp4 | starry-night-fast |" in (tmp_path / "video-stability-gain.md").read_text()


def test_adaptation_report_tables_and_plots_the_runs_logs(tmp_path: Path) -> None:
    """Fake logs of two paintings: the table reads the held-out loss at 5 and 10 minutes and compares the
    last value with the from-scratch run's; the curves get one panel per painting."""
    for painting in ("a", "b"):
        (tmp_path / "runs" / painting).mkdir(parents=True)
        for method, slope in (("adapt", 3.0), ("scratch", 1.0)):
            recs = [{"holdout": True, "step": 10 * i, "elapsed": 120.0 * i, "total": 100.0 - slope * i}
                    for i in range(1, 7)]
            (tmp_path / "runs" / painting / f"{method}.log.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in recs))
    out = _run("adaptation.py", str(tmp_path / "runs"), "-o", str(tmp_path / "docs"))
    row = next(line for line in out.splitlines() if line.startswith("| a | norm-only"))
    assert "| 60 | 12.0 min | 12.0 | 94.00 | 85.00 | 82.00 | -13% |" in row, row
    assert (tmp_path / "docs" / "adaptation-curves.png").stat().st_size > 1000

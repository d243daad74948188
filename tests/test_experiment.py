"""The in-vs-bn experiment end to end on tiny data (the `smoke` preset), with the real VGG16."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from instyle.apps.cli import main
from instyle.experiments.in_vs_bn import PRESETS, VARIANTS


@pytest.mark.slow
def test_smoke_preset_writes_a_full_report(photos_dir: Path, style_image: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
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
        assert row["total_vs_adam"] > 0
    report = (out / "in-vs-bn.md").read_text()
    for needle in ("RQ1", "RQ2", "RQ3", "IN (running stats)", "BN (per-image stats)", "grid-stripes.png",
                   "L-BFGS", "vs Adam (extra)", "Per CPU-minute", "held-out objective after the same training time",
                   "fp32 step here"):
        assert needle in report
    assert set(res["curves"]) == {"budget_s", "time_axis", *p.generators}
    assert res["curves"]["time_axis"] == "measured step cost"
    assert all(res["speed"][g]["instance"]["train_step_s"] > 0 for g in p.generators)
    assert (out / "grid-stripes.png").stat().st_size > 1000
    assert (out / "training-curves.png").stat().st_size > 1000

    # a second run reuses the trained networks instead of training again
    before = {f: f.stat().st_mtime_ns for f in (work / "models").glob("*.safetensors")}
    assert main(args) == 0
    assert before == {f: f.stat().st_mtime_ns for f in (work / "models").glob("*.safetensors")}

    # on a fresh machine (no trained networks, only the committed report folder) nothing is retrained:
    # every run is read from out/runs, and the figures come from the recorded strips
    shutil.rmtree(work / "models")
    assert main(args) == 0
    assert not (work / "models").exists()
    again = json.loads((out / "results.json").read_text())
    assert [r["total"] for r in again["per_run"]] == [r["total"] for r in res["per_run"]]
    assert (out / "grid-stripes.png").stat().st_size > 1000

    # --rescore recomputes the ceiling only; a corrupt cached ceiling is recomputed, not trusted
    kept = sorted((out / "runs").glob("gatys-*.safetensors"))
    assert len(kept) == 2 * 2, "an fp16 copy of each ceiling (2 styles x L-BFGS, Adam) beside the run records"
    for cached in [*work.glob("gatys-*-lbfgs.safetensors"), *(out / "runs").glob("gatys-*-lbfgs.safetensors")]:
        cached.write_bytes(b"not a tensor file")
    assert main(["experiment", "in-vs-bn", "--preset", "smoke", "--rescore", "--out", str(out), "--work", str(work),
                 "--content", str(photos_dir)]) == 0
    rescored = json.loads((out / "results.json").read_text())
    assert [r["total"] for r in rescored["per_run"]] == [r["total"] for r in res["per_run"]]
    for style, ceiling in res["gatys"].items():
        assert rescored["gatys"][style]["total"] == pytest.approx(ceiling["total"], rel=1e-3)

    # --recorded-only: an interim report of the seeds already recorded, training nothing; a preset
    # with a second, untrained seed reports the first and says so
    monkeypatch.setitem(PRESETS, "smoke", dataclasses.replace(p, seeds=(0, 1)))
    assert main([*args, "--recorded-only"]) == 0
    assert not (work / "models").exists()
    interim = json.loads((out / "results.json").read_text())
    assert interim["config"]["seeds"] == [0] and interim["planned_seeds"] == [0, 1]
    assert [r["total"] for r in interim["per_run"]] == [r["total"] for r in res["per_run"]]
    assert "interim report" in (out / "in-vs-bn.md").read_text()
    next(iter((out / "runs").glob("*-s0.json"))).unlink()
    assert main([*args, "--recorded-only"]) == 2
    assert not (work / "models").exists()


class _Killed(Exception):
    """The end of a session, part-way through a run."""


@pytest.mark.slow
def test_a_parked_unfinished_run_continues_on_a_fresh_machine(photos_dir: Path, style_image: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from instyle.experiments import in_vs_bn
    from instyle.training import loop
    from instyle.training.checkpoints import read_checkpoint_state

    monkeypatch.setitem(PRESETS, "smoke", dataclasses.replace(PRESETS["smoke"], generators=("ulyanov",),
                                                              checkpoint_every=2))
    out, work = tmp_path / "report", tmp_path / "work"
    args = ["experiment", "in-vs-bn", "--preset", "smoke", "--out", str(out), "--work", str(work),
            "--content", str(photos_dir), "--styles", str(style_image), "--quiet"]
    real_save, saves = loop.save_checkpoint, []

    def save_then_die(*a: object, **kw: object) -> None:
        real_save(*a, **kw)  # type: ignore[arg-type]
        saves.append(1)
        if len(saves) == 2:
            raise _Killed

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        main(args)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    stem = "ulyanov-stripes-batch-s0"
    assert not (work / "models" / f"{stem}.safetensors").exists()

    assert main([*args, "--park"]) == 0
    parked = out / "partial" / f"{stem}.ckpt.safetensors"
    assert read_checkpoint_state(parked)["step"] == 4 and (out / "partial" / f"{stem}.log.jsonl").stat().st_size

    shutil.rmtree(work)  # a fresh machine: only the committed report folder is left
    resumed: list[tuple[bool, int]] = []
    real_train = in_vs_bn.train

    def spy(cfg: in_vs_bn.TrainConfig, resume: bool = False, **kw: object) -> object:
        ckpt = cfg.paths()[1]
        resumed.append((resume, read_checkpoint_state(ckpt)["step"] if ckpt.is_file() else 0))
        return real_train(cfg, resume=resume, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(in_vs_bn, "train", spy)
    assert main(args) == 0
    assert resumed[0] == (True, 4), "the parked run continues from its step-4 checkpoint, not from step 0"
    assert resumed[1] == (False, 0), "the run that had not started starts from scratch"
    assert json.loads((out / "runs" / f"{stem}.json").read_text())["steps"] == PRESETS["smoke"].iters
    assert not list((out / "partial").iterdir()), "a recorded run's parked checkpoint is removed"

    # a damaged parked checkpoint is refused in one line, before anything is copied or trained
    assert main([*args, "--park"]) == 0
    (out / "partial").mkdir(exist_ok=True)
    (out / "partial" / "ulyanov-stripes-instance-s1.ckpt.safetensors").write_bytes(b"not a checkpoint")
    monkeypatch.setitem(PRESETS, "smoke", dataclasses.replace(PRESETS["smoke"], seeds=(0, 1)))
    assert main(args) == 2
    assert not (work / "models" / "ulyanov-stripes-instance-s1.ckpt.safetensors").exists()


def test_curves_from_different_machines_share_this_machines_step_cost() -> None:
    """A long preset's runs are recorded on different machines: a slow machine's wall clock must not
    make its generator look slow. The time axis is steps x the step cost measured here."""
    from instyle.experiments.in_vs_bn import _curve_summary

    def rec(wall: float, totals: list[float], machine: str) -> dict:
        curve = [{"step": 100 * (i + 1), "elapsed": wall * (i + 1) / len(totals), "total": t}
                 for i, t in enumerate(totals)]
        return {"instance": {"holdout_curve": curve, "wall_time_s": wall, "machine": machine, "precision": "fp32"}}

    records = {("johnson", "s", 0): rec(600.0, [40.0, 30.0, 20.0, 10.0], "fast box"),
               ("ulyanov", "s", 0): rec(6000.0, [30.0, 25.0, 20.0, 15.0], "slow box")}
    p = dataclasses.replace(PRESETS["smoke"], generators=("johnson", "ulyanov"), curve_photos=2)
    speed = {"johnson": {"instance": {"train_step_s": 2.0}}, "ulyanov": {"instance": {"train_step_s": 1.0}}}
    c = _curve_summary(records, p, speed)
    assert c["time_axis"] == "measured step cost"
    assert c["budget_s"] == pytest.approx(400.0)  # ulyanov's 400 steps at 1 s; johnson gets 200 steps in it
    assert c["johnson"]["at_budget"] == pytest.approx(30.0) and c["ulyanov"]["at_budget"] == pytest.approx(15.0)
    assert c["johnson"]["machines"] == ["fast box, fp32"]
    wall = _curve_summary(records, p)  # without a measurement: the recorded wall clocks, as before
    assert wall["time_axis"] == "recorded wall time" and wall["budget_s"] == pytest.approx(600.0)

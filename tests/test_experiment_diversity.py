"""The diversity experiment (#17) end to end on the `smoke` preset: tiny texture networks, random-weight VGG."""

from __future__ import annotations

import json
from pathlib import Path

from instyle.experiments.diversity import PRESETS, answers, run, summarise


def test_smoke_preset_writes_a_report_figures_and_reuses_its_networks(style_image: Path, tmp_path: Path,
                                                                      one_thread: None) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    run("smoke", out, work=work, texture_files=[style_image], vgg_weights="random", log=lambda _: None,
        progress=False)
    p = PRESETS["smoke"]
    res = json.loads((out / "diversity.json").read_text())
    assert len(res["runs"]) == 2 * len(p.lambdas) * len(p.seeds)
    assert {(r["norm"], r["lambda"]) for r in res["summary"]} == {(n, lam) for n in ("batch", "instance")
                                                                 for lam in p.lambdas}
    for r in res["runs"]:
        assert r["loss"] > 0 and r["loss_vs_lbfgs"] > 0 and r["diversity"] > 0
    report = (out / "diversity.md").read_text()
    assert "| stripes | instance | 10 |" in report and "diversity vs λ = 0" in report and "pixel" in report
    assert res["figures"] == ["diversity-stripes-batch.jpg", "diversity-stripes-instance.jpg"]
    assert all((out / f).stat().st_size > 1000 for f in res["figures"])
    models = sorted((work / "models").glob("*.safetensors"))
    assert len(models) == len(res["runs"])
    stamps = [m.stat().st_mtime_ns for m in models]
    run("smoke", out, work=work, texture_files=[style_image], vgg_weights="random", log=lambda _: None,
        progress=False)
    assert [m.stat().st_mtime_ns for m in models] == stamps, "a rerun reuses the trained networks"


def test_summary_and_answers_read_the_gain_and_cost_off_the_runs() -> None:
    runs = [{"texture": "t", "norm": "instance", "lambda": lam, "seed": s, "loss": loss, "loss_vs_lbfgs": loss / 10,
             "diversity": div} for lam, loss, div in ((0.0, 20.0, 0.10), (10.0, 22.0, 0.20)) for s in (0, 1)]
    runs += [{**r, "norm": "batch", "loss": r["loss"] + 5} for r in runs]
    rows = summarise(runs)
    top = next(r for r in rows if r["norm"] == "instance" and r["lambda"] == 10.0)
    assert top["diversity_gain"] == 2.0 and abs(top["loss_cost"] - 0.1) < 1e-9
    text = "\n".join(answers(rows))
    assert "2.00×, higher" in text and "+10%" in text and "instance norm is ahead" in text

"""The diversity experiment (#17) end to end on the `smoke` preset: tiny texture networks, random-weight VGG."""

from __future__ import annotations

import json
from pathlib import Path

from instyle.experiments.diversity import PRESETS, answers, run, summarise


def test_smoke_preset_writes_a_report_figures_and_reuses_its_networks(style_image: Path, photos_dir: Path,
                                                                      tmp_path: Path, one_thread: None) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    kwargs = {"work": work, "texture_files": [style_image], "content": photos_dir, "style_file": style_image,
              "vgg_weights": "random", "log": lambda _: None, "progress": False}
    run("smoke", out, **kwargs)
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

    # the stylization half: one g(x, z) per (lambda, seed), scored on held-out photos under several noises
    q = p.photos
    assert q is not None
    assert len(res["photo_runs"]) == len(q.lambdas) * len(q.seeds)
    for r in res["photo_runs"]:
        assert r["total"] > 0 and r["diversity"] > 0, "an untrained g(x, z) still varies with its noise"
    assert [r["lambda"] for r in res["photo_summary"]] == list(q.lambdas)
    assert "## Stylization: g(x, z)" in report and res["photo_figure"] in report
    assert (out / res["photo_figure"]).stat().st_size > 1000
    trained = {f.name for f in (work / "photos" / "train_content").iterdir()}
    assert len(trained) == 12 - q.holdout, "the held-out photos are not in the training folder"
    models += sorted((work / "photos" / "models").glob("*.safetensors"))
    assert len(models) == len(res["runs"]) + len(res["photo_runs"])

    stamps = [m.stat().st_mtime_ns for m in models]
    run("smoke", out, **kwargs)
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


def test_photo_diversity_is_zero_for_a_generator_that_ignores_its_noise() -> None:
    import torch

    from instyle.experiments.diversity_photos import noisy_outputs
    from instyle.losses.diversity import mean_pairwise_distance

    class Ignores(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :3] * self.w

    class Uses(Ignores):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 3:] * self.w

    photos = torch.rand(2, 3, 8, 8)
    for model, collapsed in ((Ignores(), True), (Uses(), False)):
        outs = noisy_outputs(model, photos, 3, 3)
        d = mean_pairwise_distance(torch.stack([o[0] for o in outs]))
        assert (d == 0) == collapsed
    again = noisy_outputs(Uses(), photos, 3, 3)
    assert all(torch.equal(a, b) for a, b in zip(outs, again, strict=True)), "fixed noise seeds"

"""A real (tiny) training run with the real VGG16, and resuming an interrupted run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from instyle.core.errors import InstyleError
from instyle.models.modelfile import load_model, read_card
from instyle.training.config import TrainConfig, resolve_precision
from instyle.training.loop import train


def _cfg(photos: Path, style: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(style=str(style), content=str(photos), output=str(out), arch="johnson-half", size=64,
                style_size=96, batch=2, iters=20, lr=5e-3, seed=1, precision="fp32", holdout=2,
                eval_every=10, checkpoint_every=5, log_every=1)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.mark.slow
def test_real_training_run_lowers_the_loss_and_writes_a_card(photos_dir, style_image, tmp_path) -> None:
    out = tmp_path / "m.safetensors"
    card = train(_cfg(photos_dir, style_image, out, precision="auto"), progress=False)
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    totals = [r["total"] for r in log if not r.get("holdout")]
    assert len(totals) == 20
    assert sum(totals[-3:]) / 3 < 0.8 * sum(totals[:3]) / 3, totals
    # the card describes the run and survives in the safetensors header
    assert read_card(out).data == json.loads((tmp_path / "m.json").read_text())
    for key in ("arch", "norm", "loss", "style", "train", "metrics", "wall_time_s", "machine"):
        assert key in card.data
    assert card.data["style"]["sha256"] and card.data["train"]["iters"] == 20
    assert [r["step"] for r in card.data["metrics"]["holdout_curve"]] == [10, 20]
    elapsed = [r["elapsed"] for r in card.data["metrics"]["holdout_curve"]]
    assert 0 < elapsed[0] < elapsed[1] <= card.data["wall_time_s"] + 0.1, "held-out points carry the wall clock"
    cpu = [r["cpu_s"] for r in card.data["metrics"]["holdout_curve"]]
    assert 0 < cpu[0] < cpu[1] <= card.data["cpu_time_s"] + 0.1, "and the CPU time spent so far"
    assert card.data["metrics"]["holdout_final"]["style"] > 0
    assert not (tmp_path / "m.ckpt.safetensors").exists(), "checkpoint is removed once the model is written"
    model, _ = load_model(out)
    assert model(torch.rand(1, 3, 40, 52)).shape == (1, 3, 40, 52)


class _Kill(Exception):
    pass


@pytest.mark.slow
def test_resume_after_interruption_matches_an_uninterrupted_run(photos_dir, style_image, tmp_path) -> None:
    ref = tmp_path / "ref.safetensors"
    train(_cfg(photos_dir, style_image, ref, iters=12), progress=False)

    out = tmp_path / "run.safetensors"
    cfg = _cfg(photos_dir, style_image, out, iters=12)

    def die(rec: dict) -> None:
        if rec["step"] == 8:
            raise _Kill

    with pytest.raises(_Kill):
        train(cfg, progress=False, on_log=die)
    assert (tmp_path / "run.ckpt.safetensors").exists() and not out.exists()
    train(cfg, resume=True, progress=False)
    resumed, whole = read_card(out).data, read_card(ref).data
    assert 0.6 * whole["cpu_time_s"] < resumed["cpu_time_s"] < 3 * whole["cpu_time_s"] + 1, "CPU time carried over"

    a, b = load_file(str(ref)), load_file(str(out))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    steps = [json.loads(x)["step"] for x in (tmp_path / "run.log.jsonl").read_text().splitlines()
             if "holdout" not in x]
    assert steps == list(range(1, 13)), "log has every step once after a resume"


@pytest.mark.slow
def test_keep_best_writes_the_best_evaluations_weights_and_survives_a_resume(
        photos_dir, style_image, tmp_path, monkeypatch) -> None:
    """Scripted held-out totals (best at step 10 of 20): the file holds exactly the weights a 10-step
    run ends with, also when the run was interrupted after the best and resumed."""
    import instyle.training.loop as train_module

    def scripted(totals: list[float]):
        it = iter(totals)
        return lambda *a, **k: {"total": next(it), "content": 1.0, "style": 1.0, "tv": 0.0}

    kw = dict(iters=20, eval_every=5, checkpoint_every=12, vgg_weights="random", keep_best=True)
    ten = tmp_path / "ten.safetensors"
    train(_cfg(photos_dir, style_image, ten, **{**kw, "iters": 10, "keep_best": False}), progress=False)

    monkeypatch.setattr(train_module, "evaluate_holdout", scripted([5.0, 3.0, 4.0, 6.0]))
    out = tmp_path / "best.safetensors"
    card = train(_cfg(photos_dir, style_image, out, **kw), progress=False)
    assert (card.data["steps"], card.data["weights_step"], card.data["best_holdout"]) == (
        20, 10, {"step": 10, "total": 3.0})
    assert [r["total"] for r in card.data["metrics"]["holdout_curve"]] == [5.0, 3.0, 4.0, 6.0], "the curve is all of it"
    a, b = load_file(str(ten)), load_file(str(out))
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-5, msg=k)

    # interrupted at step 14 (best at 10, checkpoint at 12), resumed: the best weights came back too
    monkeypatch.setattr(train_module, "evaluate_holdout", scripted([5.0, 3.0, 4.0, 6.0]))
    again = tmp_path / "again.safetensors"
    cfg = _cfg(photos_dir, style_image, again, **kw)

    def die(rec: dict) -> None:
        if rec["step"] == 14:
            raise _Kill

    with pytest.raises(_Kill):
        train(cfg, progress=False, on_log=die)
    monkeypatch.setattr(train_module, "evaluate_holdout", scripted([4.0, 6.0]))  # steps 15 and 20
    card = train(cfg, resume=True, progress=False)
    assert (card.data["weights_step"], card.data["best_holdout"]["step"]) == (10, 10)
    c = load_file(str(again))
    for k in a:
        torch.testing.assert_close(c[k], a[k], atol=1e-6, rtol=1e-5, msg=k)


def test_resume_without_checkpoint_is_a_clear_error(photos_dir, style_image, tmp_path) -> None:
    cfg = _cfg(photos_dir, style_image, tmp_path / "x.safetensors", vgg_weights="random")
    with pytest.raises(InstyleError, match="no checkpoint"):
        train(cfg, resume=True, progress=False)


def test_missing_style_and_empty_content_are_clear_errors(photos_dir, style_image, tmp_path) -> None:
    with pytest.raises(InstyleError, match="style image not found"):
        train(_cfg(photos_dir, tmp_path / "nope.png", tmp_path / "x.safetensors"), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InstyleError, match="no images"):
        train(_cfg(empty, style_image, tmp_path / "x.safetensors", vgg_weights="random"), progress=False)


def test_precision_choice() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(InstyleError, match="CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(InstyleError, match="unknown precision"):
        resolve_precision("fp8", cpu)


def _nan_at(monkeypatch: pytest.MonkeyPatch, bad_calls: set[int] | None) -> None:
    """Make the training loss NaN on the given forward calls (all calls when None)."""
    from instyle.losses.perceptual import PerceptualLoss

    real = PerceptualLoss.forward
    calls = {"n": 0}

    def forward(self, output, content, style_index=None, targets=None):
        terms = real(self, output, content, style_index, targets)
        calls["n"] += 1
        if torch.is_grad_enabled() and (bad_calls is None or calls["n"] in bad_calls):
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(PerceptualLoss, "forward", forward)


@pytest.mark.parametrize("on_device", [False, True], ids=["host-check", "device-side"])
def test_a_nan_batch_is_skipped_and_a_persistent_one_stops_the_run(photos_dir, style_image, tmp_path,
                                                                   monkeypatch, on_device) -> None:
    # device-side: what CUDA runs (fused Adam skips the step, counts read at log time), here on the CPU
    monkeypatch.setattr("instyle.training.guard.device_side_steps", lambda device: on_device)
    cfg = _cfg(photos_dir, style_image, tmp_path / "m.safetensors", iters=6, holdout=0, vgg_weights="random",
               size=32, style_size=32, grad_clip=10.0)
    _nan_at(monkeypatch, {3})
    train(cfg, progress=False)
    state = load_file(str(tmp_path / "m.safetensors"))
    assert all(torch.isfinite(v).all() for v in state.values()), "a NaN step must not reach the weights"
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6] and log[0]["grad_norm"] > 0
    assert read_card(tmp_path / "m.safetensors").data["skipped_steps"] == 1

    monkeypatch.undo()
    monkeypatch.setattr("instyle.training.guard.device_side_steps", lambda device: on_device)
    _nan_at(monkeypatch, None)
    with pytest.raises(InstyleError, match="diverged"):
        train(_cfg(photos_dir, style_image, tmp_path / "n.safetensors", iters=30, holdout=0,
                   vgg_weights="random", size=32, style_size=32), progress=False)


def _tiny(photos: Path, style: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(holdout=2, vgg_weights="random", size=32, style_size=32, eval_every=2, log_every=1)
    base.update(kw)
    return _cfg(photos, style, out, **base)


def test_init_continues_a_finished_run_with_a_warm_up(photos_dir, style_image, tmp_path) -> None:
    first = tmp_path / "a.safetensors"
    card_a = train(_tiny(photos_dir, style_image, first, iters=4), progress=False)
    more = tmp_path / "b.safetensors"
    card = train(_tiny(photos_dir, style_image, more, iters=3, init=str(first)), progress=False)
    assert card.data["steps"] == 7 and card.data["init"]["steps"] == 4 and card.data["init"]["file"] == "a.safetensors"
    assert [r["step"] for r in card.data["metrics"]["holdout_curve"]] == [2, 4, 6, 7], "the curve carries over"
    assert card.data["wall_time_s"] >= card_a.data["wall_time_s"]
    log = [json.loads(x)["step"] for x in (tmp_path / "b.log.jsonl").read_text().splitlines() if "holdout" not in x]
    assert log == [5, 6, 7]

    # Adam's first step moves every weight by about lr; the default warm-up (100 steps) cuts that 100x
    start = load_file(str(first))
    for warmup, bound in ((None, 1.5e-2), (0, None)):
        out = tmp_path / f"w{warmup}.safetensors"
        train(_tiny(photos_dir, style_image, out, iters=1, init=str(first), warmup=warmup, holdout=0),
              progress=False)
        moved = max((load_file(str(out))[k] - v).abs().max().item() for k, v in start.items()
                    if "running_" not in k)  # the weights, not the norms' running statistics
        if bound is not None:
            assert moved < bound * 5e-3, moved
        else:
            assert moved > 0.5 * 5e-3, moved


def test_init_from_a_different_architecture_is_a_clear_error(photos_dir, style_image, tmp_path) -> None:
    first = tmp_path / "a.safetensors"
    train(_tiny(photos_dir, style_image, first, iters=1, holdout=0), progress=False)
    with pytest.raises(InstyleError, match="does not fit this run"):
        train(_tiny(photos_dir, style_image, tmp_path / "b.safetensors", iters=1, holdout=0, arch="johnson",
                    init=str(first)), progress=False)
    with pytest.raises(InstyleError, match="not found"):
        train(_tiny(photos_dir, style_image, tmp_path / "c.safetensors", init=str(tmp_path / "nope.safetensors")),
              progress=False)


def test_learning_rate_warms_up_after_init_and_anneals_at_the_end() -> None:
    from instyle.training.loop import lr_factor

    cfg = TrainConfig(style="s.png", content="c", output="o.safetensors", iters=1000, decay=400)
    assert [lr_factor(cfg, d) for d in (0, 599)] == [1.0, 1.0], "no warm-up from scratch by default"
    assert lr_factor(cfg, 800) == pytest.approx(0.5) and lr_factor(cfg, 999) < 1e-4
    cont = dataclasses.replace(cfg, init="m.safetensors", decay=0)
    assert lr_factor(cont, 0) == pytest.approx(0.01) and lr_factor(cont, 49) == pytest.approx(0.5)
    assert lr_factor(cont, 99) == lr_factor(cont, 999) == 1.0


@pytest.mark.slow
def test_compiled_training_follows_the_eager_run(photos_dir, style_image, tmp_path, capsys) -> None:
    # The compiled run asks for CUDA graphs too: on the CPU that is the compiled step plus the
    # per-step cudagraph_mark_step_begin(), so the loop's graph path runs here as well.
    logs = {}
    for compiled in (False, True):
        out = tmp_path / f"{compiled}.safetensors"
        train(_cfg(photos_dir, style_image, out, iters=2, holdout=0, vgg_weights="random", size=32, style_size=32,
                   cuda_graphs=compiled), progress=False)
        logs[compiled] = [json.loads(line) for line in (tmp_path / f"{compiled}.log.jsonl").read_text().splitlines()]
    # Step 1 starts from the same weights. (Later steps drift apart: Adam's sign-like first steps turn
    # the float noise of near-zero gradients into lr-sized moves, so weights are not compared.)
    assert logs[True][0]["total"] == pytest.approx(logs[False][0]["total"], rel=1e-5)
    assert logs[True][0]["grad_norm"] == pytest.approx(logs[False][0]["grad_norm"], rel=1e-4)
    assert read_card(tmp_path / "True.safetensors").data["train"]["cuda_graphs"] is True
    assert "--cuda-graphs needs a CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_step_gives_the_same_gradients() -> None:
    from instyle.losses.perceptual import PerceptualLoss, get_preset
    from instyle.models import create_model
    from instyle.training.loop import compiled_step_modules

    torch.manual_seed(0)
    net = create_model("johnson-half").train()
    loss = PerceptualLoss(get_preset("johnson"), weights="random")
    loss.set_style([torch.rand(1, 3, 32, 32)], [])
    x = torch.rand(2, 3, 32, 32)

    def grads(n: torch.nn.Module, c: torch.nn.Module) -> dict[str, torch.Tensor]:
        net.zero_grad()
        c(n(x), x, None)["total"].backward()
        return {k: p.grad.clone() for k, p in net.named_parameters()}

    eager = grads(net, loss)
    compiled = grads(*compiled_step_modules(net, loss))
    for k, g in eager.items():
        scale = g.abs().max()
        if scale > 1e-5:  # conv biases before a norm have a zero true gradient: pure float noise
            assert (compiled[k] - g).abs().max() <= 2e-3 * scale, k


def test_temporal_weight_zero_is_the_plain_run(photos_dir, style_image, tmp_path, monkeypatch) -> None:
    """--temporal-weight 0 (the default) never builds the term: the run is the plain one, bit for bit,
    whatever the term's other options say."""
    import instyle.training.loop as loop

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("the stability term was built at weight 0")

    monkeypatch.setattr(loop, "StabilityLoss", refuse)
    a = tmp_path / "a.safetensors"
    card = train(_tiny(photos_dir, style_image, a, iters=3), progress=False)
    b = tmp_path / "b.safetensors"
    train(_tiny(photos_dir, style_image, b, iters=3, temporal_shift=2, temporal_noise=0.5), progress=False)
    wa, wb = load_file(str(a)), load_file(str(b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert card.data["train"]["temporal_weight"] == 0.0
    assert not any("temporal" in line for line in (tmp_path / "a.log.jsonl").read_text().splitlines())


def test_temporal_weight_trains_the_term_records_it_and_resumes_exactly(photos_dir, style_image, tmp_path) -> None:
    from instyle.training.recipe import train_command

    plain = tmp_path / "plain.safetensors"
    train(_tiny(photos_dir, style_image, plain, iters=4, holdout=0), progress=False)
    ref = tmp_path / "ref.safetensors"
    card = train(_tiny(photos_dir, style_image, ref, iters=4, holdout=0, temporal_weight=50.0, temporal_grain=8.0),
                 progress=False)
    log = [json.loads(x) for x in (tmp_path / "ref.log.jsonl").read_text().splitlines()]
    assert all(r["temporal"] > 0 for r in log)
    assert all(r["total"] == pytest.approx(r["content"] + r["style"] + r["tv"] + r["temporal"], rel=1e-4) for r in log)
    assert card.data["train"]["temporal_weight"] == 50.0
    assert card.data["train"]["temporal_grain"] == 8.0
    assert "--temporal-weight 50.0" in train_command(card) and "--temporal-grain 8.0" in train_command(card)
    wp, wr = load_file(str(plain)), load_file(str(ref))
    assert any(not torch.equal(wp[k], wr[k]) for k in wp)

    out = tmp_path / "run.safetensors"
    cfg = _tiny(photos_dir, style_image, out, iters=4, holdout=0, temporal_weight=50.0, temporal_grain=8.0,
                checkpoint_every=2)

    def die(rec: dict) -> None:
        if rec["step"] == 3:
            raise _Kill

    with pytest.raises(_Kill):
        train(cfg, progress=False, on_log=die)
    train(cfg, resume=True, progress=False)
    wo = load_file(str(out))
    for k in wr:
        torch.testing.assert_close(wr[k], wo[k], atol=1e-5, rtol=1e-4, msg=k)


def test_temporal_shift_must_fit_the_crop(photos_dir, style_image, tmp_path) -> None:
    with pytest.raises(InstyleError, match="--temporal-shift 9 leaves nothing of a 32 px crop"):
        _tiny(photos_dir, style_image, tmp_path / "x.safetensors", temporal_weight=1.0, temporal_shift=9).validate()

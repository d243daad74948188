"""Norm-only adaptation (--adapt): only the norm affine moves, the result is a plain model, bad bases
are refused in one line, a killed run resumes, and a retrain reproduces it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_tiny_model
from instyle.apps.cli import main
from instyle.core.errors import InstyleError
from instyle.models import create_model
from instyle.models.modelfile import load_model, read_card, save_model
from instyle.training.adapt import norm_parameters
from instyle.training.config import ADAPT_LR, TrainConfig
from instyle.training.loop import train
from instyle.training.recipe import config_from_card, train_command
from instyle.zoo import ZOO_DIR


def _cfg(photos: Path, style: Path, out: Path, base: Path, **kw: object) -> TrainConfig:
    args = dict(style=str(style), content=str(photos), output=str(out), adapt=str(base), arch="johnson-half",
                size=48, style_size=64, batch=2, iters=6, decay=2, seed=1, precision="fp32", holdout=2,
                eval_every=3, checkpoint_every=2, log_every=1, vgg_weights="random")
    args.update(kw)
    return TrainConfig(**args)  # type: ignore[arg-type]


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    return write_tiny_model(tmp_path / "base.safetensors", seed=3)


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> set[str]:
    assert a.keys() == b.keys()
    return {k for k in a if not torch.equal(a[k].float(), b[k].float())}


def test_only_norm_parameters_change_and_the_file_loads_as_a_normal_model(photos_dir, style_image, tmp_path,
                                                                         base) -> None:
    out = tmp_path / "new.safetensors"
    card = train(_cfg(photos_dir, style_image, out, base), progress=False)
    before, after = load_file(str(base)), load_file(str(out))
    affine = {k for k, _ in norm_parameters(create_model("johnson-half"))}
    stats = {k for k in after if k.endswith(("running_mean", "running_var"))}  # the norms' own buffers
    changed = _changed(before, after)
    assert changed - stats == affine, "every norm scale and shift moved, and nothing else but norm statistics"
    model, loaded = load_model(out)  # the normal loader: an ordinary single-style model
    assert loaded.n_styles == 1 and model(torch.rand(1, 3, 36, 44)).shape == (1, 3, 36, 44)
    rec = card.data["adapt"]
    assert rec["sha256"] and rec["file"] == "base.safetensors" and rec["init"] == "mean"
    assert rec["trainable_parameters"] == sum(p.numel() for _, p in norm_parameters(model))
    assert card.steps == 6 and card.data["train"]["adapt"] == str(base)


def test_adapt_defaults_and_the_retrain_command_derive_from_the_config(base) -> None:
    cfg = TrainConfig(style="s.png", content="c", output="o.safetensors", adapt=str(base))
    assert cfg.lr == ADAPT_LR and cfg.iters < 2000 and cfg.decay > 0
    plain = TrainConfig(style="s.png", content="c", output="o.safetensors")
    assert (plain.lr, plain.iters, plain.decay, plain.eval_every) == (1e-3, 2000, 0, 200)


def test_retrain_of_an_adapted_card_reproduces_it(photos_dir, style_image, tmp_path, base) -> None:
    out = tmp_path / "new.safetensors"
    train(_cfg(photos_dir, style_image, out, base, lr=ADAPT_LR), progress=False)
    card = read_card(out)
    command = train_command(card)
    assert f"--adapt {base}" in command and "--lr" not in command, command  # the --adapt default lr is implied
    again = tmp_path / "again" / "new.safetensors"
    data = tmp_path / "data"  # where a retrain finds the style by name, as among fetched paintings
    (data / "style").mkdir(parents=True)
    shutil.copy(style_image, data / "style" / style_image.name)
    assert config_from_card(card, again, content=photos_dir, data_dir=data).precision == "auto"  # this machine's
    # ... which is bf16 on AMX: bytes repeat only at the card's precision, so pin it as a user would
    train(config_from_card(card, again, content=photos_dir, data_dir=data, precision="fp32"), progress=False)
    assert _changed(load_file(str(out)), load_file(str(again))) == set(), "same bytes: the same run"
    write_tiny_model(base, seed=4)  # another base under the same name
    with pytest.raises(InstyleError, match="not the base this model was adapted from"):
        config_from_card(card, tmp_path / "third" / "new.safetensors", content=photos_dir, data_dir=data)


def test_a_killed_adaptation_resumes_to_the_same_weights(photos_dir, style_image, tmp_path, base) -> None:
    ref = tmp_path / "ref.safetensors"
    train(_cfg(photos_dir, style_image, ref, base), progress=False)
    out = tmp_path / "run.safetensors"
    cfg = _cfg(photos_dir, style_image, out, base)

    class Kill(Exception):
        pass

    def die(rec: dict) -> None:
        if rec["step"] == 5:
            raise Kill

    with pytest.raises(Kill):
        train(cfg, progress=False, on_log=die)
    train(cfg, resume=True, progress=False)
    a, b = load_file(str(ref)), load_file(str(out))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    assert read_card(out).data["adapt"] == read_card(ref).data["adapt"]


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_a_base_without_instance_norm_is_refused_in_one_line(photos_dir, style_image, tmp_path, norm,
                                                             capsys) -> None:
    bad = tmp_path / f"{norm}.safetensors"
    save_model(create_model("johnson-half", norm=norm), {"arch": "johnson-half", "norm": norm, "style": {}}, bad)
    with pytest.raises(InstyleError, match=f"johnson-half/{norm} network.*needs an instance-norm base"):
        train(_cfg(photos_dir, style_image, tmp_path / "o.safetensors", bad, norm=norm), progress=False)
    rc = main(["train", "--style", str(style_image), "--content", str(photos_dir), "--adapt", str(bad),
               "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "instance-norm base" in err, err
    assert not (tmp_path / "o.safetensors").exists()


def test_a_base_of_another_network_and_adapt_with_init_are_refused(photos_dir, style_image, tmp_path, base) -> None:
    with pytest.raises(InstyleError, match="johnson-half/instance network; this run asks for johnson/instance"):
        train(_cfg(photos_dir, style_image, tmp_path / "o.safetensors", base, arch="johnson"), progress=False)
    with pytest.raises(InstyleError, match="--adapt and --init exclude each other"):
        _cfg(photos_dir, style_image, tmp_path / "o.safetensors", base, init=str(base)).validate()


def test_the_cli_takes_the_network_from_the_base_and_the_mean_init_uses_the_zoo_trunk(
        photos_dir, style_image, tmp_path) -> None:
    """Bare --adapt: the zoo's johnson trunk; the affine starts at the mean of its jointly trained styles."""
    out = tmp_path / "z.safetensors"
    rc = main(["train", "--style", str(style_image), "--content", str(photos_dir), "--adapt", "--iters", "1",
               "--decay", "0", "--size", "32", "--batch", "1", "--holdout", "0", "--quiet", "-o", str(out)])
    assert rc == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["arch"] == "johnson" and card["adapt"]["base"] == "great-wave"
    trunk = [e["file"] for e in card["adapt"]["init_from"]]
    # the joint run's johnson styles that still hold its convolutions: starry-night left the trunk
    # when it was fine-tuned into stroke rows, so it must not be averaged in
    joint = [p.name for p in sorted(ZOO_DIR.glob("*.safetensors"))
             if read_card(p).arch == "johnson" and read_card(p).joint and not read_card(p).has_rows]
    assert trunk == joint and len(trunk) >= 8 and "starry-night.safetensors" not in trunk

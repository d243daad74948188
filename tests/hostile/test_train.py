"""Hostile input to ``instyle train``: nothing it is given is ever overwritten, no run is lost silently.

Options are refused before anything is built (one line each), outputs that resolve to inputs are
refused, and an interrupted run's checkpoint survives until ``--resume`` or ``--restart`` says what
to do with it, including after ``kill -9`` and with a truncated checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instyle.training.config import TrainConfig
from instyle.training.loop import train

from .conftest import assert_refused, snapshot

TINY = ["--arch", "johnson-half", "--size", "32", "--style-size", "32", "--batch", "1", "--holdout", "0",
        "--precision", "fp32", "--quiet"]


@pytest.fixture
def run_dir(tmp_path: Path, photos_dir: Path, style_image: Path) -> Path:
    """A folder with a style image, a content folder and an existing, precious model."""
    (tmp_path / "content").mkdir()
    for p in sorted(photos_dir.glob("*.jpg"))[:4]:
        (tmp_path / "content" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "style.png").write_bytes(style_image.read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"precious model bytes")
    return tmp_path


def _train_args(d: Path, *extra: str | Path, out: str | Path = "new.safetensors") -> list[str | Path]:
    return ["train", "--style", d / "style.png", "--content", d / "content", "-o", d / out, *TINY, *extra]


@pytest.mark.parametrize("flags, says", [
    (["--iters", "0"], "--iters must be at least 1"),
    (["--iters", "-5"], "--iters must be at least 1"),
    (["--size", "7"], "--size must be at least 32"),
    (["--size", "1"], "--size must be at least 32"),
    (["--size", "0"], "--size must be at least 32"),
    (["--style-size", "0"], "--style-size must be at least 32"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--batch", "-2"], "--batch must be at least 1"),
    (["--lr", "nan"], "--lr must be"),
    (["--lr", "-1"], "--lr must be"),
    (["--lr", "inf"], "--lr must be"),
    (["--content-weight", "-1"], "--content-weight must be"),
    (["--grad-clip", "0"], "--grad-clip must be"),
    (["--decay", "50", "--iters", "10"], "--decay (50) cannot exceed --iters (10)"),
    (["--device", "cuda"], "no CUDA GPU"),
    (["--device", "foo"], "is not a device"),
    (["--device", "cuda:7"], "no CUDA GPU"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_options_are_one_line_and_touch_nothing(cli, run_dir, flags, says):
    before = snapshot([run_dir])
    assert_refused(cli(*_train_args(run_dir, *flags, out="model.safetensors")), says=says, unchanged=before)


@pytest.mark.parametrize("target", ["style.png", "content/p00.jpg", "model.json"])
def test_output_onto_an_input_or_a_non_model_file_is_refused(cli, run_dir, target):
    """Item 1 of #16: `-o my.png` used to replace the style image (or a photo) with a model."""
    (run_dir / "model.json").write_text("{}")
    before = snapshot([run_dir])
    assert_refused(cli(*_train_args(run_dir, out=target)), unchanged=before)


def test_output_onto_the_init_model_is_refused(cli, run_dir, model_file):
    init = run_dir / "init.safetensors"
    init.write_bytes(model_file.read_bytes())
    before = snapshot([run_dir])
    assert_refused(cli(*_train_args(run_dir, "--init", init, out="init.safetensors")),
                   says="refusing to overwrite an input", unchanged=before)


def test_output_through_a_symlink_to_an_input_is_refused(cli, run_dir, model_file):
    init = run_dir / "init.safetensors"
    init.write_bytes(model_file.read_bytes())
    (run_dir / "alias.safetensors").symlink_to(init)
    before = snapshot([init])
    assert_refused(cli(*_train_args(run_dir, "--init", init, out="alias.safetensors")),
                   says="refusing to overwrite an input", unchanged=before)


def test_init_from_a_hostile_file_is_refused(cli, run_dir):
    bad = run_dir / "junk.safetensors"
    bad.write_bytes(os.urandom(300))
    before = snapshot([run_dir])
    assert_refused(cli(*_train_args(run_dir, "--init", bad)), says="junk.safetensors", unchanged=before)


def _interrupted(d: Path, **kw: object) -> Path:
    """A run stopped after its step-2 checkpoint, as a killed run leaves it (random-weight VGG: fast)."""
    cfg = TrainConfig(style=str(d / "style.png"), content=str(d / "content"), output=str(d / "run.safetensors"),
                      arch="johnson-half", size=32, style_size=32, batch=1, iters=6, holdout=0, precision="fp32",
                      checkpoint_every=2, log_every=1, vgg_weights="random", **kw)  # type: ignore[arg-type]

    def stop(rec: dict) -> None:
        if rec["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, on_log=stop)
    assert (d / "run.ckpt.safetensors").is_file() and (d / "run.log.jsonl").is_file()
    return d / "run.ckpt.safetensors"


def test_rerun_without_resume_keeps_the_checkpoint_and_the_log(cli, run_dir):
    """Item 4 of #16: a rerun used to replace the checkpoint and delete the log silently."""
    _interrupted(run_dir)
    before = snapshot([run_dir])
    assert_refused(cli(*_train_args(run_dir, "--iters", "6", out="run.safetensors")),
                   says="--resume continues it, --restart discards it", unchanged=before)


def test_resume_with_another_architecture_is_one_line(cli, run_dir):
    _interrupted(run_dir)
    before = snapshot([run_dir])
    args = _train_args(run_dir, "--resume", "--iters", "6", out="run.safetensors")
    args[args.index("johnson-half")] = "johnson"
    assert_refused(cli(*args), says="different arch", unchanged=before)


def test_resume_and_restart_together_are_refused(cli, run_dir):
    _interrupted(run_dir)
    before = snapshot([run_dir])
    outcome = cli(*_train_args(run_dir, "--resume", "--restart", out="run.safetensors"))
    assert outcome.code == 2 and "Traceback" not in outcome.err
    assert "not allowed with argument" in outcome.err
    assert snapshot([run_dir]) == before


def test_resume_without_a_checkpoint_is_one_line(cli, run_dir):
    before = snapshot([run_dir])
    assert_refused(cli(*_train_args(run_dir, "--resume")), says="no checkpoint", unchanged=before)


def test_truncated_checkpoint_is_one_line_and_restart_recovers(cli, run_dir):
    ckpt = _interrupted(run_dir)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 3])
    before = snapshot([run_dir])
    assert_refused(cli(*_train_args(run_dir, "--resume", "--iters", "6", out="run.safetensors")),
                   says="unreadable checkpoint", unchanged=before)
    done = cli(*_train_args(run_dir, "--restart", "--iters", "2", out="run.safetensors"))
    assert done.code == 0, done.err
    assert (run_dir / "run.safetensors").is_file() and not ckpt.exists()


@pytest.mark.slow
def test_kill_minus_nine_then_resume_finishes_the_run(cli, run_dir):
    """A real process killed with SIGKILL after a checkpoint: a plain rerun is refused, --resume finishes."""
    out = run_dir / "killed.safetensors"
    args = [str(a) for a in _train_args(run_dir, "--iters", "40", "--checkpoint-every", "1", out=out.name)]
    proc = subprocess.Popen([sys.executable, "-m", "instyle", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    ckpt = run_dir / "killed.ckpt.safetensors"
    deadline = time.monotonic() + 240
    while not ckpt.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # well inside the run: 40 steps of checkpoints
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert ckpt.is_file() and not out.exists()
    before = snapshot([ckpt])
    assert_refused(cli(*args), says="--resume continues it", unchanged=before)
    finished = cli(*args, "--resume")
    assert finished.code == 0, finished.err
    assert out.is_file() and not ckpt.exists()
    assert "(40 steps" in finished.out


def test_same_seed_same_weights(run_dir):
    """What the README promises: a seed fixes the run (fp32, same machine and thread count)."""
    from safetensors.torch import load_file

    outs = []
    for name in ("a", "b"):
        cfg = TrainConfig(style=str(run_dir / "style.png"), content=str(run_dir / "content"),
                          output=str(run_dir / f"{name}.safetensors"), arch="johnson-half", size=32, style_size=32,
                          batch=2, iters=3, holdout=0, precision="fp32", vgg_weights="random", seed=3)
        train(cfg, progress=False)
        outs.append(load_file(str(run_dir / f"{name}.safetensors")))
    assert all(outs[0][k].equal(outs[1][k]) for k in outs[0])

"""Texture networks: train a noise-to-texture generator on one texture image (Ulyanov et al. 2016, 2017).

The objective is the Gram (style) loss only, at VGG relu1_1 … relu5_1 (the ``ulyanov`` preset's style
layers, no content term), of generated samples against one texture image. The recipe is the authors'
(texture_nets ``texture_nets_v1``): Adam, lr 0.1 × 0.8 every 300 steps, 1500 steps, batch 16, 256 px.

Diversity (Ulyanov, Vedaldi & Lempitsky 2017, "Improved Texture Networks"): a plain texture network
collapses to nearly one sample whatever the noise. Asking the samples' distribution q to approach the
Julesz ensemble p(x) ∝ exp(−L(x)/T) in KL(q‖p) adds q's entropy to the objective, estimated in each
batch with the Kozachenko–Leonenko nearest-neighbour estimator::

    objective = mean_i L(g(z_i)) − λ · mean_i ln min_{j≠i} ‖g(z_i) − g(z_j)‖

The distance is the RMS pixel distance (why pixels and not VGG features: ``instyle.losses.diversity``).
λ = 0 skips the term entirely, so it trains exactly the plain network.

Runs are deterministic for a seed: the initial weights come from ``torch.manual_seed(seed)`` and the
noise of step s from a generator seeded with ``(seed, s)`` (``step_noise``), so a resumed run sees the
same noise as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from instyle.core.errors import InstyleError
from instyle.core.files import refuse_overwriting, sha256_file
from instyle.core.hardware import check_device, machine_description, pick_device
from instyle.core.version import __version__
from instyle.losses.diversity import nearest_neighbour_log_distance
from instyle.losses.perceptual import LossConfig, PerceptualLoss, get_preset, optimize_image
from instyle.models import NORM_KINDS, create_model
from instyle.models.card import ModelCard
from instyle.models.modelfile import card_path, save_model
from instyle.models.ulyanov import UlyanovTexture
from instyle.training.checkpoints import check_run_state, load_checkpoint, save_checkpoint
from instyle.training.guard import StepGuard
from instyle.training.inputs import load_style_tensor, step_generator

ARCH = "ulyanov-texture"
# Options a resumed run must share with its checkpoint (the rest only say where or how long it runs).
_RESUME_KEYS = ("texture", "norm", "size", "texture_size", "batch", "seed", "lr", "lr_gamma", "lr_every",
                "style_weight", "tv_weight", "diversity", "arch_kwargs")


@dataclass
class TextureConfig:
    """Everything that determines a texture run; stored verbatim in the model card (``train``)."""

    texture: str
    output: str
    size: int = 256  # training sample side (px)
    texture_size: int = 256  # long side the texture image is resized to (the scale of its features)
    batch: int = 16
    iters: int = 1500
    lr: float = 0.1
    lr_gamma: float = 0.8  # lr × lr_gamma every lr_every steps
    lr_every: int = 300
    diversity: float = 0.0  # λ of the entropy term; 0: the plain texture network
    norm: str = "instance"
    style_weight: float | None = None  # default: the ulyanov preset's
    tv_weight: float = 0.0
    seed: int = 0
    device: str = "auto"
    grad_clip: float | None = None
    log_every: int = 10
    checkpoint_every: int = 100
    vgg_weights: str = "imagenet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    texture_meta: dict[str, Any] = field(default_factory=dict)  # title, license … of a fetched texture

    def validate(self) -> None:
        """One ``InstyleError`` line for the first option that is out of range."""
        ints = {"size": (16, 4096), "texture_size": (16, 4096), "batch": (1, 1024), "iters": (1, 10_000_000),
                "lr_every": (1, 10_000_000), "seed": (0, 2**63 - 1), "log_every": (1, 10_000_000),
                "checkpoint_every": (1, 10_000_000)}
        for name, (low, high) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InstyleError(f"--{name.replace('_', '-')} must be an integer in [{low}, {high}], got {value!r}")
        floats = {"lr": (1e-12, 10.0), "lr_gamma": (1e-6, 1.0), "diversity": (0.0, 1e12), "tv_weight": (0.0, 1e12),
                  "style_weight": (0.0, 1e15), "grad_clip": (1e-12, 1e12)}
        for name, (low, high) in floats.items():
            value = getattr(self, name)
            if value is None and name in ("style_weight", "grad_clip"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise InstyleError(f"--{name.replace('_', '-')} must be a number in [{low:g}, {high:g}], got {value!r}")
        if self.norm not in NORM_KINDS or self.norm == "none":
            raise InstyleError(f"--norm: choose one of batch, instance, instance-running, got {self.norm!r}")
        if self.diversity and self.batch < 2:
            raise InstyleError("--diversity compares samples within a batch: it needs --batch 2 or more")
        if Path(self.output).suffix != ".safetensors":
            raise InstyleError(f"{self.output}: the output must be a .safetensors model file")
        if not Path(self.texture).is_file():
            raise InstyleError(f"{self.texture}: texture image not found")
        check_device(self.device)

    def paths(self) -> tuple[Path, Path, Path]:
        """(model, checkpoint, log) paths, as ``instyle train`` names them."""
        out = Path(self.output)
        stem = out.with_suffix("")
        return out, Path(f"{stem}.ckpt.safetensors"), Path(f"{stem}.log.jsonl")


# ----------------------------------------------------------------------------- the objective


def texture_loss_config(style_weight: float | None = None, tv_weight: float = 0.0) -> LossConfig:
    """Gram terms only, at the ``ulyanov`` preset's layers (relu1_1 … relu5_1) and style weight."""
    preset = get_preset("ulyanov")
    return LossConfig(content_layers={}, style_layers=preset.style_layers, content_weight=0.0,
                      style_weight=preset.style_weight if style_weight is None else style_weight, tv_weight=tv_weight)


def texture_objective(criterion: PerceptualLoss, samples: torch.Tensor, diversity: float) -> dict[str, torch.Tensor]:
    """``total`` = mean Gram loss − λ · mean ln nearest-neighbour distance, with its parts.

    λ = 0 computes no entropy term at all: the objective is then the plain texture network's."""
    terms = criterion(samples, samples)  # no content layers: the second argument is only shape-checked
    out = {"total": terms["total"], "style": terms["style"], "tv": terms["tv"]}
    if diversity:
        log_nn = nearest_neighbour_log_distance(samples)
        out["log_nn_distance"] = log_nn.mean()
        out["total"] = terms["total"] - diversity * log_nn.mean()
    return out


def step_noise(model: UlyanovTexture, batch: int, size: int, seed: int, step: int) -> list[torch.Tensor]:
    """The noise pyramid of training step ``step`` (0-based): a pure function of (seed, step)."""
    return model.noise(batch, size, size, step_generator(seed, step))


def lr_factor(cfg: TextureConfig, step: int) -> float:
    """The authors' step decay: × ``lr_gamma`` every ``lr_every`` steps (0-based ``step``)."""
    return cfg.lr_gamma ** (step // cfg.lr_every)


# ----------------------------------------------------------------------------- the loop


def train_texture(cfg: TextureConfig, resume: bool = False, restart: bool = False, progress: bool = True,
                  on_log: Callable[[dict[str, Any]], None] | None = None) -> ModelCard:
    """Train one texture generator; returns the model card written beside the weights."""
    cfg.validate()
    out_path, ckpt_path, log_path = cfg.paths()
    refuse_overwriting([out_path, card_path(out_path), ckpt_path, log_path], [cfg.texture])
    check_run_state(ckpt_path, dataclasses.asdict(cfg), _RESUME_KEYS, resume=resume, restart=restart)

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = create_model(ARCH, norm=cfg.norm, **cfg.arch_kwargs).to(device).train()
    assert isinstance(model, UlyanovTexture)
    if cfg.size < model.min_size or cfg.size % model.size_multiple:
        raise InstyleError(f"--size must be a multiple of {model.size_multiple} and at least {model.min_size} "
                           f"for {model.scales} scales, got {cfg.size}")
    loss_cfg = texture_loss_config(cfg.style_weight, cfg.tv_weight)
    criterion = PerceptualLoss(loss_cfg, weights=cfg.vgg_weights).to(device)
    criterion.set_style(load_style_tensor(cfg.texture, cfg.texture_size).to(device))
    guard = StepGuard(model.parameters(), cfg.lr, device)

    state: dict[str, Any] = {"step": 0, "elapsed": 0.0, "curve": [], "last": {}}
    if resume:
        state = load_checkpoint(ckpt_path, model, guard.opt)
        guard.restore(state.get("skipped", 0))
        _truncate_log(log_path, state["step"])
    else:
        log_path.unlink(missing_ok=True)
        ckpt_path.unlink(missing_ok=True)
    state["config"] = dataclasses.asdict(cfg)

    bar = tqdm(total=cfg.iters, initial=state["step"], disable=not progress, unit="step", dynamic_ncols=True,
               desc=f"texture {Path(cfg.texture).stem}")
    t0 = time.perf_counter() - state["elapsed"]
    while state["step"] < cfg.iters:
        for group in guard.opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, state["step"])
        samples = model(step_noise(model, cfg.batch, cfg.size, cfg.seed, state["step"]))
        terms = texture_objective(criterion, samples, cfg.diversity)
        grad_norm = guard.step(terms["total"], cfg.grad_clip)
        state["step"] += 1
        step = state["step"]
        if step % cfg.log_every == 0 or step == cfg.iters:
            rec = {"step": step, **{k: round(v.item(), 6) for k, v in terms.items()},
                   "grad_norm": round(float(grad_norm), 4), "elapsed": round(time.perf_counter() - t0, 2)}
            state["last"] = rec
            state["curve"].append(rec)
            _append_log(log_path, rec)
            bar.set_postfix({k: f"{rec[k]:.3g}" for k in ("style", "log_nn_distance") if k in rec})
            if on_log:
                on_log(rec)
        bar.update(1)
        if step % cfg.checkpoint_every == 0 and step < cfg.iters:
            state["elapsed"] = time.perf_counter() - t0
            state["skipped"] = guard.check()
            save_checkpoint(ckpt_path, model, guard.opt, state)
    bar.close()
    state["elapsed"] = time.perf_counter() - t0
    state["skipped"] = guard.check()
    card = ModelCard.from_dict(_model_card(cfg, model, loss_cfg, state, device), str(out_path))
    save_model(model.cpu(), card, out_path)
    ckpt_path.unlink(missing_ok=True)
    return card


def _model_card(cfg: TextureConfig, model: UlyanovTexture, loss: LossConfig, state: dict[str, Any],
                device: torch.device) -> dict[str, Any]:
    arch_kwargs = {"scales": model.scales, "channels": model.to_rgb.in_channels // model.scales,
                   "noise_channels": model.noise_channels, "circular": int(model.circular)}
    return {
        "arch": ARCH,
        "norm": cfg.norm,
        "arch_kwargs": arch_kwargs,
        "kind": "texture",
        "description": f"texture network: {cfg.texture_meta.get('title') or Path(cfg.texture).stem}",
        "style": {"file": Path(cfg.texture).name, "sha256": sha256_file(cfg.texture), **cfg.texture_meta},
        "loss": loss.to_dict(),
        "diversity": cfg.diversity,
        "train": dataclasses.asdict(cfg),
        "metrics": {"final_train": state["last"], "curve": state["curve"]},
        "steps": state["step"],
        "skipped_steps": state.get("skipped", 0),
        "wall_time_s": round(state["elapsed"], 1),
        "machine": machine_description(),
        "device": str(device),
        "precision": "fp32",
        "software": {"instyle": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _append_log(path: Path, rec: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a resumed run restarts from."""
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        path.write_text("".join(ln + "\n" for ln in keep))


# ----------------------------------------------------------------------------- measuring samples


def seam_ratios(samples: torch.Tensor, multiple: int) -> tuple[float, float]:
    """(columns, rows): mean absolute difference across the wrap edge (last column to first, last
    row to first) over that of interior neighbours at the same phase, i.e. across edges at multiples
    of ``multiple`` (the generator's ``size_multiple``: nearest upsampling makes its output
    stationary only under such shifts). About 1 for a seamless tile; well above 1 at a seam."""
    x = samples.float()
    w, h = x.shape[-1], x.shape[-2]
    cols = torch.arange(multiple, w, multiple)
    rows = torch.arange(multiple, h, multiple)
    if not len(cols) or not len(rows):
        raise ValueError(f"need sides above {multiple} px to compare the wrap edge with interior ones")
    col = (x[..., 0] - x[..., -1]).abs().mean() / (x[..., cols] - x[..., cols - 1]).abs().mean()
    row = (x[..., 0, :] - x[..., -1, :]).abs().mean() / (x[..., rows, :] - x[..., rows - 1, :]).abs().mean()
    return float(col), float(row)


def texture_optimum(criterion: PerceptualLoss, size: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """The per-image optimum the samples are compared with: L-BFGS on the pixels of one size² image
    from U(0, 1) noise (``steps`` function evaluations), same Gram loss; (image, its loss)."""
    start = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(criterion.device)
    best = optimize_image(criterion, start, steps=steps, lr=1.0, init=start, optimizer="lbfgs")
    return best, sample_losses(criterion, best)[0]


@torch.no_grad()
def sample_losses(criterion: PerceptualLoss, samples: torch.Tensor) -> list[float]:
    """The Gram (texture) loss of each sample, one at a time (what the reports average)."""
    return [float(criterion(x[None], x[None])["style"]) for x in samples.to(criterion.device)]


"""The diversity experiment's second half: stylization networks g(x, z) with and without the term.

A network with noise channels can learn to ignore them: the paper's point is that at λ = 0 its
outputs for one photo and different noise collapse to one picture, and the Kozachenko–Leonenko
term (``losses/diversity.py``) keeps them apart. For each λ and seed, one ``johnson``-family
network with 3 noise channels is trained on the fetched photos (instance norm, the paper's), then
scored on held-out photos it never saw: the objective it was trained on (mean over the photos and
the noise seeds) and the diversity, the mean pairwise RMS **pixel** distance of one photo's outputs
under ``samples`` noise seeds, averaged over photos (pixels in [0, 1]).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from instyle.core.metrics import mean_sd
from instyle.data.datasets import link_folder, split_holdout
from instyle.data.fetch import publishable_rows
from instyle.data.images import list_images, tensor_to_pil
from instyle.losses.diversity import mean_pairwise_distance
from instyle.losses.perceptual import PerceptualLoss, get_preset
from instyle.models.layers import with_noise
from instyle.models.modelfile import load_model
from instyle.training.config import TrainConfig
from instyle.training.holdout import center_crops, loss_terms, run_model
from instyle.training.inputs import load_style_tensor
from instyle.training.loop import train

NOISE_SEED = 20_000  # evaluation noise seeds start here: never a training step's


@dataclass(frozen=True)
class PhotoPreset:
    style: str
    lambdas: tuple[float, ...]
    seeds: tuple[int, ...]
    arch: str = "johnson-half"
    size: int = 128
    batch: int = 2
    copies: int = 2
    iters: int = 150
    decay: int = 50
    holdout: int = 4
    eval_size: int = 128
    samples: int = 4  # noise seeds per held-out photo
    noise_channels: int = 3


def run_photos(p: PhotoPreset, style_file: Path, content: Path, work: Path, *, vgg_weights: str = "imagenet",
               log: Callable[[str], None] = print, progress: bool = True
               ) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """Train what is missing under ``work``, score every network; returns (per-run rows, figure rows)."""
    files = list_images([content])
    train_files, held = split_holdout(files, p.holdout, seed=4321)
    train_dir = link_folder(work / "train_content", train_files)
    photos = center_crops(held, p.eval_size)
    shown = publishable_rows(held, 1)
    criterion = PerceptualLoss(get_preset("johnson"), weights=vgg_weights).eval()
    criterion.set_style(load_style_tensor(style_file, 256))
    rows: list[dict[str, Any]] = []
    figure: list[list[Any]] = []
    for lam in p.lambdas:
        for seed in p.seeds:
            path = work / "models" / f"{style_file.stem}-l{lam:g}-s{seed}.safetensors"
            cfg = TrainConfig(style=str(style_file), content=str(train_dir), output=str(path), arch=p.arch,
                              norm="instance", loss="johnson", size=p.size, style_size=256, batch=p.batch,
                              iters=p.iters, decay=p.decay, seed=seed, precision="fp32", holdout=0,
                              noise_channels=p.noise_channels, diversity=lam, diversity_copies=p.copies,
                              checkpoint_every=max(25, p.iters // 3), log_every=max(1, p.iters // 20),
                              vgg_weights=vgg_weights)
            if not path.is_file():
                log(f"stylization λ={lam:g} seed {seed}: training {path.name}")
                train(cfg, resume=cfg.paths()[1].is_file(), progress=progress)
            model, card = load_model(path)
            outputs = noisy_outputs(model, photos, p.samples, p.noise_channels)
            terms = [loss_terms(criterion, out, photos) for out in outputs]
            per_photo = [mean_pairwise_distance(torch.stack([out[i] for out in outputs])) for i in range(len(photos))]
            rows.append({"style": style_file.stem, "lambda": lam, "seed": seed, "arch": p.arch,
                         "total": statistics.fmean(t["total"] for t in terms),
                         "content": statistics.fmean(t["content"] for t in terms),
                         "style_term": statistics.fmean(t["style"] for t in terms),
                         "diversity": statistics.fmean(per_photo), "train_s": card.wall_time_s})
            if seed == p.seeds[0] and shown:  # one held-out photo (licence permitting) under three noise seeds
                i = shown[0]
                figure.append([tensor_to_pil(photos[i]), *(tensor_to_pil(out[i]) for out in outputs[:3])])
    return rows, figure


@torch.no_grad()
def noisy_outputs(model: torch.nn.Module, photos: torch.Tensor, samples: int, channels: int) -> list[torch.Tensor]:
    """The outputs for every photo under each of ``samples`` fixed noise seeds (one field per seed)."""
    outs = []
    for k in range(samples):
        noisy = with_noise(photos, 3, channels, torch.Generator().manual_seed(NOISE_SEED + k))
        outs.append(run_model(model, noisy))
    return outs


def summarise_photos(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd over seeds per λ, with the change against λ = 0."""
    out = []
    for lam in dict.fromkeys(r["lambda"] for r in rows):
        runs = [r for r in rows if r["lambda"] == lam]
        row: dict[str, Any] = {"style": runs[0]["style"], "lambda": lam, "seeds": len(runs)}
        for key in ("total", "content", "style_term", "diversity"):
            row[key], row[f"{key}_sd"] = mean_sd([r[key] for r in runs])
        out.append(row)
    base = next((r for r in out if r["lambda"] == 0.0), None)
    for row in out:
        if base is not None and base["diversity"] and base["total"]:
            row["diversity_gain"] = row["diversity"] / base["diversity"]
            row["loss_cost"] = row["total"] / base["total"] - 1
    return out

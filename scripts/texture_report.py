"""Numbers and a picture for docs/textures.md: texture networks trained with and without diversity.

    python scripts/texture_report.py RUN/leopard-l0.safetensors RUN/leopard-l10.safetensors \\
        --texture leopard -o docs/textures.jpg --json docs/textures.json

For each model: the Gram (texture) loss of samples at the training size, against a per-image L-BFGS
optimum of the same loss from noise (the quality ceiling); the mean pairwise RMS pixel distance of
samples (diversity); how far two seeds' samples differ; and the seam ratios of --tile samples
(wrap-edge difference over phase-matched interior differences, ~1 when seamless). The picture has
one row per model: the texture image, samples at 2x the training size, and a --tile sample
repeated 2x2.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from instyle.core.files import atomic_write_text
from instyle.data.fetch import style_path
from instyle.data.grid import contact_sheet
from instyle.data.images import load_image, save_image, tensor_to_pil
from instyle.losses.diversity import mean_pairwise_distance
from instyle.losses.perceptual import PerceptualLoss
from instyle.models.modelfile import load_model
from instyle.training.inputs import load_style_tensor
from instyle.training.texture import sample_losses, seam_ratios, texture_loss_config, texture_optimum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--texture", default=None,
                    help="the texture image or fetched slug the models learned (default: each card's own)")
    ap.add_argument("-o", "--output", required=True, help="the sample grid picture")
    ap.add_argument("--json", default=None)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--lbfgs-steps", type=int, default=150)
    a = ap.parse_args()
    torch.manual_seed(0)

    results: list[dict[str, object]] = []
    rows: list[list[Image.Image]] = []
    optima: dict[tuple[str, int, int, object], float] = {}
    for path in a.models:
        model, card = load_model(path)
        train = card.train or {}
        name = a.texture or train["texture"]
        texture = Path(name) if Path(name).is_file() else style_path(Path(name).stem)
        size, tsize = int(train["size"]), int(train["texture_size"])
        criterion = PerceptualLoss(texture_loss_config(train.get("style_weight"), 0.0)).eval()
        criterion.set_style(load_style_tensor(texture, tsize))
        key = (str(texture), size, tsize, train.get("style_weight"))
        if key not in optima:  # the same loss (texture, sizes, weight) is optimised once
            t0 = time.perf_counter()
            optima[key] = texture_optimum(criterion, size, a.lbfgs_steps)[1]
            print(f"{texture.stem}: L-BFGS optimum ({a.lbfgs_steps} evaluations, {time.perf_counter() - t0:.0f} s): "
                  f"{optima[key]:.4g}")
        optimum = optima[key]
        samples = torch.cat([model.sample(1, size, size, seed=s) for s in range(a.samples)])
        losses = sample_losses(criterion, samples)
        tiles = model.sample(a.samples, 2 * size, 2 * size, seed=100, tile=True)
        col, row = seam_ratios(tiles, model.size_multiple)
        rec = {
            "model": Path(path).name, "texture": texture.stem, "diversity": card.data.get("diversity"),
            "steps": card.steps,
            "wall_time_s": card.wall_time_s, "size": size,
            "sample_loss_mean": sum(losses) / len(losses), "sample_loss_max": max(losses),
            "lbfgs_loss": optimum, "loss_ratio": sum(losses) / len(losses) / optimum,
            "mean_pairwise_distance": mean_pairwise_distance(samples),
            "seed0_vs_seed1_mean_abs": float((samples[0] - samples[1]).abs().mean()),
            "seam_ratio_columns": col, "seam_ratio_rows": row,
        }
        results.append(rec)
        print(json.dumps(rec))
        big = [tensor_to_pil(model.sample(1, 2 * size, 2 * size, seed=s)[0]) for s in range(4)]
        tile = tensor_to_pil(tiles[0])
        repeated = Image.new("RGB", (2 * tile.width, 2 * tile.height))
        for dx in (0, tile.width):
            for dy in (0, tile.height):
                repeated.paste(tile, (dx, dy))
        rows.append([load_image(texture).rgb, *big, repeated])
    labels = ["texture", *(f"seed {s}" for s in range(4)), "--tile, 2x2"]
    row_labels = [f"lambda={r['diversity']}" if a.texture else Path(str(r['model'])).stem for r in results]
    sheet = contact_sheet(rows, labels, row_labels, cell=160)
    save_image(sheet, a.output, quality=90)
    if a.json:
        atomic_write_text(Path(a.json), json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

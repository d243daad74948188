"""Where ``--adapt`` starts: the held-out loss at step 0 for each ``--adapt-init`` (issue #22).

The base's own affine (a Starry Night) against the mean over the trunk's jointly trained styles,
scored under a new painting's objective on the run's held-out photos, 256 px, fp32.

    python benchmarks/adaptation_start.py church-at-auvers
"""

from __future__ import annotations

import argparse

import torch

from instyle.data.fetch import default_data_dir, style_path
from instyle.losses.perceptual import PerceptualLoss, get_preset
from instyle.models import create_model
from instyle.training.adapt import ADAPT_INITS, DEFAULT_BASE, init_adapted
from instyle.training.config import TrainConfig
from instyle.training.holdout import center_crops
from instyle.training.inputs import content_split, load_style_tensor
from instyle.training.loop import evaluate_holdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paintings", nargs="+", help="fetched painting slugs")
    p.add_argument("--base", default=DEFAULT_BASE)
    a = p.parse_args()
    print("| painting | " + " | ".join(f"start: {how}" for how in ADAPT_INITS) + " |")
    print("|---|" + "---:|" * len(ADAPT_INITS))
    for painting in a.paintings:
        cfg = TrainConfig(style=str(style_path(painting)), content=str(default_data_dir() / "content"),
                          output="unused.safetensors", adapt=a.base)
        hold = center_crops(content_split(cfg)[1], cfg.size)
        criterion = PerceptualLoss(get_preset(cfg.loss))
        criterion.set_style(load_style_tensor(cfg.style, cfg.style_size))
        totals = []
        for how in ADAPT_INITS:
            model = create_model(cfg.arch)
            init_adapted(model, a.base, how, {"arch": cfg.arch, "norm": cfg.norm, "arch_kwargs": {}})
            with torch.no_grad():
                totals.append(evaluate_holdout(model, criterion, hold, None)["total"])
        print(f"| {painting} | " + " | ".join(f"{t:.2f}" for t in totals) + " |")


if __name__ == "__main__":
    main()

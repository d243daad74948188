"""Ship the video-stable styles (#19): a zoo style fine-tuned with the stability term, as ``NAME-stable``.

    python scripts/ship_stable.py runs/stable/starry-night-w500.safetensors=starry-night \\
        runs/stable/great-wave-w500.safetensors=great-wave

The description and the tuned defaults (strength, stroke scale) come from the base style's card;
the notes say how the fine-tune ran. docs/video-stability.md has the measurements that let them in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from instyle.models.modelfile import read_card
from instyle.training.ship import ship
from instyle.zoo import ZOO_DIR, list_styles

NOTES = ("Fine-tuned from {init} ({start} steps of {base}, sha256 {sha}...) for {iters} more steps with the "
         "video-stability term (--temporal-weight {w:g}: a copy of each crop shifted by up to {shift} px, with "
         "noise up to sigma {noise:g}{grain}, must stylize to the same pixels; instyle.losses.temporal), "
         "--init {init}, Adam restarted with a {warmup}-step warm-up, learning rate {lr:g} annealed over the last "
         "{decay} steps, fp32 on {machine}. The recorded command is the equivalent single run from scratch: it "
         "reproduces the recipe, not these weights. Flicker and held-out loss against {base}: "
         "docs/video-stability.md.")


def _grain(grain: float) -> str:
    """How the card's noise was grained, for the notes (grain 1 is independent pixel noise)."""
    return " per pixel" if grain <= 1 else f" smooth over 1 to {grain:g} px (--temporal-grain {grain:g})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", metavar="MODEL=BASE")
    ap.add_argument("--dest", type=Path, default=ZOO_DIR)
    a = ap.parse_args()
    zoo = list_styles()
    for spec in a.models:
        path, base = spec.split("=", 1)
        card, base_card = read_card(path).data, zoo[base].data
        train = card["train"]
        notes = NOTES.format(base=base, init=card["init"]["file"], sha=card["init"]["sha256"][:12],
                             start=card["init"]["steps"], iters=train["iters"], w=train["temporal_weight"],
                             shift=train["temporal_shift"], noise=train["temporal_noise"], warmup=train["warmup"],
                             grain=_grain(float(train.get("temporal_grain", 1.0))),
                             lr=train["lr"], decay=train["decay"], machine=card["machine"])
        out = ship(path, f"{base}-stable", base_card["description"] + "; steadier on video",
                   strength=base_card["defaults"]["strength"], scale=base_card["defaults"]["scale"], dest=a.dest,
                   notes=notes)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Ship the stroke-row fine-tunes of #24 in place of their single-row zoo styles (same names, so
``make demo``, the gallery and everything that names a style keep working; stroke 1 is the
default, and the rows started from the shipped look).

    python scripts/ship_strokes.py runs/strokes      # after runs/strokes/train_all.sh
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from instyle.models.modelfile import read_card
from instyle.training.ship import ship
from instyle.zoo import ZOO_DIR

STYLES = ("starry-night", "starry-night-fast", "great-wave-fast")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--dest", type=Path, default=ZOO_DIR)
    ap.add_argument("--styles", nargs="+", default=list(STYLES))
    a = ap.parse_args()
    for name in a.styles:
        old = json.loads((ZOO_DIR / f"{name}.json").read_text())
        run = a.runs / f"{name}.safetensors"
        card = read_card(run)
        train = card.train or {}
        note = (f"Stroke rows {', '.join(f'{s:g}' for s in card.strokes or ())} (#24): fine-tuned from the shipped "
                f"single-row {name} (its norm scale and shift copied into every row) for {train['iters']} steps, "
                f"{train['size']} px crops, batch {train['batch']}, fp32, loss johnson-balanced, "
                f"{card.wall_time_s / 60:.0f} min on the shared 2-core AMD EPYC (Zen 3) under load "
                "(runs/strokes/train_all.sh; docs/strokes.md). Before that: " + old.get("notes", ""))
        out = ship(run, name, old["description"] + " [stroke rows 0.5-2: --stroke]",
                   strength=old["defaults"]["strength"], scale=old["defaults"]["scale"], stroke=1.0, notes=note,
                   dest=a.dest)
        print(f"shipped {out}")


if __name__ == "__main__":
    main()

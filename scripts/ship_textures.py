"""Train and ship the zoo's texture networks (``src/instyle/zoo/textures/``), then measure them.

    python scripts/ship_textures.py                    # train what is missing under runs/textures, ship
    python scripts/ship_textures.py --report           # + docs/texture-zoo.{jpg,json} (texture_report.py)

Only CC0 textures are shipped (scikit-image's ``gravel`` and ``grass``; every other fetched texture is
GPL). Each is trained by the exact ``instyle texture train`` command recorded in its card, a CPU recipe:
128 px samples of the texture at 128 px, batch 4, 300 steps, lr 0.02 (``experiments/diversity.py`` says why
not the authors' 0.1 at this batch), no diversity term. Trained runs are reused, so a killed script
continues. Looked at before shipping (384x256 tiles): with ``--diversity 10`` both 64 px and 128 px
runs of ``gravel`` painted large white blotches into the grey stones: the entropy term is measured
on pixels, and a bright low-frequency patch is the cheapest way to move samples apart there (the
leopard experiment shows the same at lambda = 100). At lambda = 0 seeds still differ clearly.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from instyle.training.ship import ship_texture
from instyle.zoo import TEXTURE_DIR

# slug -> one-line description
CATALOG = {
    "gravel": "Gravel (scikit-image, CC0): small grey stones, seamless at any size; a few soft pale patches "
              "(a 300-step CPU run)",
    "grass": "Grass (scikit-image, CC0, greyscale): dense blades, seamless at any size; a few soft pale "
             "patches (a 300-step CPU run)",
}
RECIPE = ["--size", "128", "--texture-size", "128", "--batch", "4", "--iters", "300", "--lr", "0.02",
          "--lr-every", "60", "--checkpoint-every", "50"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=Path("runs/textures"))
    ap.add_argument("--report", action="store_true", help="also write docs/texture-zoo.{jpg,json}")
    ap.add_argument("--only", choices=list(CATALOG), help="train and ship just this one")
    a = ap.parse_args()
    shipped = []
    for slug, description in CATALOG.items():
        if a.only and slug != a.only:
            continue
        model = a.runs / f"{slug}.safetensors"
        args = ["texture", "train", "--texture", slug, "-o", str(model), *RECIPE]
        if not model.is_file():
            resume = ["--resume"] if model.with_suffix(".ckpt.safetensors").is_file() else []
            subprocess.run([sys.executable, "-m", "instyle", *args, *resume, "--quiet"], check=True)
        shipped.append(ship_texture(model, slug, description, "instyle " + " ".join(args), dest=TEXTURE_DIR))
        print(f"shipped {shipped[-1]}")
    if a.report:
        subprocess.run([sys.executable, str(Path(__file__).with_name("texture_report.py")), *map(str, shipped),
                        "-o", "docs/texture-zoo.jpg", "--json", "docs/texture-zoo.json", "--lbfgs-steps", "60"],
                       check=True)


if __name__ == "__main__":
    main()

"""Side-by-side review of two trainings of the same styles on held-out photos, at full size.

    python scripts/review_zoo.py runs/zoo/johnson runs/zoo/johnson-long -o /tmp/review

For each style in both run folders it stylizes the held-out photos (long side 1024 px, the size
the issue asks us to judge at) with each run's model and writes ``STYLE_PHOTO.png``: a full-width
comparison (old on the left) and a 1:1 crop of the centre where hatching and blotches show. The
photos come from the fetched cache and may carry licenses that forbid committing the outputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

# Held out of every zoo run (`split_holdout`, seed 0): never trained on.
PHOTOS = ("gcompris-explore-monuments-colosseum.jpg", "gcompris-erase-gosling.jpg")


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 8) -> Image.Image:
    sheet = Image.new("RGB", (left.width + right.width + gap, max(left.height, right.height)), "white")
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + gap, 0))
    return sheet


def centre_crop(img: Image.Image, size: int = 384) -> Image.Image:
    x, y = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((x, y, x + size, y + size))


def main() -> None:
    from instyle.data.fetch import default_data_dir
    from instyle.data.images import load_image
    from instyle.inference.stylizer import Stylizer

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--size", type=int, default=1024)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    photos = {}
    for name in PHOTOS:
        img = load_image(default_data_dir() / "content" / name).rgb
        img.thumbnail((a.size, a.size), Image.Resampling.LANCZOS)
        photos[Path(name).stem.split("-")[-1]] = img
    styles = sorted(f.stem for f in a.new.glob("*.safetensors")
                    if f.stem != "joint" and not f.name.endswith(".ckpt.safetensors") and (a.old / f.name).is_file())
    for style in styles:
        old, new = Stylizer.load(a.old / f"{style}.safetensors"), Stylizer.load(a.new / f"{style}.safetensors")
        for tag, img in photos.items():
            x, y = old(img, strength=1.0), new(img, strength=1.0)
            side_by_side(x, y).save(a.out / f"{style}_{tag}.png")
            side_by_side(centre_crop(x), centre_crop(y)).save(a.out / f"{style}_{tag}_crop.png")
        print(style, flush=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

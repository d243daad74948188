"""Stroke size as a control (#24): does ``--stroke`` change the strokes, and keep the picture crisp?

For each model with stroke rows, each held-out photo is stylized at full resolution at several
``stroke`` values, and, for comparison, at stroke 1 with the photo resized (``scale``, the old
control). Two figures per result, averaged over the photos:

* **stroke size** (px): the correlation length of what the stylization added to the photo
  (``instyle.core.metrics.correlation_length``): larger brush strokes keep the residual alike over
  longer distances. It should grow monotonically with ``stroke``.
* **sharpness**: high-frequency energy of the output's luminance (detail finer than ~4 px,
  ``high_frequency_energy``), relative to stroke 1. ``scale`` loses it in the down-and-up resize;
  ``stroke`` should not.

It also writes a strip (one row per style: 1:1 crops of one photo at each stroke, then ``scale`` 2)
and the full-size results under ``--keep`` for looking at them.

    python benchmarks/strokes.py -m runs/strokes/starry-night.safetensors ... --out docs
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from common import print_and_save  # benchmarks/ is on sys.path when a script here runs
from PIL import Image, ImageDraw, ImageFont

from instyle.core.hardware import machine_description
from instyle.core.metrics import correlation_length, high_frequency_energy
from instyle.data.images import load_image, pil_to_tensor, tensor_to_pil
from instyle.inference.stylizer import Stylizer

CONTENT = Path.home() / ".cache/instyle/data/content"
# Held-out photos of the zoo runs (instyle.training.inputs.content_split, holdout 8): never trained on.
PHOTOS = ["gcompris-explore-monuments-colosseum.jpg", "gcompris-explore-farm-animals-sheep.jpg",
          "tuxpaint-redwoods-above.jpg"]


def run(stylizer: Stylizer, photo: torch.Tensor, **controls: Any) -> torch.Tensor:
    return stylizer.stylize_tensor(photo, strength=1.0, **controls)


def measure(models: list[str], photos: list[Path], strokes: list[float], scales: list[float], crop: int,
            keep: Path | None) -> tuple[list[dict[str, Any]], list[list[Image.Image]], list[str]]:
    rows, strip, names = [], [], []
    images = [pil_to_tensor(load_image(p).rgb) for p in photos]
    for model in models:
        stylizer = Stylizer.load(model, device="cpu", backend="eager")
        name = stylizer.name
        names.append(name)
        settings = [("stroke", s) for s in strokes] + [("scale", s) for s in scales if s != 1]
        cells = []
        for kind, value in settings:
            lengths, energies, seconds = [], [], []
            for i, (path, x) in enumerate(zip(photos, images, strict=True)):
                t = time.perf_counter()
                y = run(stylizer, x, **({"stroke": value} if kind == "stroke" else {"stroke": 1.0, "scale": value}))
                seconds.append(time.perf_counter() - t)
                lengths.append(correlation_length(y, x))
                energies.append(high_frequency_energy(y))
                out = tensor_to_pil(y)
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    out.save(keep / f"{name}-{path.stem}-{kind}{value:g}.jpg", quality=92)
                if i == 0:
                    left, top = (out.width - crop) // 2, (out.height - crop) // 2
                    cells.append(out.crop((left, top, left + crop, top + crop)))
            rows.append({"model": name, "control": kind, "value": value,
                         "stroke_px": round(statistics.mean(lengths), 3),
                         "hf_energy": statistics.mean(energies), "seconds": round(statistics.mean(seconds), 2),
                         "per_photo_stroke_px": [round(v, 3) for v in lengths]})
        strip.append(cells)
    for r in rows:  # sharpness relative to the same model at stroke 1
        ref = next(q for q in rows if q["model"] == r["model"] and q["control"] == "stroke" and q["value"] == 1.0)
        r["hf_vs_stroke1"] = round(r["hf_energy"] / ref["hf_energy"], 3)
        r["stroke_vs_stroke1"] = round(r["stroke_px"] / ref["stroke_px"], 3)
    return rows, strip, names


def draw_strip(strip: list[list[Image.Image]], names: list[str], labels: list[str], path: Path) -> None:
    """1:1 crops, one row per style, labelled; no resampling of the crops themselves."""
    font = ImageFont.load_default()
    cell = strip[0][0].width
    pad, top, left = 4, 18, 130
    sheet = Image.new("RGB", (left + len(labels) * (cell + pad), top + len(strip) * (cell + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, text in enumerate(labels):
        draw.text((left + j * (cell + pad) + 4, 3), text, fill="black", font=font)
    for i, (cells, name) in enumerate(zip(strip, names, strict=True)):
        y = top + i * (cell + pad)
        draw.text((4, y + cell // 2 - 6), name[:20], fill="black", font=font)
        for j, img in enumerate(cells):
            sheet.paste(img, (left + j * (cell + pad), y))
    sheet.save(path, quality=88)


def table(rows: list[dict[str, Any]], machine: str, photos: list[Path], load: str) -> str:
    lines = ["| style | control | value | stroke size (px) | vs stroke 1 | sharpness vs stroke 1 | s / image |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['control']} | {r['value']:g} | {r['stroke_px']:.2f} | "
                     f"{r['stroke_vs_stroke1']:.2f}x | {r['hf_vs_stroke1']:.2f} | {r['seconds']:.1f} |")
    checks = []
    for model in dict.fromkeys(r["model"] for r in rows):
        ours = [r for r in rows if r["model"] == model and r["control"] == "stroke"]
        sizes = [r["stroke_px"] for r in ours]
        mono = all(b > a for a, b in itertools.pairwise(sizes))
        sharp = min(r["hf_vs_stroke1"] for r in ours)
        checks.append(f"* `{model}`: stroke size {sizes[0]:.2f} -> {sizes[-1]:.2f} px over stroke "
                      f"{ours[0]['value']:g}-{ours[-1]['value']:g} ({sizes[-1] / sizes[0]:.2f}x), "
                      f"{'monotonic' if mono else 'NOT monotonic'}; lowest sharpness vs stroke 1: {sharp:.2f}")
    return "\n".join([f"Machine: {machine}; {load}. Photos (held out, full resolution): "
                      + ", ".join(p.name for p in photos) + ".", "", *lines, "", *checks])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", action="append", required=True, help="a model with stroke rows (repeat)")
    ap.add_argument("--photos", nargs="+", default=None, help="photos (default: three held-out ~1000 px ones)")
    ap.add_argument("--strokes", type=float, nargs="+", default=[0.5, 0.707, 1.0, 1.414, 2.0])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.414, 2.0], help="old control, for comparison")
    ap.add_argument("--crop", type=int, default=256, help="side of the 1:1 crops in the strip")
    ap.add_argument("--load", default="load not recorded", help="what else ran on the machine (for the doc)")
    ap.add_argument("--keep", default=None, help="folder for the full-size results")
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    photos = [Path(p) for p in a.photos] if a.photos else [CONTENT / p for p in PHOTOS]
    torch.set_grad_enabled(False)
    rows, strip, names = measure(a.model, photos, a.strokes, a.scales, a.crop, Path(a.keep) if a.keep else None)
    out = Path(a.out)
    text = table(rows, machine_description(), photos, a.load)
    print_and_save(text, out, "strokes-table.md")
    labels = [f"stroke {s:g}" for s in a.strokes] + [f"scale {s:g} (resize)" for s in a.scales if s != 1]
    draw_strip(strip, names, labels, out / "strokes.jpg")
    (out / "strokes.json").write_text(json.dumps({"machine": machine_description(), "load": a.load,
                                                  "photos": [p.name for p in photos], "rows": rows}, indent=1) + "\n")
    assert all(math.isfinite(r["stroke_px"]) for r in rows)


if __name__ == "__main__":
    main()

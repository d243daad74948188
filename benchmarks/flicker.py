"""Flicker of plain and stable styles on real footage: warped frame-to-frame error, frame-change ratio.

For each clip (opencv-doc's sample videos, unpacked by ``instyle data fetch``) and each
``NAME=STABLE_MODEL`` pair, the first ``--frames`` frames (downsized to ``--max-side``) are stylized
by the shipped style NAME (plain), by the stable model, and by the plain one with ``--smooth``
(``instyle video --smooth``), all at strength 1 with the eager backend, in memory (no encoding).
Each gets the warped error (``instyle.inference.flicker``: optical flow of the input, forward-
backward checked), the plain frame-change ratio that ``instyle video`` prints, and, for smoothing,
the ghost measure: the mean |smoothed - plain| where the input changed (moving people), which
is 0 when smoothing leaves moving things alone.

    python benchmarks/flicker.py --pair starry-night=runs/stable/starry-night.safetensors \\
        --pair great-wave=runs/stable/great-wave.safetensors --strip docs/video-stability.jpg

It writes ``docs/video-stability.md`` (tables; the part of an existing file after the
``<!-- notes -->`` line is kept) and ``docs/video-stability.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from instyle.core.hardware import machine_description
from instyle.data.fetch import sample_clip
from instyle.inference.flicker import WarpedFlicker
from instyle.inference.smoothing import TemporalBlend
from instyle.inference.stylizer import Stylizer
from instyle.inference.video import output_size, read_frames

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- notes -->"


def load_clip(name: str, frames: int, max_side: int) -> torch.Tensor:
    """The first ``frames`` frames of an opencv-doc clip as (N, 3, H, W) floats in [0, 1]."""
    path = Path(name) if Path(name).is_file() else sample_clip(name)
    first = next(read_frames(path, limit=1))
    size = output_size(first.shape[1], first.shape[0], max_side)
    arr = np.stack(list(read_frames(path, size, frames)))
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def stylize(model: str, x: torch.Tensor, batch: int = 4) -> tuple[torch.Tensor, float]:
    """All frames through one model (strength 1, eager), and the milliseconds per frame."""
    stylizer = Stylizer.load(model, backend="eager")
    t = time.perf_counter()
    with torch.no_grad():
        y = torch.cat([stylizer.stylize_tensor(x[i : i + batch], strength=1.0) for i in range(0, len(x), batch)])
    return y.clamp_(0, 1), 1000 * (time.perf_counter() - t) / len(x)


def measure(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    m = WarpedFlicker()
    m.update(x, y)
    return {"warped_in": m.input, "warped_out": m.output, "warped_ratio": m.ratio, "change_ratio": m.change_ratio,
            "reliable": m.reliable}


def ghost(x: torch.Tensor, plain: torch.Tensor, smoothed: torch.Tensor, threshold: float = 0.1) -> float:
    """Mean |smoothed - plain| over pixels whose input changed by more than ``threshold`` since the last frame."""
    moved = (x[1:] - x[:-1]).abs().mean(1) > threshold
    diff = (smoothed[1:] - plain[1:]).abs().mean(1)
    return float(diff[moved].mean()) if moved.any() else 0.0


def strip(x: torch.Tensor, rows: list[tuple[str, torch.Tensor]], path: Path, start: int, n: int = 4) -> None:
    """Rows of ``n`` consecutive frames (input first) and a last column: the mean frame-to-frame change ×4."""
    def pil(t: torch.Tensor) -> Image.Image:
        return Image.fromarray((t.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8))

    h, w = x.shape[-2:]
    label_w = 130
    sheet = Image.new("RGB", (label_w + (n + 1) * (w + 4), len(rows) * (h + 4) + 18), "white")
    draw = ImageDraw.Draw(sheet)
    for c in range(n):
        draw.text((label_w + c * (w + 4) + 4, 3), f"frame {start + c}", fill="black")
    draw.text((label_w + n * (w + 4) + 4, 3), "|change| x4, mean", fill="black")
    for r, (label, frames) in enumerate(rows):
        top = 18 + r * (h + 4)
        draw.text((4, top + h // 2 - 6), label, fill="black")
        seq = frames[start : start + n]
        for c, f in enumerate(seq):
            sheet.paste(pil(f), (label_w + c * (w + 4), top))
        change = (seq[1:] - seq[:-1]).abs().mean(0).mean(0, keepdim=True).mul(4).clamp(0, 1).expand(3, -1, -1)
        sheet.paste(pil(change), (label_w + n * (w + 4), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=88)


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| clip | style | model | warped error (out) | warped ratio (out / in) | vs plain | frame-change ratio "
            "| ghost | ms/frame |")
    lines = [head, "|" + "---|" * 3 + "---:|" * 6]
    for r in rows:
        vs = "" if r["model"] == "plain" else f"{100 * (r['warped_out'] / r['plain_out'] - 1):+.0f}%"
        g = "" if r.get("ghost") is None else f"{r['ghost']:.4f}"
        lines.append(f"| {r['clip']} | {r['style']} | {r['model']} | {r['warped_out']:.4f} | {r['warped_ratio']:.2f} "
                     f"| {vs} | {r['change_ratio']:.2f} | {g} | {r['ms']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", action="append", required=True, metavar="NAME=STABLE",
                    help="a shipped style and its stable model (file or zoo name)")
    ap.add_argument("--clips", nargs="+", default=["vtest.avi", "tree.avi"])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--max-side", type=int, default=384)
    ap.add_argument("--smooth", type=float, default=0.8, help="TemporalBlend alpha for the smoothed row (0: none)")
    ap.add_argument("--strip", type=Path, default=None, help="write the side-by-side strip (first clip) here")
    ap.add_argument("--strip-start", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--name", default="video-stability")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    pairs = [p.split("=", 1) for p in a.pair]
    rows: list[dict[str, Any]] = []
    for ci, clip in enumerate(a.clips):
        x = load_clip(clip, a.frames, a.max_side)
        shown: list[tuple[str, torch.Tensor]] = [("input", x)]
        for name, stable in pairs:
            plain, ms_plain = stylize(name, x)
            steady, ms_stable = stylize(stable, x)
            base = measure(x, plain)
            common = {"clip": Path(clip).name, "size": f"{x.shape[-1]}x{x.shape[-2]}", "frames": len(x),
                      "style": name, "plain_out": base["warped_out"]}
            rows.append({**common, "model": "plain", **base, "ms": ms_plain})
            rows.append({**common, "model": "stable", **measure(x, steady), "ms": ms_stable})
            if a.smooth:
                t = time.perf_counter()
                smoothed = TemporalBlend(a.smooth)(x, plain)
                ms = ms_plain + 1000 * (time.perf_counter() - t) / len(x)
                rows.append({**common, "model": f"plain + smooth {a.smooth:g}", **measure(x, smoothed),
                             "ghost": ghost(x, plain, smoothed), "ms": ms})
            shown += [(f"{name}", plain), (f"{name} stable", steady)]
            print(table(rows[-3:]), flush=True)
        if a.strip is not None and ci == 0:
            strip(x, shown, a.strip, a.strip_start)
    text = table(rows)
    command = "python benchmarks/flicker.py " + shlex.join(sys.argv[1:])
    machine = machine_description()
    load = os.getloadavg()[0]
    doc = a.out / f"{a.name}.md"
    notes = doc.read_text().split(MARKER, 1)[1] if doc.is_file() and MARKER in doc.read_text() else "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(
        "# Video stability: flicker of plain and stable styles\n\n"
        f"Measured by `{command}` on {machine} (load average {load:.1f} when it finished), "
        f"{a.frames} frames of each clip at most {a.max_side} px, strength 1, eager backend, frames in memory "
        "(no encoding). Warped error: mean |out_t - warp(out_t-1)| over pixels with reliable flow, pixel values "
        "in [0, 1] (the input's own warped error is the floor: flow error and noise); frame-change ratio: what "
        "`instyle video` prints (motion included); ghost: mean |smoothed - plain| where the input changed by "
        "more than 0.1 (0: moving things are left alone). Lower is steadier.\n\n"
        f"{text}\n\n{MARKER}{notes}")
    (a.out / f"{a.name}.json").write_text(json.dumps({"command": command, "machine": machine, "load": load,
                                                      "rows": rows}, indent=1) + "\n")
    print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

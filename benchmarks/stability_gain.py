"""How much a style amplifies each kind of small input change: the diagnostic behind ``--temporal-grain``.

For each clip and model, on the pixels where the input frames are static (blurred |frame change|
below ``--static``), the gain of a perturbation is the RMS change of the output over the RMS change
of the input. The real perturbation is the next frame (sensor and codec noise on a static camera);
the synthetic ones have the same RMS as that real change and differ only in their spatial grain:
independent pixel noise, noise smoothed by a box of 5 px, constant over 4x4 and 8x8 blocks (codec
blocks), luma-only pixel noise, and ``grained_noise`` (what the training term draws at a grain).
A perturbation the network amplifies much more than pixel noise is one a pixel-noise term never
trains against.

    python benchmarks/stability_gain.py -m runs/stable/starry-night-single.safetensors \\
        -m runs/stable/starry-night-w1000-g8.safetensors --clips vtest.avi tree.avi

Writes ``OUT/video-stability-gain.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from flicker import load_clip

from instyle.core.hardware import machine_description
from instyle.inference.stylizer import Stylizer
from instyle.losses.temporal import grained_noise

ROOT = Path(__file__).resolve().parents[1]
Perturb = Callable[[torch.Size, torch.Generator], torch.Tensor]


def _blocks(size: int) -> Perturb:
    def draw(shape: torch.Size, g: torch.Generator) -> torch.Tensor:
        n, c, h, w = shape
        coarse = torch.randn((n, c, -(-h // size), -(-w // size)), generator=g)
        return coarse.repeat_interleave(size, 2).repeat_interleave(size, 3)[..., :h, :w]
    return draw


def _box(size: int) -> Perturb:
    def draw(shape: torch.Size, g: torch.Generator) -> torch.Tensor:
        return F.avg_pool2d(torch.randn(shape, generator=g), size, stride=1, padding=size // 2,
                            count_include_pad=False)
    return draw


def _luma(shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = shape
    return torch.randn((n, 1, h, w), generator=g).expand(shape).contiguous()


def perturbations(grain: float) -> dict[str, Perturb]:
    return {"iid pixel noise": lambda s, g: torch.randn(s, generator=g),
            "box-blurred noise (5 px)": _box(5),
            "4x4 block noise": _blocks(4),
            "8x8 block noise": _blocks(8),
            "luma-only pixel noise": _luma,
            f"grained noise (grain {grain:g}, training's)": lambda s, g: grained_noise(s, grain, g)}


def static_mask(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N-1, 1, H, W): where the blurred mean |frame change| of the input stays below ``threshold``."""
    change = (x[1:] - x[:-1]).abs().mean(1, keepdim=True)
    return F.avg_pool2d(change, 5, stride=1, padding=2, count_include_pad=False) < threshold


def rms(t: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask.expand_as(t)
    return float(t[m].pow(2).mean().sqrt())


def gains(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, threshold: float,
          grain: float, seed: int) -> dict[str, float]:
    """Gain of the real frame change and of each synthetic perturbation of the same RMS."""
    mask = static_mask(x, threshold)
    if not mask.any():
        raise SystemExit("no static pixels in this clip: raise --static")
    y = run(x)
    real_in = rms(x[1:] - x[:-1], mask)
    out = {"real frame change": rms(y[1:] - y[:-1], mask) / real_in}
    base, base_y = x[:-1], y[:-1]
    g = torch.Generator().manual_seed(seed)
    for name, draw in perturbations(grain).items():
        eps = draw(base.shape, g)
        eps = eps * (real_in / rms(eps, mask))
        moved = (base + eps).clamp(0, 1)
        out[name] = rms(run(moved) - base_y, mask) / rms(moved - base, mask)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    names = list(rows[0]["gains"])
    head = "| clip | model | " + " | ".join(names) + " |"
    lines = [head, "|---|---|" + "---:|" * len(names)]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['model']} | " + " | ".join(f"{r['gains'][n]:.2f}" for n in names) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", action="append", required=True, help="style name or model file (repeat)")
    ap.add_argument("--clips", nargs="+", default=["vtest.avi", "tree.avi"])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--static", type=float, default=0.03, help="blurred |frame change| below this is static")
    ap.add_argument("--grain", type=float, default=8.0, help="grain of the grained-noise column")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    rows: list[dict[str, Any]] = []
    for clip in a.clips:
        x = load_clip(clip, a.frames, a.max_side)
        for model in a.model:
            stylizer = Stylizer.load(model, backend="eager")

            def run(t: torch.Tensor, s: Stylizer = stylizer) -> torch.Tensor:
                with torch.no_grad():
                    return torch.cat([s.stylize_tensor(t[i : i + 4], strength=1.0) for i in range(0, len(t), 4)])

            rows.append({"clip": Path(clip).name, "model": Path(model).name.removesuffix(".safetensors"),
                         "gains": gains(run, x, a.static, a.grain, a.seed)})
            print(table(rows[-1:]), flush=True)
    command = "python benchmarks/stability_gain.py " + shlex.join(sys.argv[1:])
    machine = machine_description()
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "video-stability-gain.md").write_text(
        "# Which input changes a style amplifies\n\n"
        f"Measured by `{command}` on {machine}: {a.frames} frames of each clip at most {a.max_side} px, eager, "
        "strength 1. Gain: RMS output change over RMS input change, on pixels where the input is static "
        f"(blurred |frame change| < {a.static:g}); every synthetic perturbation has the RMS of the real one.\n\n"
        f"{table(rows)}\n")
    (a.out / "video-stability-gain.json").write_text(
        json.dumps({"command": command, "machine": machine, "rows": rows}, indent=1) + "\n")
    print(f"wrote {a.out / 'video-stability-gain.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

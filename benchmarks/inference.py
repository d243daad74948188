"""Inference speed of every backend in ``instyle.inference.backends`` against fp32 eager, measured in the same run.

Rounds are interleaved (eager, then each path, repeated) and medians reported, so load from other
processes hits the baseline and the paths alike. Each path's PSNR against the fp32 eager output
(first round, same input) is in the table; paths under 40 dB are marked and ``auto`` avoids them.

    python benchmarks/inference.py -m model.safetensors                 # CPU, all CPU paths
    python benchmarks/inference.py --device cuda --sizes 1920x1080 3840x2160
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from roofline import forward_gflop  # benchmarks/ is on sys.path when a script here runs

from instyle.core.hardware import machine_description
from instyle.inference.backends import MIN_PSNR, Runner, available_backends, build_runner, psnr, sample_image
from instyle.models import create_model
from instyle.models.clamped import ClampedGenerator
from instyle.models.modelfile import load_model

SIZES = ("256x256", "512x512", "1024x1024", "1920x1080", "3840x2160")


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` -> (H, W)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(runner: Runner, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    _sync(x.device)
    t = time.perf_counter()
    y = runner(x)
    _sync(x.device)
    return (time.perf_counter() - t) * 1000.0, y


def bench_size(runners: dict[str, Runner], size: tuple[int, int], rounds: int, device: torch.device,
               warmup: int) -> list[dict[str, Any]]:
    x = sample_image(size).to(device)
    first: dict[str, torch.Tensor] = {}
    warm_ms: dict[str, float] = {}
    for name, runner in runners.items():  # warm-up: compilation, graph capture, allocator
        t = time.perf_counter()
        for _ in range(warmup):
            first[name] = runner(x)
        _sync(device)
        warm_ms[name] = (time.perf_counter() - t) * 1000.0
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            times[name].append(timed(runner, x)[0])
    base = statistics.median(times["eager"])
    gflop = forward_gflop(runners["eager"].module, tuple(x.shape))  # to set against the machine's ceiling
    rows = []
    for name in runners:
        ms = statistics.median(times[name])
        rows.append({"size": f"{size[1]}x{size[0]}", "backend": name, "ms": round(ms, 1),
                     "img_per_s": round(1000.0 / ms, 2), "speedup": round(base / ms, 2),
                     "gflops": round(gflop / ms * 1000, 1),
                     "psnr_db": round(psnr(first[name].clamp(0, 1), first["eager"].clamp(0, 1)), 1),
                     "warmup_ms": round(warm_ms[name]), "rounds": rounds})
    return rows


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| size | backend | ms/image | images/s | vs fp32 eager | GFLOP/s | PSNR vs eager (dB) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        flag = "" if r["psnr_db"] >= MIN_PSNR else " (below 40: off in auto)"
        lines.append(f"| {r['size']} | {r['backend']} | {r['ms']:.1f} | {r['img_per_s']:.2f} | "
                     f"{r['speedup']:.2f}× | {r.get('gflops', '')} | {r['psnr_db']}{flag} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", help="a .safetensors model (default: random-init --arch; PSNR then inflated)")
    p.add_argument("--arch", default="johnson")
    p.add_argument("--device", default="auto")
    p.add_argument("--backends", nargs="*", help="default: every path available on the device")
    p.add_argument("--sizes", nargs="*", default=list(SIZES), help="WxH, e.g. 1920x1080")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--out", default="benchmarks/results", help="folder for inference-<device>.{md,json}")
    a = p.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    torch.manual_seed(0)
    generator = load_model(a.model)[0] if a.model else create_model(a.arch)
    module = ClampedGenerator(generator).to(device).eval()
    names = a.backends or available_backends(device)
    names = ["eager", *[n for n in names if n != "eager"]]
    runners = {n: build_runner(module, n, device) for n in names}

    rows: list[dict[str, Any]] = []
    for text in a.sizes:
        size_rows = bench_size(runners, parse_size(text), a.rounds, device, a.warmup)
        rows += size_rows
        print(markdown(size_rows, f"### {text}"), flush=True)

    model_desc = a.model or f"random-init {a.arch}"
    header = (f"## Inference, {device.type}: {machine_description()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads\n\nModel: {model_desc}. Batch 1, median of {a.rounds} "
              "interleaved rounds after warm-up. GFLOP/s: the fp32 network's floating-point work per "
              "image (benchmarks/roofline.py) over the time: set it against the machine's GEMM ceiling.")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"inference-{device.type}.md").write_text(markdown(rows, header))
    (out / f"inference-{device.type}.json").write_text(json.dumps(
        {"machine": machine_description(), "torch": torch.__version__, "model": model_desc, "rows": rows}, indent=1))
    print(markdown(rows, header))


if __name__ == "__main__":
    main()

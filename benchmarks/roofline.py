"""How fast a goal can possibly be met here: the work a job needs (GFLOP, counted by PyTorch's
``FlopCounterMode``) against the fastest this machine multiplies matrices (a large GEMM, measured).

A time goal below ``GFLOP / GEMM GFLOPS`` cannot be met by any schedule of the same arithmetic on
this machine: only less arithmetic (a smaller network, a cheaper loss) or faster arithmetic (bf16
with AMX or AVX-512 BF16, int8 VNNI, a GPU) can. ``inference.py`` and ``training.py`` import the
two measurements; run alone it prints the bounds for the issue's CPU goals:

    python benchmarks/roofline.py      # the shipped starry-night (johnson) and starry-night-fast (johnson-half)
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from pathlib import Path

import torch
from common import best_seconds, print_and_save  # benchmarks/ is on sys.path when a script here runs
from torch.utils.flop_counter import FlopCounterMode


def count_gflop(fn: Callable[[], object]) -> float:
    """GFLOP (multiply and add counted apart) of one call of ``fn``: convolutions and matrix
    products, forward and whatever backward it runs; element-wise work is not counted."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def forward_gflop(module: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """``count_gflop`` of one inference forward on an input of ``shape``, run on a copy on the meta
    device: the same count as a real forward (checked), without computing it (a 4K frame took 74 s
    of fp32 eager on a 2-core CPU)."""
    meta = copy.deepcopy(module).to("meta").eval()
    with torch.inference_mode():
        return count_gflop(lambda: meta(torch.empty(shape, device="meta")))


def gemm_gflops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int = 4096,
                repeats: int = 3) -> float:
    """Best of ``repeats`` timings of an n x n x n matrix product: the practical arithmetic ceiling
    (convolutions run as GEMMs at best)."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)

    def product() -> None:
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return 2 * n**3 / best_seconds(product, repeats) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--models", nargs="*", default=["src/instyle/zoo/starry-night.safetensors",
                                                          "src/instyle/zoo/starry-night-fast.safetensors"])
    p.add_argument("--sizes", nargs="*", default=["512x512", "1920x1080"])
    p.add_argument("--train-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--gemm", type=int, default=4096, help="side of the GEMM that measures the ceiling")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()

    from instyle.core.hardware import cpu_supports_bf16, machine_description
    from instyle.losses.perceptual import PerceptualLoss, get_preset
    from instyle.models import create_model
    from instyle.models.modelfile import load_model

    peaks = {"fp32": gemm_gflops(n=a.gemm)}
    if cpu_supports_bf16():
        peaks["bf16"] = gemm_gflops(dtype=torch.bfloat16, n=a.gemm)
    lines = [f"## Arithmetic bounds: {machine_description()}, torch {torch.__version__}", "",
             f"Measured GEMM ceiling ({a.gemm}³): " + ", ".join(f"{k} {v:.0f} GFLOPS" for k, v in peaks.items()), "",
             "| job | GFLOP | fastest possible at the fp32 ceiling |" + "".join(
                 f" at the {k} ceiling |" for k in peaks if k != "fp32"),
             "|---|---:|---:|" + "---:|" * (len(peaks) - 1)]

    def row(job: str, gflop: float, unit: str) -> None:
        bounds = "".join(f" {gflop / v:.2f} {unit} |" for v in peaks.values())
        lines.append(f"| {job} | {gflop:.4g} |{bounds}")

    for path in a.models:
        model, card = load_model(path)
        for text in a.sizes:
            w, h = (int(v) for v in text.split("x"))
            row(f"stylize {text}, {Path(path).stem} (`{card.arch}`)", forward_gflop(model, (1, 3, h, w)), "s")
    net = create_model("johnson").train()
    loss = PerceptualLoss(get_preset("johnson"), weights="random")
    x = torch.rand(a.batch, 3, a.train_size, a.train_size)
    loss.set_style(x[:1])

    def step() -> None:
        loss(net(x), x)["total"].backward()

    row(f"training step, johnson, {a.train_size}², batch {a.batch}", count_gflop(step), "s")
    print_and_save("\n".join(lines), a.out, "roofline.md")


if __name__ == "__main__":
    main()

"""Training speed (steps/s) of the training step in ``instyle.training.loop`` under each precision/layout,
against fp32 eager measured in the same run (interleaved rounds, medians).

A step is what ``train()`` does: generator forward, VGG16 perceptual loss, backward, gradient
clipping, Adam (``instyle.training.guard.StepGuard``, as in training). Data
loading is left out on purpose (``CropDataset`` caches decoded crops; ``--workers auto`` overlaps
the rest), so the numbers are the compute ceiling.

    python benchmarks/training.py                       # CPU: fp32, bf16, channels_last (+bf16)
    python benchmarks/training.py --device cuda --modes fp32 bf16 fp16 channels_last-bf16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from roofline import count_gflop  # benchmarks/ is on sys.path when a script here runs

from instyle.core.hardware import machine_description
from instyle.inference.backends import sample_image
from instyle.losses.perceptual import PerceptualLoss, get_preset
from instyle.models import create_model
from instyle.models.layers import Conv2d
from instyle.training.guard import StepGuard
from instyle.training.loop import compiled_step_modules

# "-hostcheck": the step checks its gradient norm on the host, as train() does on the CPU; without
# it a CUDA step stays on the device (instyle.training.guard.StepGuard), the same run measures both.
# "compile-": the generator and the loss under torch.compile, as `instyle train --compile`;
# "-graphs": compiled and replayed as CUDA graphs, as `instyle train --cuda-graphs`;
# "-nchw": no convolution switches to channels-last on the CPU (instyle.models.layers.Conv2d).
MODES = ("fp32", "fp32-nchw", "bf16", "channels_last", "channels_last-bf16", "fp16", "channels_last-fp16",
         "fp32-hostcheck", "bf16-hostcheck", "compile-fp32", "compile-bf16", "compile-fp16", "compile-fp32-graphs",
         "compile-bf16-graphs")


class Step:
    """One training set-up; ``__call__`` runs ``n`` optimizer steps."""

    def __init__(self, mode: str, arch: str, size: int, batch: int, device: torch.device, weights: str):
        torch.manual_seed(0)
        self.device = device
        tokens = mode.split("-")
        self.fmt = torch.channels_last if "channels_last" in tokens else torch.contiguous_format
        self.dtype = next((d for t, d in (("bf16", torch.bfloat16), ("fp16", torch.float16)) if t in tokens), None)
        self.model = create_model(arch).to(device, memory_format=self.fmt).train()
        if "nchw" in tokens:  # every convolution in NCHW, as before instyle.models.layers.Conv2d
            for m in self.model.modules():
                if isinstance(m, Conv2d):
                    m.thin_output_layout = False
        self.loss = PerceptualLoss(get_preset("johnson"), weights=weights).to(device, memory_format=self.fmt)
        self.loss.set_style(sample_image((256, 256), seed=1).to(device))
        self.guard = StepGuard(self.model.parameters(), 1e-3, device, fp16=self.dtype == torch.float16,
                               on_device=False if "hostcheck" in tokens else None)
        self.x = sample_image((size, size), n=batch).to(device).contiguous(memory_format=self.fmt)
        self.graphs = "graphs" in tokens
        self.fwd_model, self.fwd_loss = (compiled_step_modules(self.model, self.loss, self.graphs)
                                         if "compile" in tokens else (self.model, self.loss))

    def __call__(self, n: int) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            if self.graphs:
                torch.compiler.cudagraph_mark_step_begin()
            ctx = torch.autocast(self.device.type, self.dtype) if self.dtype else contextlib.nullcontext()
            with ctx:
                terms = self.fwd_loss(self.fwd_model(self.x).float(), self.x)
            self.guard.step(terms["total"], clip=None)  # train()'s default: measure the norm, no clipping
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--arch", default="johnson")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--modes", nargs="*", help=f"from {', '.join(MODES)} (default: fp32 + the device's)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of --steps steps per mode")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--vgg", default="imagenet", help="imagenet (needs the cached weights) or random: same speed")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()

    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    default = ["fp32", "bf16", "channels_last", "channels_last-bf16"]
    modes = a.modes or ([*default, "fp16", "channels_last-fp16"] if device.type == "cuda" else default)
    # The baseline is plain fp32 eager PyTorch: on the CPU that is every convolution in NCHW, without
    # the channels-last switch of the thin ones that train() now makes (``fp32``).
    baseline = "fp32-nchw" if device.type == "cpu" else "fp32"
    modes = [baseline, *[m for m in modes if m != baseline]]
    steps = {m: Step(m, a.arch, a.size, a.batch, device, a.vgg) for m in modes}
    for s in steps.values():
        s(1)  # warm-up: allocator, oneDNN/cuDNN algorithm choice
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(a.rounds):
        for m, s in steps.items():
            times[m].append(s(a.steps))
    base = statistics.median(times[baseline])
    gflop = count_gflop(lambda: steps[baseline](1))  # one step's work, to set against the GEMM ceiling
    rows: list[dict[str, Any]] = []
    for m in modes:
        sec = statistics.median(times[m])
        rows.append({"mode": m, "s_per_step": round(sec, 3), "steps_per_s": round(1 / sec, 3),
                     "images_per_s": round(a.batch / sec, 2), "speedup": round(base / sec, 2),
                     "gflops": round(gflop / sec, 1)})
    header = (f"## Training, {device.type}: {machine_description()}, torch {torch.__version__}\n\n"
              f"`{a.arch}` at {a.size}², batch {a.batch}, VGG16 perceptual loss (johnson preset), Adam; median of "
              f"{a.rounds} interleaved rounds of {a.steps} steps after one warm-up step, against `{baseline}` "
              f"(plain fp32 eager); GFLOP/s: one fp32 "
              f"step's floating-point work ({gflop:.0f} GFLOP, benchmarks/roofline.py) over the time.")
    lines = [header, "", "| mode | s/step | steps/s | images/s | vs fp32 eager | GFLOP/s |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['mode']} | {r['s_per_step']:.3f} | {r['steps_per_s']:.3f} | {r['images_per_s']:.2f} | "
              f"{r['speedup']:.2f}× | {r['gflops']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"training-{device.type}.md").write_text(text)
    (out / f"training-{device.type}.json").write_text(json.dumps({"machine": machine_description(), "rows": rows}))
    print(text)


if __name__ == "__main__":
    main()

"""Where the inference time goes, and which way of running the generator is fastest (CUDA, or the CPU).

``benchmarks/inference.py`` times the shipped backends; this times candidate variants side by side
at the large sizes (memory layout x precision x compilation x instance-norm kernel), each against
fp32 eager in the same run, with CUDA-event timing and PSNR against fp32 eager, and prints the
top kernels of a profiled variant. Findings feed the backends in ``instyle.fast``.

    python benchmarks/variants.py -m src/instyle/zoo/starry-night.safetensors --profile compile-fp16-nchw
    python benchmarks/variants.py -m ... --device cpu --variants eager-fp32-nhwc-aten eager-fp32-nhwc-aten-fold
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch._inductor.config

from instyle.fast import psnr, sample_image
from instyle.modelfile import load_model
from instyle.models.norms import Norm2d
from instyle.rewrite import fold_upsampling, widen_thin_convs
from instyle.stylize import ClampedGenerator
from instyle.utils import machine_description


@contextlib.contextmanager
def norm_kernel(name: str) -> Iterator[None]:
    """``fused``: ``instance_norm_eval`` (one var_mean + one multiply-add); ``aten``: ``F.instance_norm``."""
    before = Norm2d.fused_eval
    Norm2d.fused_eval = name == "fused"
    try:
        yield
    finally:
        Norm2d.fused_eval = before


# name: (dtype, channels_last, torch.compile mode or None, norm kernel, widen thin convs to a multiple of,
# fold the upsampling: instyle.rewrite.fold_upsampling)
VARIANTS: dict[str, tuple[torch.dtype, bool, str | None, str, int, bool]] = {
    "eager-fp32": (torch.float32, False, None, "fused", 0, False),
    "eager-fp32-aten": (torch.float32, False, None, "aten", 0, False),
    "eager-fp16-nchw-aten": (torch.float16, False, None, "aten", 0, False),
    "eager-fp16-nhwc-aten": (torch.float16, True, None, "aten", 0, False),
    "eager-fp16-nchw": (torch.float16, False, None, "fused", 0, False),
    "eager-fp16-nhwc": (torch.float16, True, None, "fused", 0, False),
    "eager-fp16-nchw-pad8": (torch.float16, False, None, "fused", 8, False),
    "compile-fp16-nhwc-aten": (torch.float16, True, "default", "aten", 0, False),
    "compile-fp16-nchw-aten": (torch.float16, False, "default", "aten", 0, False),
    "compile-fp16-nchw": (torch.float16, False, "default", "fused", 0, False),
    "compile-fp16-nchw-pad8": (torch.float16, False, "default", "fused", 8, False),
    "compile-fp16-nchw-pad16": (torch.float16, False, "default", "fused", 16, False),
    "compile-fp16-nchw-pad8-graphs": (torch.float16, False, "reduce-overhead", "fused", 8, False),
    "compile-bf16-nhwc-aten": (torch.bfloat16, True, "default", "aten", 0, False),
    "compile-fp16-nhwc-aten-autotune": (torch.float16, True, "max-autotune-no-cudagraphs", "aten", 0, False),
    "eager-fp16-nchw-pad8-fold": (torch.float16, False, None, "fused", 8, True),
    "eager-fp32-nhwc-aten": (torch.float32, True, None, "aten", 0, False),
    "eager-fp32-nhwc-aten-fold": (torch.float32, True, None, "aten", 0, True),
    "eager-fp32-aten-fold": (torch.float32, False, None, "aten", 0, True),
    "compile-fp16-nchw-pad8-fold": (torch.float16, False, "default", "fused", 8, True),
}


def build(module: torch.nn.Module, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    dtype, nhwc, mode, norm, pad, fold = VARIANTS[name]
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    m = copy.deepcopy(module)
    if pad:
        widen_thin_convs(m, pad)
    if fold:
        fold_upsampling(m)
    m = m.to(dtype=dtype, memory_format=fmt).eval()
    fn: Callable[[torch.Tensor], torch.Tensor] = m
    if mode:
        torch._inductor.config.freezing = True
        fn = torch.compile(m, mode=mode, dynamic=False)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), norm_kernel(norm):
            return fn(x.to(dtype).contiguous(memory_format=fmt)).float()

    return run


def cuda_ms(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int) -> list[float]:
    if x.device.type != "cuda":  # a dry run of the script on the CPU
        return [_wall_ms(fn, x) for _ in range(n)]
    out = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(x)
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return out


def _wall_ms(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    t = time.perf_counter()
    fn(x)
    return (time.perf_counter() - t) * 1000


def profile(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, top: int = 12) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    with prof(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(3):
            fn(x)
        torch.cuda.synchronize()
    return p.key_averages().table(sort_by="cuda_time_total", row_limit=top, max_name_column_width=70)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--sizes", nargs="*", default=["1920x1080", "3840x2160"])
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--profile", nargs="*", default=[], help="variants whose top kernels to print (largest size)")
    p.add_argument("--device", default="cuda", help="cuda (CUDA-event timing) or cpu (wall clock)")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device(a.device)
    module = ClampedGenerator(load_model(a.model)[0]).to(dev).eval()
    first = "eager-fp32" if dev.type == "cuda" else "eager-fp32-aten"  # each device's own default eager path
    names = [first, *[v for v in a.variants if v != first]]
    rows: list[dict[str, Any]] = []
    for text in a.sizes:
        w, h = (int(v) for v in text.split("x"))
        x = sample_image((h, w), n=a.batch).to(dev)
        with torch.inference_mode(), norm_kernel("aten"):  # the reference: fp32, F.instance_norm
            ref = module(x).float()
        base = None
        for name in names:
            try:
                t = time.perf_counter()
                fn = build(module, name)
                y = fn(x)
                fn(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                warm = time.perf_counter() - t
                ms = statistics.median(cuda_ms(fn, x, a.rounds)) / a.batch
            except Exception as exc:  # a variant that fails is a finding, not the end of the run
                print(f"{text} {name}: FAILED {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                continue
            base = base or ms
            row = {"size": text, "batch": a.batch, "variant": name, "ms_per_image": round(ms, 2),
                   "fps": round(1000 / ms, 1), "speedup": round(base / ms, 2),
                   "psnr_db": round(psnr(y.clamp(0, 1), ref.clamp(0, 1)), 1), "warmup_s": round(warm, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if name in a.profile and text == a.sizes[-1]:
                print(profile(fn, x), flush=True)
            del fn
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    lines = [f"## Inference variants, {dev.type}: {machine_description()}, torch {torch.__version__}", "",
             f"Model {a.model}; batch {a.batch}; median of {a.rounds} timings after warm-up.", "",
             "| size | variant | ms/image | frames/s | vs fp32 eager | PSNR (dB) | warm-up s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['size']} | {r['variant']} | {r['ms_per_image']} | {r['fps']} | {r['speedup']}× | "
              f"{r['psnr_db']} | {r['warmup_s']} |" for r in rows]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"variants-{dev.type}.md").write_text("\n".join(lines) + "\n")
    (out / f"variants-{dev.type}.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

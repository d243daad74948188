"""Where the inference time goes, and which way of running the generator is fastest (CUDA, or the CPU).

``benchmarks/inference.py`` times the shipped backends; this times candidate variants side by side
at the large sizes (memory layout x precision x compilation x instance-norm kernel), each against
fp32 eager in the same run, with CUDA-event timing and PSNR against fp32 eager, and prints the
top kernels of a profiled variant. Findings feed the backends in ``instyle.inference.backends``.

    python benchmarks/variants.py -m src/instyle/zoo/starry-night.safetensors --profile compile-fp16-nchw
    python benchmarks/variants.py -m ... --device cpu --variants eager-fp32-nhwc-aten eager-fp32-nhwc-aten-fold
    python benchmarks/variants.py -m ... --device cpu --variants eager-fp32-aten-s2d2 ort ort-fold-s2d2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch._inductor.config

from instyle.core.hardware import machine_description
from instyle.inference.backends import psnr, sample_image
from instyle.inference.rewrites import fold_upsampling, space_to_depth_convs, widen_thin_convs
from instyle.models.clamped import ClampedGenerator
from instyle.models.modelfile import load_model
from instyle.models.norms import fused_instance_norm


def norm_kernel(name: str) -> contextlib.AbstractContextManager[None]:
    """``fused``: ``instance_norm_eval`` (one var_mean + one multiply-add); ``aten``: ``F.instance_norm``."""
    return fused_instance_norm(name == "fused")


# A variant's name lists its choices, joined by "-": "eager" or "compile" first, then the dtype (fp32,
# fp16, bf16), then any of: nhwc (channels_last; NCHW otherwise), aten (F.instance_norm; otherwise
# instyle's instance_norm_eval), padN (widen_thin_convs to a multiple of N), fold
# (fold_upsampling), s2dN (space_to_depth_convs, factor N, the conv to RGB) or s2dNio (and the conv
# from RGB), graphs (compile with CUDA graphs), autotune (compile with max-autotune).
# "ort" (ONNX Runtime, CPU, fp32) takes the same rewrites: "ort-fold-s2d2".
VARIANTS = [
    "eager-fp32", "eager-fp32-aten", "eager-fp16-nchw-aten", "eager-fp16-nhwc-aten", "eager-fp16-nchw",
    "eager-fp16-nhwc", "eager-fp16-nchw-pad8", "compile-fp16-nhwc-aten", "compile-fp16-nchw-aten",
    "compile-fp16-nchw", "compile-fp16-nchw-pad8", "compile-fp16-nchw-pad16", "compile-fp16-nchw-pad8-graphs",
    "compile-bf16-nhwc-aten", "compile-fp16-nhwc-aten-autotune", "eager-fp16-nchw-pad8-fold",
    "eager-fp32-nhwc-aten", "eager-fp32-nhwc-aten-fold", "eager-fp32-aten-fold", "compile-fp16-nchw-pad8-fold",
    "eager-fp16-nchw-pad8-s2d2", "eager-fp16-nchw-pad8-s2d4", "compile-fp16-nchw-pad8-s2d2",
    "compile-fp16-nchw-pad8-s2d4", "compile-fp16-nchw-pad8-s2d2io", "compile-fp16-nchw-pad8-s2d4io",
    "eager-fp32-aten-s2d2", "eager-fp32-aten-fold-s2d2", "eager-fp32-nhwc-aten-fold-s2d2", "ort", "ort-fold",
    "ort-s2d2", "ort-fold-s2d2",
]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODES = {"graphs": "reduce-overhead", "autotune": "max-autotune-no-cudagraphs"}


def rewrite(module: torch.nn.Module, options: list[str]) -> torch.nn.Module:
    """A copy of ``module`` with the exact rewrites the options name (instyle.inference.rewrites)."""
    m = copy.deepcopy(module)
    for opt in options:  # space-to-depth first, so widening also pads its convolution's channels
        if opt.startswith("s2d"):
            space_to_depth_convs(m, int(opt[3:].removesuffix("io")), inputs=opt.endswith("io"))
    for opt in options:
        if opt.startswith("pad"):
            widen_thin_convs(m, int(opt[3:]))
    if "fold" in options:
        fold_upsampling(m)
    return m


def build(module: torch.nn.Module, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    kind, *options = name.split("-")
    if kind == "ort":
        from instyle.inference.backends import OnnxRunner

        return OnnxRunner(rewrite(module, options).eval(), torch.device("cpu"))
    dtype = DTYPES[options.pop(0)]
    known = {"nhwc", "nchw", "aten", "fold", *MODES}
    bad = [o for o in options if o not in known and not o.startswith(("pad", "s2d"))]
    if kind not in ("eager", "compile") or bad:
        raise ValueError(f"{name}: unknown {kind if bad == [] else bad}")
    fmt = torch.channels_last if "nhwc" in options else torch.contiguous_format
    norm = "aten" if "aten" in options else "fused"
    m = rewrite(module, options).to(dtype=dtype, memory_format=fmt).eval()
    fn: Callable[[torch.Tensor], torch.Tensor] = m
    if kind == "compile":
        torch._inductor.config.freezing = True
        mode = next((MODES[o] for o in options if o in MODES), "default")
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
    p.add_argument("--variants", nargs="*", default=VARIANTS)
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

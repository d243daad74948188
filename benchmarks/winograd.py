"""Would Winograd convolution beat the CPU's arithmetic bound? Measures one residual-block
convolution of the full ``johnson`` (3x3, 128 -> 128 channels at a quarter of the frame size)
computed directly (oneDNN) and as Winograd F(4x4, 3x3) written in PyTorch operations.

F(4x4, 3x3) (Lavin & Gray, 2015) computes each 4x4 output tile from a 6x6 input tile with 36
products per channel pair instead of 144: 4x fewer multiply-adds, so ``roofline.py``'s bound
(work / GEMM ceiling) would drop for the residual blocks, 60% of the network's work. The price is
three changes of layout per convolution (tiles in, 36 batched GEMMs, tiles out). The table shows
each part, so the gain a fused kernel could at most reach (the GEMMs alone) sits beside what
PyTorch operations reach:

    python benchmarks/winograd.py                  # the 1920x1080 frame's residual convolution
    python benchmarks/winograd.py --size 512x512
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import best_seconds, print_and_save  # benchmarks/ is on sys.path when a script here runs

# F(4x4, 3x3) in the usual form: Y = A^T [(G g G^T) * (B^T d B)] A.
_BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
_G = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]


class Winograd43:
    """An unpadded 3x3 stride-1 convolution (batch 1) as F(4x4, 3x3), in three timed stages."""

    def __init__(self, weight: torch.Tensor):
        g, bt, at = (torch.tensor(m, dtype=torch.float64) for m in (_G, _BT, _AT))
        w = weight.double()
        self.k, self.c = w.shape[:2]
        self.u = torch.einsum("ij,kcjl,ml->imck", g, w, g).reshape(36, self.c, self.k).float()
        self.kb = torch.kron(bt, bt).float()  # vec(B^T d B) = kb @ vec(d)
        self.ka = torch.kron(at, at).float()  # vec(A^T m A) = ka @ vec(m)

    def tiles_in(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        h, w = x.shape[-2:]
        th, tw = -(-(h - 2) // 4), -(-(w - 2) // 4)
        x = F.pad(x, (0, 4 * tw + 2 - w, 0, 4 * th + 2 - h))
        d = x[0].permute(1, 2, 0).unfold(0, 6, 4).unfold(1, 6, 4)  # th, tw, C, 6, 6 (a view)
        d = d.permute(0, 1, 3, 4, 2).reshape(th * tw, 36, self.c)
        return torch.matmul(self.kb, d).transpose(0, 1).contiguous(), (h - 2, w - 2, th, tw)

    def products(self, v: torch.Tensor) -> torch.Tensor:
        return torch.bmm(v, self.u)  # 36 GEMMs: (tiles x C) @ (C x K)

    def tiles_out(self, m: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        ho, wo, th, tw = shape
        y = torch.matmul(self.ka, m.reshape(36, -1)).view(4, 4, th, tw, self.k)
        return y.permute(4, 2, 0, 3, 1).reshape(1, self.k, 4 * th, 4 * tw)[:, :, :ho, :wo].contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        v, shape = self.tiles_in(x)
        return self.tiles_out(self.products(v), shape)


def best_ms(fn: Callable[[], object], rounds: int) -> float:
    return best_seconds(fn, rounds) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1920x1080", help="frame WxH; the convolution runs at a quarter of it")
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    fw, fh = (int(v) for v in args.size.split("x"))
    c = args.channels
    torch.manual_seed(0)
    x = torch.randn(1, c, fh // 4 + 2, fw // 4 + 2)  # reflection-padded by 1, as in a residual block
    weight = torch.randn(c, c, 3, 3) / (3 * c**0.5)
    wino = Winograd43(weight)
    with torch.no_grad():
        exact = F.conv2d(x.double(), weight.double())
        scale = exact.abs().max().item()
        v, shape = wino.tiles_in(x)
        m = wino.products(v)
        rows = [
            ("direct (oneDNN)", best_ms(lambda: F.conv2d(x, weight), args.rounds),
             (F.conv2d(x, weight).double() - exact).abs().max().item() / scale),
            ("Winograd F(4x4,3x3), whole", best_ms(lambda: wino(x), args.rounds),
             (wino(x).double() - exact).abs().max().item() / scale),
            ("  tiles in (transform + layout)", best_ms(lambda: wino.tiles_in(x), args.rounds), None),
            ("  36 GEMMs (the arithmetic)", best_ms(lambda: wino.products(v), args.rounds), None),
            ("  tiles out (transform + layout)", best_ms(lambda: wino.tiles_out(m, shape), args.rounds), None),
        ]
    base = rows[0][1]
    lines = [f"3x3 conv, {c} -> {c} channels at {x.shape[-1] - 2}x{x.shape[-2] - 2} (frame {args.size}), "
             f"{torch.get_num_threads()} threads", "",
             "| computation | ms | vs direct | max error / max value |", "|---|---:|---:|---:|"]
    for name, ms, err in rows:
        lines.append(f"| {name} | {ms:.1f} | {base / ms:.2f}x | {'' if err is None else f'{err:.1e}'} |")
    print_and_save("\n".join(lines), args.out, "winograd.md")


if __name__ == "__main__":
    main()

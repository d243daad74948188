"""Exact inference-time rewrites of a generator: the same function, computed in fewer or better-shaped
operations. The fast paths in ``instyle.inference.backends`` apply them to their own copy of the network; trained
weights, model files and the reference ``eager`` path never change.

``fold_upsampling``    nearest x2 upsample -> reflection pad 1 -> 3x3 conv, computed at the low
                       resolution as one 3x3 conv to 4x the channels and a pixel shuffle: no
                       upsampled tensor, no padding at the high resolution
``index_upsampling``   nearest x2 upsampling (and the johnson decoder's reflection pad after it) as
                       one gather with integer indices: the same values, but a compiler with
                       symbolic image sizes writes the padded tensor once, without float scales
``widen_thin_convs``   convolutions with 3 channels in or out padded with zero channels, so GPU
                       tensor cores get a shape they handle well
``space_to_depth_convs``  the 9x9 convolutions to and from RGB computed on 2x2 (or 4x4) pixel blocks:
                       a 5x5 (3x3) convolution with 4x (16x) the channels in and out between a pixel
                       unshuffle and a pixel shuffle, so no layer has 3 channels
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instyle.models.johnson import Upsample

# Nearest x2 then a 3-tap filter: output phase 0 (even rows) reads low-res rows i-1 and i, with
# taps {0} and {1, 2} of the filter; phase 1 (odd rows) reads rows i and i+1 with taps {0, 1} and {2}.
_TAPS = (((0,), (1, 2)), ((0, 1), (2,)))


class SubpixelUpConv(nn.Module):
    """``Conv2d(3x3)(ReflectionPad2d(1)(Upsample(x2, nearest)(x)))`` from ``x`` directly.

    Reflection padding of a nearest-upsampled image equals edge padding before the upsampling, so
    each of the four output phases is a 2x2 convolution of the edge-padded low-resolution input with
    summed weights; the four share one 3x3 convolution (zeros outside each phase's window) whose
    4*C_out channels ``pixel_shuffle`` interleaves. Same result up to float rounding.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (0, 0) or conv.groups != 1:
            raise ValueError("SubpixelUpConv folds an unpadded 3x3, stride-1 convolution")
        w = conv.weight.detach()
        cout, cin = w.shape[:2]
        big = torch.zeros(cout, 4, cin, 3, 3, dtype=w.dtype, device=w.device)
        for a in range(2):
            for b in range(2):
                for p in range(2):
                    for q in range(2):
                        rows, cols = list(_TAPS[a][p]), list(_TAPS[b][q])
                        big[:, 2 * a + b, :, a + p, b + q] = w[:, :, rows][:, :, :, cols].sum(dim=(2, 3))
        self.weight = nn.Parameter(big.reshape(4 * cout, cin, 3, 3), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(cout, dtype=w.dtype, device=w.device)
        self.bias = nn.Parameter(bias.repeat_interleave(4), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(F.conv2d(_edge_pad1(x), self.weight, self.bias), 2)


def _edge_pad1(x: Tensor) -> Tensor:
    """``F.pad(x, (1, 1, 1, 1), mode="replicate")`` by concatenation: inductor (torch 2.13) fails to
    compile the replicate pad ("vr must not be None") and compiles this."""
    x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    return torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)


def replace_modules(module: nn.Module, make: Callable[[str, nn.Module], nn.Module | None]) -> nn.Module:
    """Replace (in place) every submodule for which ``make(name, child)`` returns a module, and look
    inside the others; returns ``module``. The walk every rewrite here shares."""
    for name, child in list(module.named_children()):
        new = make(name, child)
        if new is not None:
            setattr(module, name, new)
        else:
            replace_modules(child, make)
    return module


def _after_pad1(block: Upsample) -> list[nn.Module]:
    """The layers of a johnson ``Upsample`` block after its reflection pad of 1 (conv, norm, act),
    which the rewrites below compute without it; any other first layer is refused."""
    pad, *rest = block.conv
    if not (isinstance(pad, nn.ReflectionPad2d) and tuple(pad.padding) == (1, 1, 1, 1)):
        raise ValueError("expected a reflection pad of 1 before the upsampling block's convolution")
    return rest


def fold_upsampling(module: nn.Module) -> nn.Module:
    """Replace (in place) each johnson ``Upsample`` block's upsample + pad + conv by a
    ``SubpixelUpConv``, keeping its norm and activation; returns ``module``."""

    def fold(name: str, child: nn.Module) -> nn.Module | None:
        if not isinstance(child, Upsample):
            return None
        try:
            conv, *rest = _after_pad1(child)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        return nn.Sequential(SubpixelUpConv(conv), *rest)

    return replace_modules(module, fold)


class Nearest2x(nn.Module):
    """``nn.Upsample(scale_factor=2, mode="nearest")`` written as broadcast + reshape (bit-identical).

    With dynamic height and width, inductor lowers ``upsample_nearest2d`` through a float scale
    (``h / (2h)``) and float-to-int conversions per element; the broadcast gives it ``x // 2``.
    """

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


def _up_pad_index(n: int, device: torch.device) -> Tensor:
    """Rows (or columns) of the low-resolution input that ``ReflectionPad2d(1)(Upsample(x2)(x))``
    reads, for an input side ``n``: ``clamp((j - 1) // 2, 0, n - 1)`` for ``j`` in ``0 .. 2n + 1``."""
    j = torch.arange(2 * n + 2, device=device)
    return torch.div(j - 1, 2, rounding_mode="floor").clamp(0, n - 1)


class GatherUpConv(nn.Module):
    """A johnson ``Upsample`` block (nearest x2, reflection pad 1, conv, norm, act) whose upsampling
    and padding are one gather from the low-resolution input (bit-identical).

    Compiled with dynamic sizes, inductor otherwise writes the upsampled tensor at full resolution and
    copies it again into the padded one; the gather writes the padded tensor once, with integer indices.
    """

    def __init__(self, block: Upsample):
        super().__init__()
        self.rest = nn.Sequential(*_after_pad1(block))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        rows, cols = _up_pad_index(h, x.device), _up_pad_index(w, x.device)
        return self.rest(x[:, :, rows[:, None], cols[None, :]])


def index_upsampling(module: nn.Module) -> nn.Module:
    """Replace (in place) each johnson ``Upsample`` block by a ``GatherUpConv`` and any other nearest
    x2 ``nn.Upsample`` by ``Nearest2x``; returns ``module``. On the 2-core AMX Xeon this made the
    dynamic-size bf16 ``starry-night`` package about 1.15x faster (docs/benchmarks.md)."""

    def swap(name: str, child: nn.Module) -> nn.Module | None:
        if isinstance(child, Upsample):
            return GatherUpConv(child)
        if isinstance(child, nn.Upsample) and child.mode == "nearest" and child.size is None \
                and child.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0)):
            return Nearest2x()
        return None

    return replace_modules(module, swap)


class ThinConv2d(nn.Module):
    """A convolution with zero channels added so tensor cores get a shape they handle well, and the
    same output: the johnson net's 9x9 convolutions take 3 channels in (the image) and give 3 out,
    and on an H200 those two layers were 40% of a 4K frame (docs/benchmarks.md)."""

    def __init__(self, conv: nn.Conv2d, multiple: int = 8):
        super().__init__()
        cin = -(-conv.in_channels // multiple) * multiple
        cout = -(-conv.out_channels // multiple) * multiple
        self.pad_in = cin - conv.in_channels
        self.out_channels = conv.out_channels
        w = conv.weight.detach()
        self.conv = nn.Conv2d(cin, cout, conv.kernel_size, conv.stride, conv.padding, conv.dilation,  # type: ignore[arg-type]
                              bias=conv.bias is not None, padding_mode=conv.padding_mode).to(w.device, w.dtype)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[: conv.out_channels, : conv.in_channels] = w
            if conv.bias is not None:
                self.conv.bias.zero_()
                self.conv.bias[: conv.out_channels] = conv.bias.detach()

    def forward(self, x: Tensor) -> Tensor:
        if self.pad_in:
            x = F.pad(x, (0, 0, 0, 0, 0, self.pad_in))
        y = self.conv(x)
        return y[:, : self.out_channels] if y.shape[1] != self.out_channels else y


def widen_thin_convs(module: nn.Module, multiple: int = 8) -> nn.Module:
    """Replace (in place) every Conv2d with a channel count that is not a multiple of ``multiple``
    by a ``ThinConv2d``; returns ``module``. For CUDA half-precision paths (tensor cores)."""
    def thin(child: nn.Module) -> bool:
        return (isinstance(child, nn.Conv2d) and child.groups == 1
                and bool(child.in_channels % multiple or child.out_channels % multiple))

    return replace_modules(module, lambda _, child: ThinConv2d(child, multiple) if thin(child) else None)


class SpaceToDepthConv(nn.Module):
    """An unpadded stride-1 convolution computed on ``factor`` x ``factor`` pixel blocks.

    With ``x_b[J] = x[f*J + b]`` (``pixel_unshuffle``), output phase ``a`` of block ``I`` is
    ``y[f*I + a] = sum_k w[k] x[f*I + a + k] = sum_(d, b) w[f*d + b - a] x_b[I + d]``: a convolution
    of the unshuffled input with ``ceil((K - 1) / f) + 1`` taps per side, C_in*f^2 channels in and
    C_out*f^2 out, whose output ``pixel_shuffle`` interleaves. A 9x9 to RGB (3 output channels, the
    slowest layer per FLOP on the CPU and on an H200) becomes a 5x5 with 128 in and 12 out (f=2) or a
    3x3 with 512 in and 48 out (f=4): more multiply-adds (1.23x, 1.78x), in shapes matrix units use
    well. The input is zero-padded to whole blocks and the output cropped: the same result up to
    float rounding.
    """

    def __init__(self, conv: nn.Conv2d, factor: int = 2):
        super().__init__()
        if conv.stride != (1, 1) or conv.padding != (0, 0) or conv.dilation != (1, 1) or conv.groups != 1:
            raise ValueError("SpaceToDepthConv rewrites an unpadded, stride-1, undilated, ungrouped convolution")
        f = self.factor = factor
        w = conv.weight.detach()
        cout, cin, kh, kw = w.shape
        self.kernel = (kh, kw)
        self.taps = th, tw = -(-(kh - 1) // f) + 1, -(-(kw - 1) // f) + 1  # per side, on the block grid
        big = torch.zeros(cout, f, f, cin, f, f, th, tw, dtype=w.dtype, device=w.device)
        for ar in range(f):
            for ac in range(f):
                for br in range(f):
                    for bc in range(f):
                        for dr in range(th):
                            for dc in range(tw):
                                kr, kc = f * dr + br - ar, f * dc + bc - ac
                                if 0 <= kr < kh and 0 <= kc < kw:
                                    big[:, ar, ac, :, br, bc, dr, dc] = w[:, :, kr, kc]
        # An nn.Conv2d inside, so ``widen_thin_convs`` can still pad its 12 output channels to 16.
        self.conv = nn.Conv2d(cin * f * f, cout * f * f, (th, tw), bias=conv.bias is not None).to(w.device, w.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(big.reshape(cout * f * f, cin * f * f, th, tw))
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias.detach().repeat_interleave(f * f))
        self.conv.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        f, (kh, kw) = self.factor, self.kernel
        h, w = x.shape[-2:]
        ho, wo = h - kh + 1, w - kw + 1
        th, tw = self.taps
        # Whole blocks, and enough of them that every output block has all its taps; the added
        # zeros only reach outputs past (ho, wo), which are cropped.
        # (n + f - 1) // f, not -(-n // f): ONNX's integer division truncates (instyle.inference.export).
        hp, wp = f * ((ho + f - 1) // f + th - 1), f * ((wo + f - 1) // f + tw - 1)
        x = F.pad(x, (0, wp - w, 0, hp - h))
        y = F.pixel_shuffle(self.conv(F.pixel_unshuffle(x, f)), f)
        return y[..., :ho, :wo]


def space_to_depth_convs(module: nn.Module, factor: int = 2, inputs: bool = False, max_channels: int = 4) -> nn.Module:
    """Replace (in place) every unpadded stride-1 Conv2d with a kernel wider than ``factor`` and at
    most ``max_channels`` output channels (with ``inputs``: or input channels) by a
    ``SpaceToDepthConv``; returns ``module``. For the johnson net: its last 9x9 convolution (to RGB),
    and with ``inputs`` its first (from RGB). On a 2-core AVX2 CPU the first one got 1.8x slower
    (pixel_unshuffle of a 3-channel image buys nothing there), hence the switch."""

    def thin(child: nn.Module) -> bool:
        return (isinstance(child, nn.Conv2d) and child.stride == (1, 1) and child.padding == (0, 0)
                and child.dilation == (1, 1) and child.groups == 1 and min(child.kernel_size) > factor
                and (child.out_channels <= max_channels or (inputs and child.in_channels <= max_channels)))

    return replace_modules(module, lambda _, child: SpaceToDepthConv(child, factor) if thin(child) else None)

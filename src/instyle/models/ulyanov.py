"""Ulyanov et al. multi-scale texture network (texture_nets ``pyramid``), for stylization.

The input image is seen at K scales (average-pooled by 2^(K-1) … 1), optionally with noise
channels (a generator g(x, z), the diversity branch: ``noise_channels`` of U(0, 1) noise
concatenated to the RGB input, ``layers.with_noise``). The noise is pooled with the image, and its
deviation from 0.5 scaled back up by the pooling ratio so every scale sees noise of the same
variance (plain average pooling would leave the coarse scales almost noise-free).
Each scale gets a small conv block; starting from the coarsest, the running result is
upsampled ×2, normalised, concatenated with the next scale's normalised block output, and mixed
by three more convs, so the channel count grows by ``channels`` per scale (8, 16, …, 48 for K=6).
A 1×1 conv maps to RGB. About 117 k parameters for the original K=6, 8 channels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from instyle.core.errors import InstyleError
from instyle.models.layers import ConvNormAct, crop_to, pad_to_multiple, with_noise
from instyle.models.norms import make_norm


def _block(cin: int, cout: int, norm: str) -> nn.Sequential:
    """conv3×3, conv3×3, conv1×1, each with norm and ReLU (replication padding, as the original)."""
    return nn.Sequential(
        ConvNormAct(cin, cout, 3, norm=norm, pad_mode="replicate"),
        ConvNormAct(cout, cout, 3, norm=norm, pad_mode="replicate"),
        ConvNormAct(cout, cout, 1, norm=norm),
    )


class UlyanovNet(nn.Module):
    """Multi-scale generator; input sides are padded to a multiple of 2^(K-1) and cropped back."""

    def __init__(self, norm: str = "instance", scales: int = 6, channels: int = 8, noise_channels: int = 0,
                 image_channels: int = 3):
        super().__init__()
        self.scales = scales
        self.noise_channels = noise_channels
        self.image_channels = image_channels
        self.size_multiple = 2 ** (scales - 1)
        # at least 2×2 at the coarsest scale: instance statistics of a single pixel are undefined
        self.min_size = 2 * self.size_multiple
        cin = image_channels + noise_channels
        self.branches = nn.ModuleList(_block(cin, channels, norm) for _ in range(scales))
        # joins[j] merges the running result (channels*(j+1)) with scale j+1's branch (channels).
        self.deep_norms = nn.ModuleList(make_norm(norm, channels * (j + 1)) for j in range(scales - 1))
        self.shallow_norms = nn.ModuleList(make_norm(norm, channels) for _ in range(scales - 1))
        self.joins = nn.ModuleList(_block(channels * (j + 2), channels * (j + 2), norm) for j in range(scales - 1))
        self.to_rgb = nn.Conv2d(channels * scales, 3, 1)

    def _inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image (+ noise) pyramid, coarsest first; pooled noise keeps U(0, 1)'s mean and variance."""
        out = []
        c = self.image_channels
        for i in range(self.scales):
            ratio = 2 ** (self.scales - 1 - i)
            xi = F.avg_pool2d(x, ratio) if ratio > 1 else x
            if self.noise_channels and ratio > 1:
                xi = torch.cat([xi[:, :c], 0.5 + (xi[:, c:] - 0.5) * ratio], dim=1)
            out.append(xi)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = with_noise(x, self.image_channels, self.noise_channels)
        padded, size = pad_to_multiple(x, self.size_multiple, self.min_size)
        return crop_to(self._trunk(self._inputs(padded)), size, padded.shape[-2:])

    def _trunk(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        """The network proper, on the per-scale inputs (coarsest first), to RGB at the finest scale."""
        y = self.branches[0](pyramid[0])
        for j in range(self.scales - 1):
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            shallow = self.shallow_norms[j](self.branches[j + 1](pyramid[j + 1]))
            y = self.joins[j](torch.cat([self.deep_norms[j](y), shallow], dim=1))
        return self.to_rgb(y)


# ----------------------------------------------------------------------------- texture synthesis

PAD_MODES = ("replicate", "circular")
# Largest sample: 4K UHD. Inference keeps ~3 activations of 8·scales channels alive at full size,
# about 5 GB in fp32 at this size; a typo of 40000x40000 must be refused, not attempted.
MAX_SAMPLE_PIXELS = 3840 * 2160


class WrapPad(nn.Module):
    """Same-size padding whose mode can change after training: ``replicate`` (the stylization
    network's) or ``circular``, which makes every convolution a convolution on the torus."""

    def __init__(self, pad: int, mode: str = "circular"):
        super().__init__()
        self.pad = pad
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        return F.pad(x, (p, p, p, p), mode=self.mode)

    def extra_repr(self) -> str:
        return f"{self.pad}, mode={self.mode}"


class UlyanovTexture(UlyanovNet):
    """The multi-scale network as a noise-to-texture generator (texture_nets' ``texture_nets_v1``).

    Every scale's input is fresh uniform noise (``noise_channels`` per scale, no photo), so one
    trained network samples a new texture for every noise draw, at any size: the convolutions are
    local and the statistics of instance norm are per image, so nothing ties it to the training
    size. With circular padding (``circular=1``) every layer works on a torus: convolutions wrap,
    nearest ×2 upsampling maps a torus onto a torus, and the output of a side that is a multiple of
    ``size_multiple`` tiles seamlessly. The padding mode has no weights, so it can also be switched
    for sampling (``padding``).
    """

    def __init__(self, norm: str = "instance", scales: int = 6, channels: int = 8, noise_channels: int = 3,
                 circular: int = 1):
        if noise_channels < 1:
            raise ValueError("a texture generator needs at least one noise channel per scale")
        super().__init__(norm, scales, channels, noise_channels=noise_channels, image_channels=0)
        self.circular = bool(circular)
        mode = "circular" if circular else "replicate"
        replace = [(parent, name, child) for parent in self.modules() for name, child in parent.named_children()
                   if isinstance(child, nn.ReplicationPad2d)]
        for parent, name, child in replace:
            setattr(parent, name, WrapPad(int(child.padding[0]), mode))

    @property
    def trained_padding(self) -> str:
        return "circular" if self.circular else "replicate"

    @contextlib.contextmanager
    def padding(self, mode: str | None) -> Iterator[None]:
        """Within the block every pad uses ``mode`` (None: the trained one); restored afterwards."""
        if mode is not None and mode not in PAD_MODES:
            raise ValueError(f"unknown padding {mode!r}; choose one of {', '.join(PAD_MODES)}")
        pads = [m for m in self.modules() if isinstance(m, WrapPad)]
        before = [m.mode for m in pads]
        for m in pads:
            m.mode = mode or self.trained_padding
        try:
            yield
        finally:
            for m, old in zip(pads, before, strict=True):
                m.mode = old

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the network runs at for an output of (height, width): sides rounded up to a
        multiple of ``size_multiple`` and at least ``min_size``; the output is cropped from it."""
        m = self.size_multiple
        return (max(self.min_size, -(-height // m) * m), max(self.min_size, -(-width // m) * m))

    def noise(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """The input pyramid for n samples of a (height, width) network size, coarsest first: U(0, 1)
        noise drawn on the CPU (so a seed gives the same texture on every device), then moved to
        the model's device."""
        if height % self.size_multiple or width % self.size_multiple or min(height, width) < self.min_size:
            raise ValueError(f"network sides must be multiples of {self.size_multiple} and at least "
                             f"{self.min_size}, got {height}x{width} (see network_size)")
        device = next(self.parameters()).device
        out = []
        for i in range(self.scales):
            ratio = 2 ** (self.scales - 1 - i)
            z = torch.rand(n, self.noise_channels, height // ratio, width // ratio, generator=generator)
            out.append(z.to(device))
        return out

    def forward(self, z: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """RGB textures from a noise pyramid (``noise``); not a stylization network."""
        if isinstance(z, torch.Tensor):
            raise InstyleError("ulyanov-texture is a texture generator: it takes noise, not photos "
                               "(use `instyle texture sample`)")
        if len(z) != self.scales:
            raise ValueError(f"expected {self.scales} noise scales, got {len(z)}")
        return self._trunk(z)

    @torch.no_grad()
    def sample(self, n: int, height: int, width: int, seed: int | None = None, tile: bool = False) -> torch.Tensor:
        """n textures of (height, width) in eval mode; the same seed gives the same pixels.

        ``tile``: circular padding and an exact network size, so each sample wraps seamlessly;
        sides must then be multiples of ``size_multiple`` (a crop of a torus does not tile)."""
        if n < 1 or height < 1 or width < 1:
            raise InstyleError(f"need at least one sample of at least 1x1 px, got {n} of {width}x{height}")
        if height * width > MAX_SAMPLE_PIXELS:
            raise InstyleError(f"a {width}x{height} texture is over the limit of {MAX_SAMPLE_PIXELS} pixels (4K UHD)")
        net_h, net_w = self.network_size(height, width)
        if tile and (net_h, net_w) != (height, width):
            raise InstyleError(f"a tileable texture needs sides that are multiples of {self.size_multiple} "
                               f"and at least {self.min_size} px, got {width}x{height} (try {net_w}x{net_h})")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        was_training = self.training
        self.eval()
        try:
            with self.padding("circular") if tile else contextlib.nullcontext():
                y = self(self.noise(n, net_h, net_w, generator))
        finally:
            self.train(was_training)
        return crop_to(y, (height, width), (net_h, net_w))

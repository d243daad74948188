"""Generators by name, in the spirit of timm's registry: ``create_model("johnson", norm="instance")``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from instyle.models.johnson import JohnsonNet
from instyle.models.norms import NORM_KINDS, make_multistyle
from instyle.models.ulyanov import UlyanovNet, UlyanovTexture

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], str]] = {}

# The hyper-parameters a model card may set, per architecture, with inclusive ranges. Cards come from
# untrusted files: anything else is refused before a layer is built (``instyle.models.card``).
_STYLES = {"styles": (1, 256)}
_NOISE = {"noise_channels": (0, 16)}  # g(x, z): noise channels concatenated to the photo (diversity)
ARCH_LIMITS: dict[str, dict[str, tuple[int, int]]] = {
    "johnson": {"n_res": (1, 16), **_NOISE, **_STYLES},
    "johnson-half": {"n_res": (1, 16), **_NOISE, **_STYLES},
    "ulyanov": {"scales": (1, 8), "channels": (1, 64), **_NOISE, **_STYLES},
    "ulyanov-texture": {"scales": (1, 8), "channels": (1, 64), "noise_channels": (1, 16), "circular": (0, 1)},
}
# Architectures that generate textures from noise instead of stylizing photos (``instyle texture``).
TEXTURE_ARCHS = frozenset({"ulyanov-texture"})


def register_model(name: str, description: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = (fn, description)
        return fn

    return deco


@register_model("johnson", "Johnson et al. 2016 residual net, 1.68 M parameters")
def johnson(norm: str = "instance", **kw: object) -> nn.Module:
    return JohnsonNet(norm=norm, width=1.0, **kw)  # type: ignore[arg-type]


@register_model("johnson-half", "Johnson residual net at half width (the released IN models), 0.42 M")
def johnson_half(norm: str = "instance", **kw: object) -> nn.Module:
    return JohnsonNet(norm=norm, width=0.5, **kw)  # type: ignore[arg-type]


@register_model("ulyanov", "Ulyanov et al. multi-scale texture network, 6 scales, 117 k parameters")
def ulyanov(norm: str = "instance", **kw: object) -> nn.Module:
    return UlyanovNet(norm=norm, **kw)  # type: ignore[arg-type]


@register_model("ulyanov-texture", "Ulyanov et al. multi-scale network as a noise-to-texture generator, "
                                   "circular padding (tileable), any output size")
def ulyanov_texture(norm: str = "instance", **kw: object) -> nn.Module:
    return UlyanovTexture(norm=norm, **kw)  # type: ignore[arg-type]


def list_models() -> dict[str, str]:
    return {name: desc for name, (_, desc) in _REGISTRY.items()}


def create_model(name: str, norm: str = "instance", styles: int = 1, **kw: object) -> nn.Module:
    """A generator by name; ``styles`` > 1 gives it one norm affine pair per style (see ``norms``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(_REGISTRY)}")
    if norm not in NORM_KINDS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORM_KINDS)}")
    return make_multistyle(_REGISTRY[name][0](norm=norm, **kw), styles)


def noise_channels(module: nn.Module) -> int:
    """How many noise channels a photo generator g(x, z) takes beside the RGB photo (0: a plain g(x))."""
    inner = getattr(module, "generator", module)  # through ClampedGenerator
    return int(getattr(inner, "noise_channels", 0) or 0) if not isinstance(inner, UlyanovTexture) else 0


"""The model card, typed and checked: what a model file says about itself.

A card comes from a file that may be hostile, so nothing is built from it until it has been checked:
the architecture must be registered, its hyper-parameters must be on the architecture's allow-list
and inside its ranges (``instyle.models.registry.ARCH_LIMITS``: a 6 KB file asking for 100 000
residual blocks must not allocate gigabytes first), and the display fields must have the right
types. Everything else the trainer recorded (``train``, ``metrics`` ...) is kept verbatim in
``data`` and written back unchanged.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

from instyle.core.errors import InstyleError
from instyle.models.norms import NORM_KINDS
from instyle.models.registry import ARCH_LIMITS, list_models

CARD_FORMAT = "instyle-model/1"
STROKE_RANGE = (0.1, 10.0)  # stroke sizes a card may name (style-image scale relative to the crops)
MAX_STROKE_ROWS = 16
MAX_CARD_CHARS = 4 << 20  # the zoo's largest card is ~20 KB; a header of megabytes is not a card


@dataclass(frozen=True)
class Defaults:
    """The controls a style recommends (tuned by eye for the zoo); 1 and 1 where a card says nothing."""

    strength: float = 1.0
    scale: float = 1.0
    stroke: float = 1.0  # only means something for a model with stroke rows (``ModelCard.strokes``)

    def as_dict(self) -> dict[str, float]:
        return {"strength": self.strength, "scale": self.scale, "stroke": self.stroke}


@dataclass(frozen=True)
class ModelCard:
    """A validated card. ``data`` is the whole JSON object as stored (including the training record)."""

    data: dict[str, Any]
    arch: str
    norm: str
    arch_kwargs: dict[str, int]
    styles: tuple[dict[str, Any], ...]  # one entry per style the network holds (one unless joint)
    defaults: Defaults
    strokes: tuple[float, ...] | None = None  # one style at these stroke sizes, one norm row each

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_dict(cls, data: Any, source: str = "model card") -> ModelCard:
        """Check ``data`` (parsed JSON) and wrap it; one ``InstyleError`` line naming ``source`` otherwise."""

        def bad(why: str) -> InstyleError:
            return InstyleError(f"{source}: invalid model card: {why}")

        if not isinstance(data, dict):
            raise bad(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format", CARD_FORMAT) != CARD_FORMAT:
            raise InstyleError(f"{source}: unsupported model format {data.get('format')!r}")
        arch = data.get("arch")
        if not isinstance(arch, str) or not arch:
            raise bad("no architecture (arch)")
        if arch not in list_models():
            raise bad(f"unknown architecture {arch!r} (known: {', '.join(list_models())})")
        norm = data.get("norm")
        if norm not in NORM_KINDS:
            raise bad(f"unknown norm {norm!r} (known: {', '.join(NORM_KINDS)})")
        kwargs = data.get("arch_kwargs", {})
        if not isinstance(kwargs, dict):
            raise bad("arch_kwargs must be an object")
        limits = ARCH_LIMITS[arch]
        for key, value in kwargs.items():
            if key not in limits:
                raise bad(f"{arch} takes no hyper-parameter {key!r} (allowed: {', '.join(limits)})")
            low, high = limits[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise bad(f"{arch} {key} must be an integer in [{low}, {high}], got {value!r}")
        styles = data["styles"] if "styles" in data else [data.get("style", {})]
        if not isinstance(styles, list) or not styles or not all(isinstance(s, dict) for s in styles):
            raise bad("style(s) must be an object or a non-empty list of objects")
        n_styles = kwargs.get("styles", 1)
        if "styles" in data and len(styles) != n_styles:
            raise bad(f"{len(styles)} style entries for a network of {n_styles} styles")
        for key in ("name", "description"):
            if key in data and not isinstance(data[key], str):
                raise bad(f"{key} must be a string")
        raw_defaults = data.get("defaults") or {}
        if not isinstance(raw_defaults, dict):
            raise bad("defaults must be an object")
        strokes = _check_strokes(data, n_styles, bad)
        low_stroke, high_stroke = (strokes[0], strokes[-1]) if strokes else STROKE_RANGE
        defaults = {}
        for key, (low, high) in {"strength": (0.0, 1.0), "scale": (0.25, 4.0),
                                 "stroke": (low_stroke, high_stroke)}.items():
            value = raw_defaults.get(key, min(max(1.0, low), high))  # stroke: 1, or the nearest row
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise bad(f"defaults.{key} must be a number in [{low}, {high}], got {value!r}")
            defaults[key] = float(value)
        return cls(data=data, arch=arch, norm=norm, arch_kwargs=dict(kwargs), styles=tuple(styles),
                   defaults=Defaults(**defaults), strokes=strokes)

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> ModelCard:
        if len(text) > MAX_CARD_CHARS:
            raise InstyleError(f"{source}: invalid model card: {len(text)} characters (at most {MAX_CARD_CHARS})")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InstyleError(f"{source}: invalid model card: not JSON ({exc})") from None
        return cls.from_dict(data, source)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps({"format": CARD_FORMAT, **self.data}, indent=indent)

    # ------------------------------------------------------------------ what callers ask

    @property
    def name(self) -> str | None:
        """The zoo name (``starry-night``); None for a model that was never shipped."""
        return self.data.get("name")

    @property
    def title(self) -> str:
        """The one display title: the painting's title for a single style, else the name or description."""
        single = self.styles[0].get("title") if len(self.styles) == 1 else None
        return str(single or self.name or self.data.get("description") or "style")

    @property
    def description(self) -> str:
        return str(self.data.get("description") or self.title)

    @property
    def n_styles(self) -> int:
        return len(self.styles)

    @property
    def joint(self) -> dict[str, Any] | None:
        """For a model split off a joint run: its index, the joint model's file and all its styles."""
        return self.data.get("joint")

    @property
    def train(self) -> dict[str, Any] | None:
        """The ``TrainConfig`` the run used (as a dict), if the card records one."""
        return self.data.get("train")

    @property
    def steps(self) -> int:
        return int(self.data.get("steps", 0))

    @property
    def wall_time_s(self) -> float:
        return float(self.data.get("wall_time_s", 0.0))

    @property
    def metrics(self) -> dict[str, Any]:
        return self.data.get("metrics") or {}

    @property
    def has_rows(self) -> bool:
        """One style at several stroke sizes (``--stroke`` picks or interpolates between them)."""
        return self.strokes is not None

    @property
    def describe_net(self) -> str:
        """``johnson/instance, 1 style(s)``: for error messages about weights that do not fit."""
        rows = f", {len(self.strokes)} stroke rows" if self.strokes else ""
        return f"{self.arch}/{self.norm}, {self.n_styles} style(s){rows}"

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_model`` (already checked against the allow-list)."""
        return {"norm": self.norm, **self.arch_kwargs}


def _check_strokes(data: dict[str, Any], n_rows: int, bad: Any) -> tuple[float, ...] | None:
    """A card's ``strokes``: one style's stroke sizes, increasing, one per norm row of the network."""
    if "strokes" not in data:
        return None
    raw = data["strokes"]
    low, high = STROKE_RANGE
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_STROKE_ROWS or any(
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not low <= v <= high
            for v in raw):
        raise bad(f"strokes must be a list of 2 to {MAX_STROKE_ROWS} numbers in [{low:g}, {high:g}]")
    if any(b <= a for a, b in itertools.pairwise(raw)):
        raise bad(f"strokes must increase, got {raw}")
    if "styles" in data:
        raise bad("stroke rows belong to one style (a card with strokes has a single style entry)")
    if len(raw) != n_rows:
        raise bad(f"{len(raw)} strokes for a network of {n_rows} norm rows")
    return tuple(float(v) for v in raw)

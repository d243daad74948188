"""Export a style network to ONNX or TorchScript with dynamic height and width.

The generators pad inputs to a size multiple with Python arithmetic on the input shape, and a
trace would freeze those pad amounts to the example's size. ``ExportWrapper`` therefore does the
padding itself with operations the tracer records (shape reads, integer maths, ``F.pad``,
slicing), so the generator inside always sees a size it needs no padding for, and the exported
graph stays correct for sizes never seen at export time.
"""

from __future__ import annotations

import io
import json
import platform
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_path, atomic_write_text, check_output_path, refuse_overwriting, sha256_file
from instyle.models import modelfile
from instyle.models.clamped import ClampedGenerator
from instyle.models.modelfile import load_model, plain_generator
from instyle.models.registry import noise_channels
from instyle.zoo import resolve_model

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17
# Opset 11 is the first whose Pad takes the pad amounts as an input (the wrapper computes them);
# the top is what this torch's exporter knows.
MIN_OPSET = 11


def max_opset() -> int:
    """The newest opset this torch exports; asked only when exporting (importing torch.onnx costs
    60 ms, which every ``instyle`` command would otherwise pay)."""
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET
    except ImportError:  # a torch that moved its constants: the opset the TorchScript exporter has long supported
        return 20
    return int(ONNX_MAX_OPSET)


def _round_up(n: Any, multiple: int, min_size: int) -> Any:
    """``pad_to_multiple``'s target side, for ints (eager) and 0-dim tensors (while tracing).

    Only non-negative floor divisions: ONNX's integer Div truncates, so ``-(-n // m)`` would break.
    """
    target = (n + multiple - 1) // multiple * multiple
    target = torch.clamp(target, min=min_size) if isinstance(target, torch.Tensor) else max(min_size, target)
    return (target + multiple - 1) // multiple * multiple


class ExportWrapper(nn.Module):
    """``Stylizer.module`` with traceable padding: (N, 3, H, W) in [0, 1] -> same shape, clamped.

    Pads with reflection exactly like ``instyle.models.layers.pad_to_multiple`` for sides of at
    least ``min_side`` (below that the eager model switches to replication, which a frozen graph
    cannot), so results match PyTorch there.
    """

    def __init__(self, module: nn.Module, multiple: int, min_size: int = 16):
        super().__init__()
        self.module = module
        self.multiple = multiple
        self.min_size = min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]  # ints in eager mode, traced 0-dim tensors under trace/export
        ph = _round_up(h, self.multiple, self.min_size) - h
        pw = _round_up(w, self.multiple, self.min_size) - w
        top, left = ph // 2, pw // 2
        padded = F.pad(x, [left, pw - left, top, ph - top], mode="reflect")
        y = self.module(padded)  # the generator's own padding is a no-op at this size
        return y[:, :, top : top + h, left : left + w]


def size_multiple(module: nn.Module) -> tuple[int, int]:
    """The pad multiple and minimum padded side of the generator inside ``Stylizer.module``."""
    for m in module.modules():
        if hasattr(m, "size_multiple"):
            return int(m.size_multiple), int(getattr(m, "min_size", 16))
    return 1, 16


def min_side(multiple: int, min_size: int = 16) -> int:
    """Smallest side from which on the eager model reflection-pads too, so the exported graph matches it."""
    bad = [s for s in range(1, 4 * max(multiple, min_size)) if _round_up(s, multiple, min_size) - s >= s]
    return max(bad, default=0) + 1


def export_card_path(output: str | Path) -> Path:
    """``FILE.onnx.json``: never the ``MODEL.json`` card of a model exported next to itself."""
    out = Path(output)
    return out.with_name(out.name + ".json")


def check_export_paths(model_path: Path, output: Path) -> None:
    """Neither the exported file nor its card may land on the model or the model's own card."""
    refuse_overwriting([output, export_card_path(output)], [model_path, modelfile.card_path(model_path)],
                       what="the model being exported")


def export_model(model: str | Path, output: str | Path, fmt: str = "onnx", *, example_size: int = 96,
                 opset: int = ONNX_OPSET) -> dict[str, Any]:
    """Export a model file or shipped style; writes ``output`` and ``export_card_path(output)``.

    Everything that can be refused is refused before the model is even loaded: the format, the
    opset, an output that is the model (or its card), a folder, or a place that cannot be written.
    """
    if fmt not in FORMATS:
        raise InstyleError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    top = max_opset() if fmt == "onnx" else MIN_OPSET
    if fmt == "onnx" and (isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= top):
        raise InstyleError(f"--opset must be between {MIN_OPSET} and {top} for this export, got {opset}")
    out = Path(output)
    model_path = resolve_model(model)
    check_export_paths(Path(model_path), out)
    check_output_path(out)
    check_output_path(export_card_path(out))
    generator, model_card = load_model(model_path)
    if noise_channels(generator):
        raise InstyleError(f"{model}: a diversity model (noise_channels {noise_channels(generator)}) takes noise "
                           f"beside the photo; exporting it is not supported, stylize it with instyle stylize --seed")
    module = ClampedGenerator(plain_generator(generator, model_card)).eval()  # stroke rows: the default stroke
    multiple, min_size = size_multiple(module)
    wrapper = ExportWrapper(module, multiple, min_size).eval()
    example = torch.rand(1, 3, example_size, example_size)
    try:
        with atomic_path(out) as tmp, warnings.catch_warnings():
            # The tracer warns about the generator's Python-level pad checks; the wrapper makes them no-ops.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            if fmt == "onnx":
                _export_onnx(wrapper, example, tmp, opset)
            else:
                with torch.no_grad():
                    traced = torch.jit.trace(wrapper, example, check_trace=False)
                traced.save(str(tmp))
    except OSError as exc:  # the disk filled up or the folder went away while exporting
        raise InstyleError(f"{out}: could not write the export ({exc.strerror or exc})") from None
    card = {
        "format": "instyle-export/1",
        "export_format": fmt,
        "file": out.name,
        "sha256": sha256_file(out),
        "input": {"name": "image", "shape": ["N", 3, "H", "W"], "dtype": "float32", "range": [0, 1],
                  "layout": "RGB", "min_side": min_side(multiple, min_size)},
        "output": {"name": "stylized", "shape": ["N", 3, "H", "W"], "dtype": "float32", "range": [0, 1]},
        "opset": opset if fmt == "onnx" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": model_card.data,
        **({"stroke": model_card.defaults.stroke} if model_card.has_rows else {}),  # the rows' value exported
    }
    card_file = export_card_path(out)
    try:
        atomic_write_text(card_file, json.dumps(card, indent=2) + "\n")
    except OSError as exc:
        raise InstyleError(f"{card_file}: could not write the export's card ({exc.strerror or exc})") from None
    return card


def onnx_bytes(module: nn.Module, example_size: int = 96, opset: int = ONNX_OPSET) -> tuple[bytes, int]:
    """``module`` (``Stylizer.module``, on the CPU) as an in-memory ONNX graph with dynamic N/H/W, and
    the smallest side it matches PyTorch on (the ONNX Runtime backend of ``instyle.inference.backends`` uses this)."""
    multiple, min_size = size_multiple(module)
    wrapper = ExportWrapper(module, multiple, min_size).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        _export_onnx(wrapper, torch.rand(1, 3, example_size, example_size), buf, opset)
    return buf.getvalue(), min_side(multiple, min_size)


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path | io.BytesIO, opset: int) -> None:
    """The TorchScript-based exporter: it records shape arithmetic, and needs no onnxscript."""
    try:
        import onnx  # noqa: F401  (torch.onnx needs it; fail with a clear message)
    except ImportError:
        raise InstyleError("ONNX export needs the `onnx` package: pip install 'instyle[export]'") from None
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad(), warnings.catch_warnings():
        # Benign notes of the TorchScript-based exporter (slice folding, eval-mode instance norm).
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            wrapper, (example,), path if isinstance(path, io.BytesIO) else str(path),
            input_names=["image"], output_names=["stylized"],
            dynamic_axes={"image": axes, "stylized": axes}, opset_version=opset, dynamo=False,
        )

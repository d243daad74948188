"""Inference fast paths behind ``Stylizer``: one generator, several ways to run it.

Every backend is a ``Runner``: (N, 3, H, W) float32 in [0, 1] in, float32 out on the same device,
so callers never care how the network ran. Paths that change numerics (bf16, fp16, ONNX Runtime)
are measured against fp32 eager with ``check_psnr``; ``auto`` only picks a path whose PSNR on the
actual model is at least ``MIN_PSNR`` dB, falling back to the next candidate otherwise.

=================  ======================================================================
backend            what it does
=================  ======================================================================
``eager``          the module as is (fp32): the reference
``channels_last``  fp32, NHWC weights and activations, upsampling folded (``instyle.inference.rewrites``)
``bf16``           bf16 weights and activations, channels_last (CPUs with AVX-512 BF16/AMX)
``compile``        ``torch.compile`` of the channels_last module, one graph per input shape
``compile-bf16``   ``torch.compile`` of the bf16 module
``compile-fp16``   ``torch.compile`` of the fp16 module (CUDA): inductor fuses the norms into Triton kernels
``onnxruntime``    exported once with dynamic N/H/W, run by ONNX Runtime's CPU provider
``fp16``           fp16 weights and activations (CUDA; thin convolutions widened for tensor cores)
``cuda-graphs``    fp16 on CUDA, each input shape captured once as a CUDA graph and replayed
``int8``           8-bit weights and activations (torchao PT2E, oneDNN VNNI kernels via inductor),
                   quantized and compiled once per input shape; CPU, ``pip install instyle[int8]``
``aot-fp32``       ``torch.export`` + AOTInductor with dynamic N/H/W, compiled once per model and
                   machine and cached on disk (``instyle.inference.compiled``): every size, no wait
``aot-bf16``       the same in bf16 channels_last (CPUs with native bf16)
``aot-fp16``       the same in fp16 on CUDA (untested: written without a GPU)
=================  ======================================================================
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_write_bytes, atomic_write_text, cache_dir
from instyle.core.hardware import cpu_supports_bf16, pick_device
from instyle.core.metrics import psnr
from instyle.inference import compiled
from instyle.inference.ortsession import open_session
from instyle.inference.rewrites import fold_upsampling, widen_thin_convs
from instyle.models.registry import noise_channels

BACKENDS = ("auto", "eager", "channels_last", "bf16", "compile", "compile-bf16", "onnxruntime", "fp16", "cuda-graphs",
            "compile-fp16", "int8", "aot-fp32", "aot-bf16", "aot-fp16")
MIN_PSNR = 40.0
CUDA_ONLY = ("fp16", "cuda-graphs", "compile-fp16", "aot-fp16")
#: Sizes ``auto`` validates on: one even, one odd (the compiled paths pad and crop outside the graph).
CHECK_SIZES = ((96, 128), (75, 113))
#: The size ``auto`` times its validated candidates at, once per model and machine.
RACE_SIZE = (512, 512)
#: What runs a diversity model g(x, z), whose input carries noise channels beside the photo: the
#: eager paths. Compiled graphs, ONNX and int8 are traced on 3-channel photos (and their PSNR
#: check compares runs with different noise), so they refuse it; ``auto`` takes ``eager``.
NOISE_BACKENDS = ("eager", "channels_last", "bf16", "fp16")


class Runner:
    """Runs a generator through one backend: float32 (N, 3, H, W) in [0, 1] -> float32, same device.

    ``module`` is the ``nn.Module`` that is actually executed eagerly (a converted copy for
    channels_last/bf16/fp16), so the tiler can hook its norm layers; ``eager_runner`` is the runner
    the tiler uses for paths that cannot take injected statistics (compiled graphs, ONNX).
    """

    backend: str = "eager"
    device: torch.device
    module: nn.Module

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def eager_runner(self) -> Runner:
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r}, device={self.device})"


class ModuleRunner(Runner):
    """Eager execution, optionally with another dtype and/or channels_last (on a copy of the module)."""

    def __init__(self, module: nn.Module, device: torch.device, backend: str = "eager",
                 dtype: torch.dtype = torch.float32, channels_last: bool = False, widen: bool = False,
                 fold: bool = False):
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if dtype == torch.float32 and not channels_last and not widen and not fold:
            self.module = module  # the reference path shares the user's module
        else:
            # A copy, so ``Stylizer.module`` stays the plain fp32 module users were promised.
            copied = copy.deepcopy(module)
            if widen:
                widen_thin_convs(copied)
            if fold:
                fold_upsampling(copied)
            self.module = copied.to(device=device, dtype=dtype, memory_format=self.memory_format)
        self.module.eval()

    def prepare(self, x: Tensor) -> Tensor:
        return x.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)

    def __call__(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.module(self.prepare(x)).float().contiguous()


class CompiledRunner(ModuleRunner):
    """``torch.compile`` of a ModuleRunner's module; inductor specialises (and caches) per input shape."""

    def __init__(self, module: nn.Module, device: torch.device, backend: str, dtype: torch.dtype,
                 channels_last: bool = True, widen: bool = False):
        super().__init__(module, device, backend, dtype=dtype, channels_last=channels_last, widen=widen)
        self.compiled = torch.compile(self.module, dynamic=False)
        eager_name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "channels_last")
        self._eager = ModuleRunner(module, device, eager_name, dtype=dtype, channels_last=channels_last)
        self._eager.module = self.module  # same weights, no second copy

    @property
    def eager_runner(self) -> Runner:
        return self._eager

    def __call__(self, x: Tensor) -> Tensor:
        with torch.inference_mode(), compile_scope(32):
            return self.compiled(self.prepare(x)).float().contiguous()


@contextlib.contextmanager
def compile_scope(recompile_limit: int = 8) -> Any:
    """The compiler switches inference wants, for the calls inside only (compilation happens lazily
    on a call), so other ``torch.compile`` users in the process keep theirs (#15).

    Freezing treats the weights as constants: inductor folds them into prepacked oneDNN convolutions
    with fused bias/ReLU, the documented path for CPU inference. Dynamo's per-function graph limit is
    raised to ``recompile_limit``: a stylizer sees a handful of frame sizes, one graph each.
    """
    import torch._dynamo
    import torch._inductor.config

    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    with cfg.patch(**{name: max(getattr(cfg, name), recompile_limit)}), torch._inductor.config.patch(freezing=True):
        yield


class AotRunner(Runner):
    """An AOTInductor package with dynamic N/H/W, compiled once per (weights, dtype, machine, torch,
    instyle) and loaded from ``instyle.inference.compiled``'s cache: no per-size compilation.

    The graph takes sides that are multiples of the generator's size multiple; padding to that and
    cropping back happen here, with the generator's own rule (``pad_for``), so every size matches
    eager. Sides beyond ``compiled.MAX_SIDE`` run eagerly; a batch runs image by image (the package
    takes one: instance norm makes that exact, and a dynamic batch made the graph slower).
    """

    def __init__(self, module: nn.Module, device: torch.device, backend: str, dtype: torch.dtype,
                 label: str = "this model"):
        self.backend, self.device, self.dtype = backend, device, dtype
        self.module = module
        self.multiple, self.min_size = compiled.size_multiple(module)
        self.run = compiled.load_or_build(module, dtype, device, label=label)
        self._eager: Runner | None = None

    @property
    def eager_runner(self) -> Runner:
        if self._eager is None:  # built on demand: one-image calls never tile
            name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "eager")
            self._eager = ModuleRunner(self.module, self.device, name, dtype=self.dtype,
                                       channels_last=self.dtype != torch.float32)
        return self._eager

    def __call__(self, x: Tensor) -> Tensor:
        if max(x.shape[-2:]) > compiled.MAX_SIDE:
            return self.eager_runner(x)
        if x.shape[0] > 1:
            return torch.cat([self(part) for part in x.split(1)])
        with torch.inference_mode():
            padded, (left, right, top, bottom) = compiled.pad_for(x.to(self.device, torch.float32).contiguous(),
                                                                  self.multiple, self.min_size)
            y = self.run(padded)
            h, w = padded.shape[-2:]
            return y[..., top : h - bottom, left : w - right].contiguous()


class OnnxRunner(Runner):
    """ONNX Runtime (CPU provider) on the graph ``instyle export`` writes: dynamic N/H/W, padding and
    cropping inside the graph. Images smaller than the graph's ``min_side`` go to eager PyTorch."""

    backend = "onnxruntime"

    def __init__(self, module: nn.Module, device: torch.device, threads: int | None = None):
        if not _importable("onnxruntime"):
            raise InstyleError("the onnxruntime backend needs `pip install instyle[export]`")
        self.device = device
        self.module = module
        self._fallback = ModuleRunner(module, device)
        data, self.min_side, path, digest = _cached_onnx_file(module)
        self.graph = path, digest  # the file and the sha256 of what runs: for the fast start record
        self.threads = threads or torch.get_num_threads()
        self.session = open_session(data, self.threads)
        self.input_name = self.session.get_inputs()[0].name

    @property
    def eager_runner(self) -> Runner:
        return self._fallback

    def __call__(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < self.min_side:
            return self._fallback(x)
        (y,) = self.session.run(None, {self.input_name: x.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(y).to(x.device)


def cached_onnx(module: nn.Module) -> tuple[bytes, int]:
    """``export.onnx_bytes`` once per set of weights: the export takes seconds, a one-image CLI call
    shouldn't pay it. Returns the graph and its smallest exact side. The cached graph is only used
    when its sha256 matches its JSON sidecar (never trusted); otherwise it is exported again."""
    data, side, _, _ = _cached_onnx_file(module)
    return data, side


def _cached_onnx_file(module: nn.Module) -> tuple[bytes, int, Path, str]:
    """``cached_onnx``, with where the graph is kept and the sha256 of the bytes returned (computed
    once, for the sidecar check or the sidecar): what the fast start record names."""
    import json

    from instyle.inference.export import onnx_bytes

    key = hashlib.sha256(f"{torch.__version__}|{compiled.weights_digest(module)}".encode()).hexdigest()[:32]
    path = cache_dir() / "onnx" / f"{key}.onnx"
    meta = compiled.read_json(path.with_suffix(".json"))
    if meta is not None and path.is_file():
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest == meta.get("sha256") and isinstance(meta.get("min_side"), int):
            return data, meta["min_side"], path, digest
    module_cpu = module if next(module.parameters()).device.type == "cpu" else copy.deepcopy(module).cpu()
    data, side = onnx_bytes(module_cpu.eval())
    digest = hashlib.sha256(data).hexdigest()
    with contextlib.suppress(OSError):  # a read-only cache only costs the next call another export
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        atomic_write_text(path.with_suffix(".json"), json.dumps({"sha256": digest, "min_side": side}))
    return data, side, path, digest


def _per_shape(cache: OrderedDict, key: tuple[int, ...], build: Callable[[], Any], max_size: int) -> Any:
    """``cache[key]``, built on first use; the least recently used entry goes beyond ``max_size``."""
    if key not in cache:
        if len(cache) >= max_size:
            cache.popitem(last=False)
        cache[key] = build()
    cache.move_to_end(key)
    return cache[key]


class CudaGraphRunner(ModuleRunner):
    """fp16 on CUDA with one captured CUDA graph per input shape (LRU, ``max_shapes``): a stream of
    same-size video frames then costs one graph launch per frame instead of ~60 kernel launches."""

    def __init__(self, module: nn.Module, device: torch.device, max_shapes: int = 4):
        super().__init__(module, device, "cuda-graphs", dtype=torch.float16, widen=True)
        self.max_shapes = max_shapes
        self.graphs: OrderedDict[tuple[int, ...], tuple[Any, Tensor, Tensor]] = OrderedDict()
        self._eager = ModuleRunner(module, device, "fp16", dtype=torch.float16)
        self._eager.module = self.module

    @property
    def eager_runner(self) -> Runner:
        return self._eager

    def _capture(self, x: Tensor) -> tuple[Any, Tensor, Tensor]:
        static_in = x.clone()
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up: cuDNN algorithm choice and allocator pools outside the graph
                self.module(static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.module(static_in)
        return graph, static_in, static_out

    def __call__(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            xin = self.prepare(x)
            graph, static_in, static_out = _per_shape(self.graphs, tuple(xin.shape), lambda: self._capture(xin),
                                                      self.max_shapes)
            static_in.copy_(xin)
            graph.replay()
            return static_out.float()  # a fresh tensor: the static output is overwritten next frame


class Int8Runner(Runner):
    """Static int8 quantization (PT2E + X86InductorQuantizer), compiled by inductor per input shape.

    Activation ranges are calibrated on three synthetic photo-like images of the input's shape
    (``sample_image``), never on the user's image, so results do not depend on what came first.
    Measured 4.6x fp32 eager at 512² at 40.2 dB, but 38 dB at 1920x1080 (docs/benchmarks.md Run D);
    on an AVX-512 Xeon without AMX 50.8 dB and 1.41x at 1080p but 1.16x at 512², and every new size
    waits 15-30 s for calibration and compilation: explicit only, never ``auto``.
    """

    backend = "int8"

    def __init__(self, module: nn.Module, device: torch.device, max_shapes: int = 4):
        if device.type != "cpu":
            raise InstyleError("the int8 backend runs on the CPU; use --device cpu")
        if not _importable("torchao"):
            raise InstyleError("the int8 backend needs `pip install instyle[int8]` (torchao)")
        self.device, self.module = device, module.eval()
        self.max_shapes = max_shapes
        self._graphs: OrderedDict[tuple[int, ...], Callable[[Tensor], Tensor]] = OrderedDict()
        self._eager = ModuleRunner(module, device)

    @property
    def eager_runner(self) -> Runner:
        return self._eager

    def _quantize(self, shape: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        n, _, h, w = shape
        example = sample_image((h, w), n=n)
        graph = torch.export.export(self.module, (example,)).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(graph, quantizer)
        for seed in range(3):
            prepared(sample_image((h, w), n=n, seed=seed))
        return torch.compile(convert_pt2e(prepared))

    def __call__(self, x: Tensor) -> Tensor:
        key = tuple(x.shape)
        with torch.no_grad(), compile_scope():
            graph = _per_shape(self._graphs, key, lambda: self._quantize(key), self.max_shapes)
            return graph(x.to(self.device).float()).float().contiguous()


def available_backends(device: torch.device) -> list[str]:
    """Backends that can run on ``device`` here (whether they are fast or accurate is another matter)."""
    names = ["eager", "channels_last", "compile"]
    if device.type == "cpu":
        names += ["bf16", "compile-bf16"] + (["onnxruntime"] if _importable("onnx", "onnxruntime") else [])
        names += ["int8"] if _importable("torchao") else []
        names += ["aot-fp32", "aot-bf16"]
    if device.type == "cuda":
        names += ["bf16", "fp16", "cuda-graphs", "compile-fp16", "aot-fp16"]
    return names


def _importable(*modules: str) -> bool:
    """Whether an optional extra's modules are installed (``export``: onnx + onnxruntime; ``int8``: torchao)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in modules)


def auto_candidates(device: torch.device) -> list[str]:
    """What ``auto`` tries (each must pass the PSNR check at ``CHECK_SIZES``; the fastest that passes
    at ``RACE_SIZE`` wins, timed once per model and machine and recorded); see docs/benchmarks.md.

    First the AOT-compiled package where it pays (below): compiled once per model and machine with
    dynamic sizes and cached on disk, so no image size waits after the first run. Its precision follows the CPU: bf16
    with AMX (where bf16 convolutions are several times fp32), fp32 elsewhere, including AVX-512
    BF16 without AMX, where the compiled fp32 package measured faster than the compiled bf16 one.
    Then the eager paths as before: bf16 eager on native-bf16 CPUs, ONNX Runtime (fp32), eager.
    int8 is never automatic (below 40 dB at 1080p; slower than bf16 on AMX; docs/benchmarks.md).
    On CUDA: ``aot-fp16`` (untested: written without a GPU; it falls back when it fails), then
    ``fp16``, which ran 1.24-1.26x fp32 eager at 1920x1080 and 4K on an H200.
    Without AMX the package is left out unless asked for: on the 2-core AVX-512 BF16 Xeon (no AMX)
    ONNX Runtime beat ``aot-fp32`` at 512² (1575 vs 1949 ms) and lost only 1.10x at 1920x1080, which
    does not repay a compile of a minute or more per style on first use (``make demo`` alone ships 11).
    ``INSTYLE_AOT=1`` puts the compiled package first on any CPU, ``INSTYLE_AOT=0`` leaves it out
    everywhere (the test suite does, to stay fast); unset, it is a candidate on AMX CPUs and CUDA.
    """
    choice = os.environ.get("INSTYLE_AOT", "")
    aot_ok = choice == "1" or (choice != "0" and (device.type == "cuda" or compiled.has_amx()))
    if device.type == "cuda":
        return (["aot-fp16"] if aot_ok else []) + ["fp16", "eager"]
    onnx = ["onnxruntime"] if _importable("onnx", "onnxruntime") else []
    aot = ["aot-bf16" if compiled.has_amx() else "aot-fp32"] if aot_ok else []
    return aot + (["bf16"] if cpu_supports_bf16() else []) + onnx + ["eager"]


def _validation_parts(module: nn.Module, device: torch.device, candidates: list[str], min_psnr: float
                      ) -> dict[str, Any]:
    """What a cached ``auto`` pick depends on: the weights, the machine, torch/instyle, the rules."""
    return {"weights": compiled.weights_digest(module), "candidates": candidates, "min_psnr": min_psnr,
            "sizes": [list(s) for s in CHECK_SIZES], "kind": f"auto/1+{compiled.PACKAGE_KIND}",
            **compiled.machine_key(device)}


def _race(runners: dict[str, Runner], size: tuple[int, int], rounds: int = 3, close: float = 0.15
          ) -> dict[str, float]:
    """Median milliseconds per runner at ``size`` over interleaved rounds (one untimed call each
    first), so a busy machine slows every candidate alike. When the two fastest are within
    ``close`` of each other, as many rounds again: on a shared 2-core VM one lucky best-of-2 once
    picked eager over an ONNX Runtime path that is 1.2-1.5x faster (docs/benchmarks.md)."""
    x = sample_image(size).to(next(iter(runners.values())).device)
    for runner in runners.values():
        runner(x)
    times: dict[str, list[float]] = {name: [] for name in runners}

    def timed_rounds(n: int) -> dict[str, float]:
        for _ in range(n):
            for name, runner in runners.items():
                t = time.perf_counter()
                runner(x)
                times[name].append((time.perf_counter() - t) * 1000)
        return {name: statistics.median(ts) for name, ts in times.items()}

    result = timed_rounds(rounds)
    first, second = sorted(result.values())[:2]
    return timed_rounds(rounds) if second < first * (1 + close) else result


def _auto(module: nn.Module, dev: torch.device, min_psnr: float, label: str) -> Runner:
    """``auto``: the recorded pick when one holds for this model and machine; else validate every
    candidate, time the ones that pass at ``RACE_SIZE`` and record the fastest (first use only)."""
    candidates = auto_candidates(dev)
    parts = _validation_parts(module, dev, candidates, min_psnr)
    hit = compiled.cached_choice(parts)
    if hit is not None and hit["backend"] in candidates:
        try:
            return build_runner(module, hit["backend"], dev, label=label)
        except Exception as exc:  # e.g. the package was deleted and does not compile any more
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            compiled.note(f"{hit['backend']}: {first}; revalidating")
            compiled.forget_choice(parts)
    passed: dict[str, Runner] = {}
    scores: dict[str, float] = {}
    for name in candidates:
        if name == "eager":
            passed[name], scores[name] = build_runner(module, name, dev), math.inf
            break
        try:
            runner = build_runner(module, name, dev, label=label)
            db = min(check_psnr(runner, module, size) for size in CHECK_SIZES)
        except Exception as exc:  # an optional path that cannot run here: the others, in one line
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            compiled.note(f"{name} unavailable here ({first})")
            continue
        if db >= min_psnr:
            passed[name], scores[name] = runner, db
        else:
            compiled.note(f"{name} gave {db:.1f} dB against fp32 (< {min_psnr:g}): not used")
    times = _race(passed, RACE_SIZE) if len(passed) > 1 else {}
    pick = min(times, key=times.__getitem__) if times else next(iter(passed))
    if times:
        ranking = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(times.items(), key=lambda kv: kv[1]))
        compiled.note(f"fastest validated path here: {pick} ({ranking} at {RACE_SIZE[1]}x{RACE_SIZE[0]}); "
                      "recorded for later runs")
    compiled.record_choice(parts, pick, scores[pick], times)
    return passed[pick]


def build_runner(module: nn.Module, backend: str = "auto", device: str | torch.device = "auto",
                 min_psnr: float = MIN_PSNR, label: str = "this model") -> Runner:
    """A runner for ``module`` (already on ``device``, in [0, 1] -> [0, 1]).

    ``auto`` validates its candidates with ``check_psnr`` on the actual model and takes the first
    one at ``min_psnr`` dB or more, and records that pick on disk (``instyle.inference.compiled``)
    so later processes skip the check; an explicit backend is built as asked, unchecked.
    ``label`` names the model in the one-line notes about first-use compilation.
    """
    dev = pick_device(device) if isinstance(device, str) else device
    if backend not in BACKENDS:
        raise InstyleError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if noise_channels(module):
        if backend not in (*NOISE_BACKENDS, "auto"):
            raise InstyleError(f"the {backend} backend does not take the noise input of {label} "
                               f"({noise_channels(module)} noise channels); use one of {', '.join(NOISE_BACKENDS)}")
        backend = "eager" if backend == "auto" else backend
    if backend == "auto":
        return _auto(module, dev, min_psnr, label)
    if backend in CUDA_ONLY and dev.type != "cuda":
        raise InstyleError(f"the {backend} backend needs a CUDA GPU")
    if dev.type == "cuda":
        # cuDNN times its algorithms once per input shape and keeps the fastest: a stream of
        # same-size frames (or one large image) pays the search once.
        torch.backends.cudnn.benchmark = True
    if backend == "eager":
        return ModuleRunner(module, dev)
    if backend == "channels_last":  # upsampling folded: 1.12x at 1080p, 0.98x unfolded (docs/benchmarks.md)
        return ModuleRunner(module, dev, backend, channels_last=True, fold=True)
    if backend == "bf16":
        return ModuleRunner(module, dev, backend, dtype=torch.bfloat16, channels_last=True)
    if backend == "fp16":  # NCHW and widened thin convs: measured fastest on an H200 (docs/benchmarks.md)
        return ModuleRunner(module, dev, backend, dtype=torch.float16, widen=True)
    if backend == "compile":
        return CompiledRunner(module, dev, backend, torch.float32)
    if backend == "compile-bf16":
        return CompiledRunner(module, dev, backend, torch.bfloat16)
    if backend == "compile-fp16":
        return CompiledRunner(module, dev, backend, torch.float16, channels_last=False, widen=True)
    if backend in ("aot-fp32", "aot-bf16", "aot-fp16"):
        dtype = {"aot-fp32": torch.float32, "aot-bf16": torch.bfloat16, "aot-fp16": torch.float16}[backend]
        return AotRunner(module, dev, backend, dtype, label=label)
    if backend == "onnxruntime":
        if dev.type != "cpu":
            raise InstyleError("the onnxruntime backend runs on the CPU; use --device cpu")
        return OnnxRunner(module, dev)
    if backend == "int8":
        return Int8Runner(module, dev)
    return CudaGraphRunner(module, dev)


def sample_image(size: tuple[int, int], n: int = 1, seed: int = 0) -> Tensor:
    """A photo-like input (smooth colour fields, edges and fine noise), reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    coarse = F.interpolate(torch.rand(n, 3, 6, 8, generator=g), size=size, mode="bicubic", align_corners=False)
    edges = (torch.rand(n, 3, 12, 16, generator=g) > 0.5).float()
    edges = F.interpolate(edges, size=size, mode="nearest")
    fine = torch.rand(n, 3, h, w, generator=g)
    return (0.6 * coarse + 0.3 * edges + 0.1 * fine).clamp(0, 1)


def check_psnr(runner: Callable[[Tensor], Tensor], reference_module: nn.Module,
               size: tuple[int, int] = (256, 256), x: Tensor | None = None) -> float:
    """PSNR (dB) of ``runner``'s output against fp32 eager ``reference_module`` on one image.

    ``x`` defaults to ``sample_image(size)``; measure with a trained model: random-init generators
    give near-constant outputs, which inflates PSNR.
    """
    device = next(reference_module.parameters()).device
    x = (sample_image(size) if x is None else x).to(device)
    with torch.inference_mode():
        ref = reference_module.eval()(x).float().clamp(0, 1)
        out = runner(x).float().clamp(0, 1)
    return psnr(out, ref)

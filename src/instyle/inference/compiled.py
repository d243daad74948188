"""Ahead-of-time compiled generators, built once per machine and kept on disk.

``torch.compile`` specialises on the input shape, so every new image size costs seconds of
compilation that nothing keeps past the process. Here the generator is exported once with
``torch.export`` with *dynamic* height and width (multiples of the net's size multiple) and a batch
of one (a dynamic batch made inductor's instance-norm reductions run on one thread: 111 vs 50 ms
for ``starry-night-fast`` at 512² on the 2-core AMX Xeon; batches run image by image),
compiled by AOTInductor into a ``.pt2`` package, and stored under
``cache_dir()/"compiled"``. Later processes load that package with the C++ loader that
``torch._inductor.aoti_load_package`` wraps (milliseconds, where the Python wrapper spends a
second importing inductor), for every image size, with no recompilation.

The cache is never trusted: each artefact has a JSON sidecar with its key and sha256, checked
before every load; a missing, corrupt or mismatched entry is rebuilt. Writers hold an exclusive
lock and replace files by rename; readers hold a shared lock while they verify and load.

Validated ``auto`` picks (which backend passed the PSNR check on which model, machine and torch)
are kept next to the artefacts the same way, so later runs skip validation entirely.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instyle.core.cpu import cpu_features
from instyle.core.errors import InstyleError
from instyle.core.files import atomic_write_text, cache_dir, sha256_file
from instyle.core.padding import padding_for
from instyle.core.version import __version__
from instyle.inference.rewrites import index_upsampling
from instyle.models.norms import fused_instance_norm

#: Largest side the compiled graph takes (8K); larger images run eagerly.
MAX_SIDE = 8192
#: What a package is (how it was exported and compiled): a new value misses every cached package and
#: every recorded ``auto`` pick, which raced the old packages.
PACKAGE_KIND = "aoti/5"
#: How many packages this process has compiled (tests assert reuse on it, never on timing).
build_count = 0
_LOADED: dict[str, Any] = {}  # path + sha -> loaded package, so Stylizers of one model share it


def note(message: str) -> None:
    """One line on stderr: first-use compilation and fallbacks are news, never tracebacks."""
    print(f"instyle: {message}", file=sys.stderr, flush=True)


def has_amx() -> bool:
    """AMX tiles: where bf16 convolutions beat fp32 by a wide margin (not merely AVX-512 BF16)."""
    return "amx_bf16" in cpu_features()


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's structure and weights: a changed model file means a new digest."""
    h = hashlib.sha256(repr(module).encode())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def machine_key(device: torch.device) -> dict[str, Any]:
    """What, besides the weights, decides whether a compiled artefact or a validation still holds."""
    key: dict[str, Any] = {"torch": torch.__version__, "instyle": __version__, "python": platform.python_version(),
                           "arch": platform.machine(), "cpu": cpu_features(), "device": device.type}
    if device.type == "cuda":  # untested here: no GPU in the session that wrote this
        key["gpu"] = torch.cuda.get_device_name(device)
        key["capability"] = list(torch.cuda.get_device_capability(device))
    return key


def entry_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def compiled_dir() -> Path:
    return cache_dir() / "compiled"


@contextlib.contextmanager
def _locked(path: Path, exclusive: bool) -> Iterator[None]:
    """An advisory ``flock`` on ``path`` (a no-op where fcntl is missing or the folder is read-only)."""
    try:
        import fcntl
    except ImportError:  # Windows: atomic renames alone
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")  # noqa: SIM115  (held open for the lock's lifetime)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fh.close()  # releases the lock


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from the cache, or ``None`` for anything missing or malformed (never trusted)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class _Exported(nn.Module):
    """What is compiled: fp32 NCHW in (already padded), ``dtype`` channels_last inside, fp32 out."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x.to(self.dtype).contiguous(memory_format=torch.channels_last)).float()


def size_multiple(module: nn.Module) -> tuple[int, int]:
    """The pad multiple and minimum padded side of the generator inside ``Stylizer.module``."""
    for m in module.modules():
        if hasattr(m, "size_multiple"):
            return int(m.size_multiple), int(getattr(m, "min_size", 16))
    return 1, 16


@contextlib.contextmanager
def _parallel_symbolic_reductions() -> Iterator[None]:
    """Let inductor's C++ backend parallelise a reduction over a *symbolic* extent, as it does over a
    static one.

    For a loop nest whose outer (parallel) levels are much shorter than the reduction under them,
    inductor moves the threads into the reduction, but only when that extent is a constant; with a
    dynamic image size every instance-norm statistic (a reduction over H*W for 16-64 channels, one
    or two vectors wide) ran on one thread. This applies inductor's own rule to the sizes' hints
    (the example's 512²). Scoped to one compilation; a torch without these internals compiles as is.
    """
    try:
        from torch._inductor.codegen import cpp
        from torch._inductor.virtualized import V
        original = cpp.LoopNest.max_parallel_depth
        cpp.ParallelDepth, cpp.CppVecKernel  # noqa: B018  (the names the rule below uses)
    except (ImportError, AttributeError):
        yield
        return

    def hint(expr: Any) -> int:
        return int(V.graph.sizevars.optimization_hint(expr, fallback=8192))

    def with_hints(self: Any) -> Any:
        depth = original(self)
        loops = self.loops
        if not loops or depth.start_depth != 0 or depth.parallel_depth >= len(loops):
            return depth
        n = depth.parallel_depth
        if not loops[n].is_reduction or not any(getattr(loop.size, "free_symbols", None) for loop in loops[: n + 1]):
            return depth  # not a reduction, or static sizes: inductor's own decision stands
        kernels = getattr(self.kernel, "kernels", None)
        if not kernels or not all(isinstance(k, cpp.CppVecKernel) for k in kernels):
            return depth  # inductor keeps scalar reductions serial; so does this
        outer = 1
        for loop in loops[:n]:
            outer *= max(1, hint(loop.size) // max(1, int(loop.steps)))
        if outer * 300 >= hint(loops[n].size) // max(1, int(loops[n].steps)):
            return depth
        inner = 0
        for loop in loops[n:]:
            if not loop.is_reduction:
                break
            inner += 1
        return cpp.ParallelDepth(parallel_depth=inner, start_depth=n)

    cpp.LoopNest.max_parallel_depth = with_hints
    try:
        yield
    finally:
        cpp.LoopNest.max_parallel_depth = original


def build_package(module: nn.Module, dtype: torch.dtype, device: torch.device, path: Path) -> None:
    """Export ``module`` for one image of dynamic H/W (multiples of its size multiple); AOT-compile it to ``path``."""
    from torch._inductor import aoti_compile_and_package
    from torch.export import Dim

    multiple, min_size = size_multiple(module)
    converted = index_upsampling(copy.deepcopy(module))
    converted = converted.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval()
    wrapper = _Exported(converted, dtype).eval()
    lo = -(-min_size // multiple)
    dims = {2: multiple * Dim("h", min=lo, max=MAX_SIDE // multiple),
            3: multiple * Dim("w", min=lo, max=MAX_SIDE // multiple)}
    # Inductor's heuristics read the symbolic sizes' hints from the example: a photo-sized one.
    side = multiple * max(lo, 512 // multiple)
    example = torch.rand(1, 3, side, side, device=device)
    # Instance norm as one reduction and a per-channel multiply-add (``instance_norm_eval``): inductor
    # fuses the multiply-add into the next pad or gather (1080p: 1139 -> 1035 ms for starry-night).
    with torch.no_grad(), _parallel_symbolic_reductions(), fused_instance_norm(True):
        program = torch.export.export(wrapper, (example,), dynamic_shapes={"x": dims})
        # Freezing folds the weights into prepacked oneDNN convolutions with fused bias/ReLU:
        # the inference-only CPU path; scoped to this compilation, not set process-wide.
        aoti_compile_and_package(program, package_path=str(path),
                                                 inductor_configs={"freezing": True})


def _load_package(path: Path, device: torch.device) -> Any:
    """The C++ package loader (ms), or the Python wrapper (imports inductor, ~1 s) if it is missing."""
    loader = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    if loader is not None:
        index = device.index if device.index is not None else (-1 if device.type == "cpu" else 0)
        pkg = loader(str(path), "model", False, 1, index)
        return lambda x: pkg.run([x])[0]
    from torch._inductor import aoti_load_package

    compiled = aoti_load_package(str(path))
    return lambda x: compiled(x)


def _verified(path: Path, meta_path: Path, key: str) -> str | None:
    """The artefact's sha256 when its sidecar names this key and that hash, else ``None``."""
    meta = read_json(meta_path)
    if meta is None or meta.get("key") != key or not path.is_file():
        return None
    digest = sha256_file(path)
    return digest if digest == meta.get("sha256") else None


def load_or_build(module: nn.Module, dtype: torch.dtype, device: torch.device, label: str = "this model") -> Any:
    """A callable running the compiled ``module`` (padded fp32 in, fp32 out), from the cache or built now.

    First use on a machine compiles (tens of seconds; a line on stderr says so), later processes
    load the verified package in milliseconds. Raises ``InstyleError`` when compilation fails.
    """
    global build_count
    parts = {"weights": weights_digest(module), "dtype": str(dtype), "kind": PACKAGE_KIND, **machine_key(device)}
    key = entry_key(parts)
    folder = compiled_dir()
    path, meta_path, lock = folder / f"{key}.pt2", folder / f"{key}.json", folder / f"{key}.lock"
    with _locked(lock, exclusive=False):
        digest = _verified(path, meta_path, key)
        if digest is not None:
            return _cached_load(path, digest, device)
    with _locked(lock, exclusive=True):
        digest = _verified(path, meta_path, key)  # another process may have built it meanwhile
        if digest is None:
            name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
            note(f"first use of {label} ({name}) on this machine: compiling it once for every image size "
                 f"(about a minute on 2 cores); later runs reuse it")
            start = time.perf_counter()
            tmp = folder / f".{key}.{os.getpid()}.tmp.pt2"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                build_package(module, dtype, device, tmp)
                build_count += 1
                digest = sha256_file(tmp)
                os.replace(tmp, path)
            except Exception as exc:  # compilers fail in many ways; one line, the caller falls back
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                raise InstyleError(f"compiling {label} failed ({type(exc).__name__}: {first})") from None
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            atomic_write_text(meta_path, json.dumps({"key": key, "sha256": digest, "parts": parts,
                                                     "seconds": round(time.perf_counter() - start, 1)}, indent=1))
            note(f"compiled in {time.perf_counter() - start:.0f} s, cached in {folder}")
        return _cached_load(path, digest, device)


def _cached_load(path: Path, digest: str, device: torch.device) -> Any:
    tag = f"{path}|{digest}"
    if tag not in _LOADED:
        _LOADED[tag] = _load_package(path, device)
    return _LOADED[tag]


def package_of(run: Any) -> tuple[Path, str] | None:
    """The verified package file and its sha256 behind a callable ``load_or_build`` returned."""
    for tag, loaded in _LOADED.items():
        if loaded is run:
            path, digest = tag.rsplit("|", 1)
            return Path(path), digest
    return None


def pad_for(x: Tensor, multiple: int, min_size: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """``instyle.models.layers.pad_to_multiple``'s padding, returned with its amounts so it can be undone."""
    amounts, mode = padding_for(*x.shape[-2:], multiple, min_size)
    if not any(amounts):
        return x, amounts
    return F.pad(x, amounts, mode=mode), amounts


def cached_choice(parts: dict[str, Any]) -> dict[str, Any] | None:
    """A validated ``auto`` pick for these parts, if one was recorded and its record is intact."""
    key = entry_key(parts)
    data = read_json(compiled_dir() / "validated" / f"{key}.json")
    if data is None or data.get("key") != key or not isinstance(data.get("backend"), str):
        return None
    body = {k: v for k, v in data.items() if k != "sha256"}
    if data.get("sha256") != hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest():
        return None
    return data


def record_choice(parts: dict[str, Any], backend: str, psnr_db: float, ms: dict[str, float] | None = None) -> None:
    """Keep ``auto``'s pick (atomically, with a checksum); a read-only cache only costs a revalidation.
    ``ms``: the candidates' timings, kept for people reading the record."""
    key = entry_key(parts)
    body = {"key": key, "backend": backend, "psnr": None if psnr_db == float("inf") else round(psnr_db, 2),
            "ms": {k: round(v, 1) for k, v in (ms or {}).items()}, "parts": parts}
    body["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    with contextlib.suppress(OSError):
        atomic_write_text(compiled_dir() / "validated" / f"{key}.json", json.dumps(body, indent=1))


def forget_choice(parts: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        (compiled_dir() / "validated" / f"{entry_key(parts)}.json").unlink()

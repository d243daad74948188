"""``instyle stylize PHOTO -s STYLE -o OUT`` without importing torch, once a run on this machine has
compiled the style: the second run and every later one.

Importing torch takes about a second on a 2-core machine (1.07-1.10 s on the AMX Xeon of
docs/benchmarks.md), more than the fast network itself, and a plain stylize needs none of it: the
AOT-compiled package (``instyle.inference.compiled``) is a shared library with a C interface. After
a plain ``instyle stylize`` whose ``auto`` pick was a compiled package, the CLI writes a *fast start
record* (``record``): the model file's sha256, the package's library (extracted from the ``.pt2``
once) and its sha256, the padding rule, and the machine key that the package was built for. A
later plain call (``try_stylize``) checks all of it without torch (torch's version from its
installed metadata, the CPU's flags from /proc/cpuinfo), loads ``libtorch_cpu`` (a quarter of a
second) and the library with ctypes, and runs the same graph on the same padded pixels, so the file
it writes is byte-for-byte the one the torch path writes (tests/test_compiled_cache.py).

Where ``auto`` picked ONNX Runtime (CPUs without AMX, where it is usually the fastest validated
path), the record names the cached, checksummed ONNX graph instead, and the later call opens it in
ONNX Runtime with the torch path's options (``instyle.inference.ortsession``): no torch either,
the same bytes out (tests/test_faststart.py).

Anything else, including any flag, a folder, a large image that would be tiled, a changed model
file, a damaged record or library, another torch or CPU, returns ``None`` before any output is
written, and the normal path runs. ``INSTYLE_FASTSTART=0`` (or ``INSTYLE_AOT=0``) turns it off.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from instyle.core.cpu import cpu_features, physical_cores_available
from instyle.core.files import atomic_path, atomic_write_text, cache_dir, check_output_path, sha256_file
from instyle.core.padding import padding_for
from instyle.core.version import __version__
from instyle.data.images import DEFAULT_MAX_PIXELS, RGB_PROFILE_MODES, load_image, save_image
from instyle.inference.ortsession import open_session
from instyle.inference.outputs import plan_outputs

FORMAT = 2
_ENGINE_FILES = {"aoti": "library", "onnxruntime": "graph"}  # engine -> the record's checked file
_STYLE_FLAGS = ("-s", "--style", "-m", "--model")
_OUTPUT_FLAGS = ("-o", "--output")


def _folder() -> Path:
    return cache_dir() / "compiled" / "faststart"


def _record_path(model: Path) -> Path:
    key = hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:32]
    return _folder() / f"{key}.json"


def machine() -> dict[str, Any]:
    """What the package was built for, as far as it can be known without importing torch."""
    return {"torch": _version("torch"), "onnxruntime": _version("onnxruntime"), "instyle": __version__,
            "python": platform.python_version(), "arch": platform.machine(), "cpu": cpu_features()}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def record(model: Path, package: Path, package_sha: str, multiple: int, min_size: int, threads: int,
           limits: dict[str, int]) -> None:
    """Written by the torch path after a plain stylize with a compiled package (best effort: a
    read-only cache or an odd package only costs later runs their torch import)."""
    with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile):
        with zipfile.ZipFile(package) as z:
            (name,) = [n for n in z.namelist() if n.endswith(".so")]
            data = z.read(name)
        digest = hashlib.sha256(data).hexdigest()
        library = _folder() / f"{package_sha[:32]}.so"
        if not library.is_file() or sha256_file(library) != digest:
            library.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(library) as tmp:
                Path(tmp).write_bytes(data)
        _write(model, {"engine": "aoti", "library": str(library), "library_sha256": digest, "multiple": multiple,
                       "min_size": min_size, "threads": threads, "limits": limits})


def record_onnx(model: Path, graph: Path, graph_sha: str, min_side: int, threads: int,
                limits: dict[str, int]) -> None:
    """The same after a plain stylize whose ``auto`` pick was ONNX Runtime (CPUs without AMX): the
    later call runs the cached, checked graph in ONNX Runtime, which needs no torch either."""
    with contextlib.suppress(OSError, ValueError):
        if graph.is_file() and sha256_file(graph) == graph_sha:
            _write(model, {"engine": "onnxruntime", "graph": str(graph), "graph_sha256": graph_sha,
                           "min_side": min_side, "threads": threads, "limits": limits})


def _write(model: Path, engine: dict[str, Any]) -> None:
    body = {"format": FORMAT, "model": str(model.resolve()), "model_sha256": sha256_file(model), **engine,
            "machine": machine()}
    body["sha256"] = _digest(body)
    _folder().mkdir(parents=True, exist_ok=True)
    atomic_write_text(_record_path(model), json.dumps(body, indent=1))


def _parse(argv: list[str]) -> tuple[str, str, str] | None:
    """(input, style, output) for exactly ``stylize INPUT -s STYLE -o OUT`` in any order, else None."""
    if not argv or argv[0] != "stylize":
        return None
    inputs, style, output = [], None, None
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        if arg in _STYLE_FLAGS + _OUTPUT_FLAGS:
            if not rest or (arg in _STYLE_FLAGS and style is not None) or (arg in _OUTPUT_FLAGS and output is not None):
                return None
            value = rest.pop(0)
            style, output = (value, output) if arg in _STYLE_FLAGS else (style, value)
        elif arg.startswith("-"):
            return None  # any other flag (or --style=X): the normal path
        else:
            inputs.append(arg)
    if len(inputs) != 1 or style is None or output is None:
        return None
    return inputs[0], style, output


def _model_path(style: str) -> Path:
    """``instyle.zoo.resolve_model``'s rule, without importing the zoo (it imports the models)."""
    path = Path(style)
    if path.suffix == ".safetensors" or path.exists():
        return path
    spec = importlib.util.find_spec("instyle.zoo")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / f"{style}.safetensors"


def _load_record(model: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(_record_path(model).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    body = {k: v for k, v in data.items() if k != "sha256"}
    if data.get("sha256") != _digest(body) or data.get("machine") != machine():
        return None
    if data.get("model") != str(model.resolve()) or sha256_file(model) != data.get("model_sha256"):
        return None
    engine = data.get("engine")
    if engine not in _ENGINE_FILES:
        return None
    key = _ENGINE_FILES[engine]
    artefact = Path(data[key])
    if engine == "onnxruntime":  # read once: the bytes hashed here are the bytes the session runs
        try:
            graph = artefact.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(graph).hexdigest() != data.get(f"{key}_sha256"):
            return None
        data["graph_bytes"] = graph
    elif not artefact.is_file() or sha256_file(artefact) != data.get(f"{key}_sha256"):
        return None
    if data.get("threads") != _threads():  # reductions split by thread: the same count, the same bytes
        return None
    return data


def _threads() -> int | None:
    """The intra-op thread count torch would take in this process: ``OMP_NUM_THREADS`` or the
    physical cores it may run on. The torch path records its own; a mismatch (another affinity,
    another setting) sends the call down the torch path, which records again."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env:
        return int(env) if env.isdigit() and int(env) > 0 else None
    return physical_cores_available()


class _Package:
    """The compiled library run through AOTInductor's C interface, tensors made by torch's C shim."""

    def __init__(self, library: Path, threads: int):
        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.submodule_search_locations:
            raise OSError("torch is not installed")
        lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # what torch would use here (``_threads``)
        ctypes.CDLL(str(lib / "libc10.so"), mode=ctypes.RTLD_GLOBAL)
        shim = ctypes.CDLL(str(lib / "libtorch_cpu.so"), mode=ctypes.RTLD_GLOBAL)
        model = ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
        vp, vpp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
        i64p = ctypes.POINTER(ctypes.c_int64)
        model.AOTInductorModelContainerCreateWithDevice.argtypes = [vpp, ctypes.c_size_t, ctypes.c_char_p,
                                                                     ctypes.c_char_p]
        model.AOTInductorModelContainerRun.argtypes = [vp, vpp, ctypes.c_size_t, vpp, ctypes.c_size_t, vp, vp]
        model.AOTInductorModelContainerDelete.argtypes = [vp]
        shim.aoti_torch_create_tensor_from_blob.argtypes = [vp, ctypes.c_int64, i64p, i64p, ctypes.c_int64,
                                                            ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, vpp]
        shim.aoti_torch_get_data_ptr.argtypes = [vp, vpp]
        shim.aoti_torch_get_sizes.argtypes = [vp, ctypes.POINTER(i64p)]
        shim.aoti_torch_get_strides.argtypes = [vp, ctypes.POINTER(i64p)]
        shim.aoti_torch_get_dtype.argtypes = [vp, ctypes.POINTER(ctypes.c_int32)]
        shim.aoti_torch_delete_tensor_object.argtypes = [vp]
        self.model, self.shim = model, shim
        self.container = vp()
        if model.AOTInductorModelContainerCreateWithDevice(ctypes.byref(self.container), 1, b"cpu", None):
            raise OSError("the compiled package did not load")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) float32 C-contiguous in -> (1, 3, H, W) float32 out (a copy)."""
        shim = self.shim
        f32 = shim.aoti_torch_dtype_float32()
        sizes = (ctypes.c_int64 * 4)(*x.shape)
        strides = (ctypes.c_int64 * 4)(*(s // x.itemsize for s in x.strides))
        handle = ctypes.c_void_p()
        if shim.aoti_torch_create_tensor_from_blob(x.ctypes.data, 4, sizes, strides, 0, f32,
                                                    shim.aoti_torch_device_type_cpu(), 0, ctypes.byref(handle)):
            raise OSError("could not wrap the input")
        inputs, outputs = (ctypes.c_void_p * 1)(handle), (ctypes.c_void_p * 1)()
        if self.model.AOTInductorModelContainerRun(self.container, inputs, 1, outputs, 1, None, None):
            raise OSError("the compiled package failed")
        out = outputs[0]
        try:
            dtype, ptr = ctypes.c_int32(), ctypes.c_void_p()
            shp, st = ctypes.POINTER(ctypes.c_int64)(), ctypes.POINTER(ctypes.c_int64)()
            shim.aoti_torch_get_dtype(out, ctypes.byref(dtype))
            shim.aoti_torch_get_data_ptr(out, ctypes.byref(ptr))
            shim.aoti_torch_get_sizes(out, ctypes.byref(shp))
            shim.aoti_torch_get_strides(out, ctypes.byref(st))
            shape, step = [shp[i] for i in range(4)], [st[i] for i in range(4)]
            if dtype.value != f32 or shape != list(x.shape) or min(step) < 0:
                raise OSError("unexpected output from the compiled package")
            extent = 1 + sum((n - 1) * s for n, s in zip(shape, step, strict=True))
            flat = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(extent,))
            return np.lib.stride_tricks.as_strided(flat, shape=shape, strides=[4 * s for s in step]).copy()
        finally:
            shim.aoti_torch_delete_tensor_object(out)


def _stylize_pixels(rgb: Image.Image, rec: dict[str, Any]) -> Image.Image:
    """``Stylizer.__call__`` with no controls, as the AOT runner computes it: the same padding,
    the same graph, the same crop, clamp and rounding (``tensor_to_pil``)."""
    arr = np.asarray(rgb if rgb.mode == "RGB" else rgb.convert("RGB"), dtype=np.uint8)
    x = arr.astype(np.float32) / np.float32(255.0)
    h, w = x.shape[:2]
    (left, right, top, bottom), mode = padding_for(h, w, int(rec["multiple"]), int(rec["min_size"]))
    x = np.pad(x, ((top, bottom), (left, right), (0, 0)), mode="reflect" if mode == "reflect" else "edge")
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
    y = _Package(Path(rec["library"]), int(rec["threads"]))(x)[0, :, top : top + h, left : left + w]
    return _to_image(y)


def _to_image(y: np.ndarray) -> Image.Image:
    """(3, H, W) float32 -> RGB, rounded as ``tensor_to_pil`` does."""
    y = np.rint(np.clip(np.nan_to_num(y, nan=0.0), 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(y.transpose(1, 2, 0)))


def _stylize_onnx(rgb: Image.Image, rec: dict[str, Any]) -> Image.Image:
    """``OnnxRunner`` without torch: the graph pads and crops itself; it runs the bytes that
    ``_load_record`` hashed (``rec["graph_bytes"]``), not a second read of the file."""
    arr = np.asarray(rgb if rgb.mode == "RGB" else rgb.convert("RGB"), dtype=np.uint8)
    x = np.ascontiguousarray((arr.astype(np.float32) / np.float32(255.0)).transpose(2, 0, 1)[None])
    session = open_session(rec["graph_bytes"], int(rec["threads"]))
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    return _to_image(np.asarray(y, dtype=np.float32)[0])


def try_stylize(argv: list[str]) -> int | None:
    """Run a plain ``instyle stylize`` without torch, or return ``None`` (nothing written) so the
    normal path runs. See the module docstring for when it applies."""
    if os.environ.get("INSTYLE_FASTSTART") == "0" or os.environ.get("INSTYLE_AOT") == "0":
        return None
    parsed = _parse(argv)
    if parsed is None:
        return None
    source, style, output = parsed
    try:
        model = _model_path(style)
        rec = _load_record(model) if model.is_file() and Path(source).is_file() else None
        if rec is None:
            return None
        ((src, dst),) = plan_outputs([source], output)
        check_output_path(dst)
        loaded = load_image(src, max_pixels=DEFAULT_MAX_PIXELS)
        w, h = loaded.size
        max_side = rec["limits"].get("max_side")  # absent: the engine has no side limit (ONNX)
        if h * w > rec["limits"]["tile_pixels"] or (max_side is not None and max(h, w) > max_side):
            return None  # tiled or eager in the torch path
        if rec["engine"] == "onnxruntime":
            if min(h, w) < rec["min_side"]:
                return None  # eager in the torch path
            result = _stylize_onnx(loaded.rgb, rec)
        else:
            result = _stylize_pixels(loaded.rgb, rec)
        if loaded.rgb.info.get("icc_profile") and loaded.rgb.mode in RGB_PROFILE_MODES:
            result.info["icc_profile"] = loaded.rgb.info["icc_profile"]
    except Exception:  # anything unexpected: the normal path decides (and explains) instead
        return None
    save_image(result, dst, alpha=loaded.alpha, icc_profile=loaded.icc_profile)
    print(f"wrote {dst}")
    return 0

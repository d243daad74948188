"""The CPU's instruction-set features, read without importing torch (the fast start path needs them)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

_FEATURE_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                  "amx_bf16", "amx_int8", "amx_tile", "fma", "f16c")


def cpu_features() -> list[str]:
    """The CPU flags that change which kernels inductor generates (part of every cache key)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return [platform.processor() or "unknown"]
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return [f for f in _FEATURE_FLAGS if f in flags]


def physical_cores_available() -> int:
    """Physical cores among the CPUs this process may run on: what torch's intra-op pool uses by
    default (``OMP_NUM_THREADS`` aside), computed without torch."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        blocks = Path("/proc/cpuinfo").read_text().split("\n\n")
    except OSError:
        return len(allowed)
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if fields.get("processor", "").isdigit() and int(fields["processor"]) in allowed:
            cores.add((fields.get("physical id", "0"), fields.get("core id", fields["processor"])))
    return len(cores) or len(allowed)

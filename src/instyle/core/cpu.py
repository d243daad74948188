"""The CPU's instruction-set features, read without importing torch (the fast start path needs them)."""

from __future__ import annotations

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

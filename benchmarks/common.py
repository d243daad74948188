"""Small helpers the benchmark scripts share (benchmarks/ is on sys.path when a script here runs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def best_seconds(fn: Callable[[], object], rounds: int) -> float:
    """Fastest of ``rounds`` timed calls after one untimed warm-up call: the least disturbed run on a
    noisy machine, for kernel-level comparisons (whole jobs report interleaved medians instead)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def save_table(text: str, out: str | Path, name: str) -> None:
    """Keep a markdown table as ``out/name`` (the folder is made if missing)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text + "\n")


def print_and_save(text: str, out: str | Path, name: str) -> None:
    print(text)
    save_table(text, out, name)

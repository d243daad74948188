"""Held-out loss against wall-clock time, from the logs ``instyle train`` writes (MODEL.log.jsonl).

Training speed only matters through what a run reaches in a given time, so this is the plot to
compare recipes, precisions or machines with. Held-out points carry the time since the start of
training (evaluation included); logs of earlier versions get it interpolated from the training records.

    python benchmarks/plot_wallclock.py runs/a/m.log.jsonl runs/b/m.log.jsonl --labels "H200" "CPU" -o curve.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def held_out_curve(log: Path) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, held-out total) of one training log."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["elapsed"]) for r in records if not r.get("holdout") and "elapsed" in r]
    held = [r for r in records if r.get("holdout") and r.get("style_index", 0) == 0]
    if not held:
        raise SystemExit(f"{log}: no held-out records (was the run started with --holdout 0?)")
    steps = np.array([r["step"] for r in held], dtype=float)
    if all("elapsed" in r for r in held):
        seconds = np.array([r["elapsed"] for r in held], dtype=float)
    else:
        s, t = np.array(train, dtype=float).T
        seconds = np.interp(steps, s, t)
    return seconds, np.array([r["total"] for r in held], dtype=float)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", type=Path)
    p.add_argument("--labels", nargs="*", default=None)
    p.add_argument("--title", default="held-out loss against training time")
    p.add_argument("-o", "--output", required=True, type=Path)
    a = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = a.labels or [log.parent.name for log in a.logs]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    for log, label in zip(a.logs, labels, strict=True):
        seconds, total = held_out_curve(log)
        minutes = seconds.max() > 600
        ax.plot(seconds / 60 if minutes else seconds, total, marker="o", ms=3, label=label)
        ax.set_xlabel("training time (minutes)" if minutes else "training time (s)")
    ax.set_ylabel("held-out loss (total)")
    ax.set_title(a.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    a.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.output)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()

"""Held-out loss against wall-clock time, from the logs ``instyle train`` writes (MODEL.log.jsonl).

Training speed only matters through what a run reaches in a given time, so this is the plot to
compare recipes, precisions or machines with. Held-out points carry the time since the start of
training (evaluation included); logs of earlier versions get it interpolated from the training records.

    python benchmarks/plot_wallclock.py runs/a/m.log.jsonl runs/b/m.log.jsonl --labels "H200" "CPU" -o curve.png

``--panels`` names a panel for each log: one subplot per panel (say, per painting), a label keeps
its colour across panels.
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


def plot(logs: list[Path], labels: list[str], output: Path, title: str, panels: list[str] | None = None) -> None:
    """One subplot per panel (all logs in one without ``panels``), minutes on x when a run passes 10."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(panels or [title]))
    where = panels or [title] * len(logs)
    curves = [held_out_curve(log) for log in logs]
    minutes = max(s.max() for s, _ in curves) > 600
    colours = {label: f"C{i}" for i, label in enumerate(dict.fromkeys(labels))}
    fig, axes = plt.subplots(1, len(names), figsize=(6.4 if len(names) == 1 else 4.2 * len(names), 3.6), dpi=120,
                             squeeze=False)
    for (seconds, total), label, panel in zip(curves, labels, where, strict=True):
        ax = axes[0][names.index(panel)]
        ax.plot(seconds / 60 if minutes else seconds, total, marker="o", ms=3, label=label, color=colours[label])
    for ax, name in zip(axes[0], names, strict=True):
        ax.set_xlabel("training time (minutes)" if minutes else "training time (s)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("held-out loss (total)")
    if len(names) > 1:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    print(f"wrote {output}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", type=Path)
    p.add_argument("--labels", nargs="*", default=None)
    p.add_argument("--panels", nargs="*", default=None, help="a panel name for each log (one subplot each)")
    p.add_argument("--title", default="held-out loss against training time")
    p.add_argument("-o", "--output", required=True, type=Path)
    a = p.parse_args()
    if a.panels and len(a.panels) != len(a.logs):
        raise SystemExit(f"--panels: {len(a.panels)} names for {len(a.logs)} logs")
    plot(a.logs, a.labels or [log.parent.name for log in a.logs], a.output, a.title, a.panels)


if __name__ == "__main__":
    main()

"""Norm-only adaptation against full fine-tuning and training from scratch (issue #22): the table,
the held-out curves and a picture, from the runs' logs.

Layout: ``RUNS/<painting>/<method>.log.jsonl`` (+ the model file, or for a run stopped by hand its
``.ckpt.safetensors``), methods ``adapt`` (``--adapt``), ``finetune`` (``--init`` a zoo style) and
``scratch`` (the defaults). The runs themselves are ``instyle train`` commands (docs/adaptation.md).

    python benchmarks/adaptation.py runs/adapt --photo src/instyle/assets/demo/chelsea.jpg -o docs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_and_save
from plot_wallclock import held_out_curve, plot

METHODS = {"adapt": "norm-only (--adapt)", "finetune": "full fine-tune (--init)", "scratch": "from scratch"}
MARKS = (300.0, 600.0)  # the held-out loss reached after 5 and 10 minutes


def loss_at(seconds: np.ndarray, total: np.ndarray, t: float) -> float | None:
    """The held-out loss of the last evaluation at or before ``t`` seconds (None: none yet)."""
    before = total[seconds <= t]
    return float(before[-1]) if len(before) else None


def steps_of(log: Path) -> list[int]:
    """Held-out evaluation steps counted from this run's start (``--init`` counts on from its model's)."""
    card = log.with_name(log.name.replace(".log.jsonl", ".json"))
    start = json.loads(card.read_text()).get("init", {}).get("steps", 0) if card.is_file() else 0
    return [json.loads(line)["step"] - start for line in log.read_text().splitlines() if '"holdout"' in line]


def runs(root: Path) -> list[tuple[str, str, Path]]:
    """(painting, method, log) for every run found, paintings in name order, methods in METHODS order."""
    return [(d.name, m, d / f"{m}.log.jsonl") for d in sorted(p for p in root.iterdir() if p.is_dir())
            for m in METHODS if (d / f"{m}.log.jsonl").is_file()]


def table(found: list[tuple[str, str, Path]]) -> str:
    head = ("| painting | method | steps | training time | s/step | held-out at 5 min | at 10 min | last "
            "| last vs from scratch's last |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    scratch = {p: held_out_curve(log)[1][-1] for p, m, log in found if m == "scratch"}
    for painting, method, log in found:
        seconds, total = held_out_curve(log)
        steps = steps_of(log)
        cells = [f"{v:.2f}" if v is not None else "–" for v in (loss_at(seconds, total, t) for t in MARKS)]
        ref = scratch.get(painting)
        vs = f"{100 * (total[-1] / ref - 1):+.0f}%" if ref and method != "scratch" else ""
        lines.append(f"| {painting} | {METHODS[method]} | {steps[-1]} | {seconds[-1] / 60:.1f} min "
                     f"| {seconds[-1] / steps[-1]:.1f} | {cells[0]} | {cells[1]} | {total[-1]:.2f} | {vs} |")
    return "\n".join(lines)


def _weights(run: Path) -> torch.nn.Module:
    """The run's model: its written file, else (a run stopped by hand) its last checkpoint's weights."""
    from safetensors.torch import load_file

    from instyle.models import create_model
    from instyle.models.modelfile import load_model

    if run.with_suffix(".safetensors").is_file():
        return load_model(run.with_suffix(".safetensors"))[0]
    ckpt = Path(f"{run}.ckpt.safetensors")
    model = create_model("johnson")
    model.load_state_dict({k[6:]: v.float() for k, v in load_file(str(ckpt)).items() if k.startswith("model.")})
    return model.eval().requires_grad_(False).to(torch.float32)


def picture(root: Path, found: list[tuple[str, str, Path]], photo: Path, out: Path, size: int) -> None:
    """Rows: painting, then each method's result on ``photo`` (never trained on) at ``size`` px."""

    from instyle.data.fetch import style_path
    from instyle.data.grid import contact_sheet
    from instyle.data.images import load_image, pil_to_tensor, tensor_to_pil

    img = load_image(photo).rgb
    img.thumbnail((size, size))
    x = pil_to_tensor(img).unsqueeze(0)
    rows, labels = [], []
    for painting in dict.fromkeys(p for p, _, _ in found):
        row = [load_image(style_path(painting)).rgb]
        for method in METHODS:
            run = root / painting / method
            if not Path(f"{run}.log.jsonl").is_file():
                row.append(img.convert("L").convert("RGB"))  # not run: grey photo
                continue
            with torch.no_grad():
                row.append(tensor_to_pil(_weights(run)(x).clamp(0, 1)[0]))
        rows.append(row)
        labels.append(painting)
    sheet = contact_sheet(rows, col_labels=["painting", *METHODS.values()], row_labels=labels, cell=size)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=88)
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path)
    p.add_argument("--photo", type=Path, default=None, help="a photo none of the runs trained on")
    p.add_argument("--size", type=int, default=320)
    p.add_argument("-o", "--out", type=Path, default=Path("docs"))
    a = p.parse_args()
    found = runs(a.runs)
    if not found:
        raise SystemExit(f"{a.runs}: no runs (expected <painting>/<method>.log.jsonl)")
    print_and_save(table(found), a.out, "adaptation-table.md")
    plot([log for _, _, log in found], [METHODS[m] for _, m, _ in found], a.out / "adaptation-curves.png",
         "held-out loss against training time (2-core AMD EPYC Zen 3, fp32)", [p for p, _, _ in found])
    if a.photo:
        picture(a.runs, found, a.photo, a.out / "adaptation-results.jpg", a.size)


if __name__ == "__main__":
    main()

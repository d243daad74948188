"""Ship the zoo: copy trained models into ``src/instyle/zoo`` as fp16 with their catalogue entries,
and draw the held-out loss curves of every shipped style into ``docs/zoo-curves.png``.

The models come from two joint runs (all styles share one network's convolutions; see
``instyle.models.norms``), made by the commands recorded in each card's ``command``:

    python scripts/build_zoo.py --run runs/zoo/johnson-long --fast-run runs/zoo/johnson-half-long

``strength``/``scale`` were tuned by eye on held-out 1024 px photos (docs/zoo.md says how).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# slug of the fetched style -> (one-line description, strength, stroke scale)
CATALOG: dict[str, tuple[str, float, float]] = {
    "starry-night": ("Van Gogh, The Starry Night (1889): swirling blue and yellow impasto", 1.0, 1.0),
    "great-wave": ("Hokusai, The Great Wave off Kanagawa (1831): Prussian blue, cream and ink lines", 0.9, 1.0),
    "composition-viii": ("Kandinsky, Composition VIII (1923): circles, lines and flat colour fields", 1.0, 1.0),
    "cafe-terrace": ("Van Gogh, Café Terrace at Night (1888): lamp-lit yellow against night blue", 1.0, 1.0),
    "night-cafe": ("Van Gogh, The Night Café (1888): blood red and green under gas light", 1.0, 1.0),
    "moulin-de-la-galette": ("Renoir, Bal du moulin de la Galette (1876): dappled impressionist light", 1.0, 1.0),
    "ejiri": ("Hokusai, Ejiri in Suruga Province (c. 1832): windswept woodblock, muted blues", 1.0, 1.0),
    "mona-lisa": ("Leonardo, Mona Lisa (1503–19): sfumato, amber varnish and fine craquelure", 1.0, 1.0),
    "leopard": ("Leopard-skin pattern (GIMP pattern): a texture, not a painting", 0.8, 1.0),
}
FAST = ("starry-night", "great-wave")  # also shipped as johnson-half, named SLUG-fast
FAST_NOTE = "(half-width net: 2.9x faster, 130 vs 380 ms at 512 px, bf16, 2-core CPU)"  # measured, see README
RUN_NOTES = ("Trained in two stages. Steps 1-1600: the first joint run; its steps 1-800 ran without gradient "
             "clipping, it collapsed to flat outputs at step ~830 and was resumed from the step-800 checkpoint "
             "with --grad-clip 500. Steps 1601-3800: continued from those weights with --init (Adam restarted, "
             "100-step learning-rate warm-up), the rate annealed to 0 over the last 800 steps (--decay 800). The "
             "recorded command is the equivalent single run (clipping and decay from the start): it reproduces "
             "the recipe, not these exact weights.")
FAST_RUN_NOTES = ("Trained in two stages: steps 1-500 by the first joint run, steps 501-1100 continued from its "
                  "weights with --init (Adam restarted, 100-step warm-up) and the learning rate annealed to 0 over "
                  "the last 300 steps (--decay 300). The recorded command is the equivalent single run.")

# What we saw looking at held-out 1024 px photos at full size (filled in by whoever trains the zoo).
REVIEW = Path(__file__).with_name("zoo_review.md")

HEADER = """# The model zoo

`instyle styles` lists the shipped styles; `instyle stylize PHOTO -s NAME -o OUT` and
`Stylizer.load(NAME)` use them. Each is a `.safetensors` file (fp16) in `src/instyle/zoo/` with its
model card `NAME.json`: the painting's title, the package it comes from and its license, the exact
`instyle train` command (`command`), the held-out loss curve (`metrics.holdout_curve`: 8 photos never
trained on, eval mode, at every evaluation), wall time, machine, and the `defaults` (strength,
stroke scale) tuned by eye. `instyle retrain NAME -o DIR` redoes the run on your machine.

This file is written by `scripts/build_zoo.py`; the review notes come from `scripts/zoo_review.md`.

## How the zoo was trained

All styles of one generator were trained in **one joint run**: the styles share every convolution
and differ only in their instance-norm scale and shift (conditional instance normalization, Dumoulin
et al. 2017 — the IN layer is where a style lives). Training images take turns through the styles.
At the end each style is written out as an ordinary single-style network (bit-for-bit the joint
network with that style's scale and shift), so shipped files are plain `johnson` / `johnson-half`
models. We did it this way for compute: on the 2-core CPU a 256 px, batch-4 step of the full
`johnson` takes about 2.7 s, so nine separate runs of 3800 steps would take about a day; the joint
run took about three hours (below). The price is that each style saw about 1/9 of the 15 200
training crops, some 1700 each.

Styles with **stroke rows** (the table's last column; `--stroke`, docs/strokes.md) were then
fine-tuned from their shipped single-row model with `--strokes`: each row is its own scale and
shift, one per stroke size, and a size between two rows interpolates them. Their held-out numbers
are at the default stroke, under the fine-tune's own objective (`johnson-balanced`), so they do not
compare with the other rows of the table.

![held-out loss curves](zoo-curves.png)

Dotted lines: where a run was continued from its weights (`--init`, see the cards' notes).
The held-out style terms include each style's `--style-scales` multiplier (`leopard` 0.1,
`mona-lisa` 3), so compare a curve with itself, not across styles. In the last 800 steps the learning
rate anneals to 0 and the curves flatten; a longer run (a GPU's job) would still lower them.

## Shipped styles

"""


def write_doc(cards: dict[str, dict], path: Path) -> None:
    review = REVIEW.read_text() if REVIEW.is_file() else "(no review notes yet)\n"
    path.write_text(HEADER + zoo_table(cards) + "\nRuns (one per generator; joint runs share the time):\n\n"
                    + runs_summary(cards) + "\n## Looked at, at full size\n\n" + review)


def curves_figure(cards: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, card in cards.items():
        curve = card["metrics"]["holdout_curve"]
        if card.get("strokes"):  # one row per stroke at each step: draw the default stroke's
            curve = [r for r in curve if r.get("stroke") == card["defaults"].get("stroke")]
        steps = [r["step"] for r in curve]
        style = "--" if card["arch"] == "johnson-half" else "-"
        for ax, term in zip(axes, ("total", "style", "content"), strict=True):
            ax.plot(steps, [r[term] for r in curve], style, label=name)
    restarts = {c["init"]["steps"] for c in cards.values() if c.get("init")}
    for ax, term in zip(axes, ("total", "style", "content"), strict=True):
        for step in restarts:  # where a run was continued with --init
            ax.axvline(step, color="grey", lw=0.8, ls=":")
        ax.set_title(f"held-out {term} loss (8 photos, eval mode)")
        ax.set_xlabel("training step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def zoo_table(cards: dict[str, dict]) -> str:
    """The markdown table of docs/zoo.md, from the shipped cards only."""
    lines = ["| name | net | style (source package, license) | steps | held-out style / content | strength | scale "
             "| stroke rows |", "|---|---|---|---:|---|---:|---:|---|"]
    for name, card in cards.items():
        st, final = card["style"], _final_at_default(card)
        d = card["defaults"]
        rows = ", ".join(f"{s:g}" for s in card["strokes"]) if card.get("strokes") else "-"
        lines.append(f"| `{name}` | {card['arch']} | {st.get('title', st['file'])} ({st.get('package', '?')}, "
                     f"{st.get('license', '?')}) | {card['steps']} | {final['style']:.1f} / {final['content']:.1f} | "
                     f"{d['strength']:g} | {d['scale']:g} | {rows} |")
    return "\n".join(lines) + "\n"


def _final_at_default(card: dict) -> dict:
    """The last held-out point; for a model with stroke rows, the one at its default stroke (each
    row is evaluated separately, and the card's ``holdout_final`` is simply the last row's)."""
    curve = card["metrics"].get("holdout_curve") or []
    stroke = card["defaults"].get("stroke")
    if card.get("strokes") and curve:
        last = [r for r in curve if r["step"] == curve[-1]["step"] and r.get("stroke") == stroke]
        if last:
            return last[0]
    return card["metrics"]["holdout_final"]


def runs_summary(cards: dict[str, dict]) -> str:
    """One paragraph per training run (joint runs share one wall time)."""
    runs: dict[str, dict] = {}
    for card in cards.values():
        runs.setdefault(card["train"]["output"], card)
    out = []
    for card in runs.values():
        n = card.get("joint", {}).get("styles")
        init = card.get("init") or {}
        steps = (f"{card['steps'] - init['steps']} steps from `{init['file']}` (itself {init['steps']} steps), "
                 if init.get("steps") and card.get("strokes") else f"{card['steps']} steps ")
        out.append(f"* `{card['arch']}`, {len(n) if n else 1} style(s), {steps}of batch "
                   f"{card['train']['batch']} at {card['train']['size']} px: {card['wall_time_s'] / 60:.0f} min on "
                   f"{card['machine']} ({card['device']}, {card['precision']}).\n  `{card['command']}`")
    return "\n".join(out) + "\n"


def main() -> None:
    from instyle.training.ship import ship
    from instyle.zoo import ZOO_DIR

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="folder of the joint johnson run")
    p.add_argument("--docs-only", action="store_true",
                   help="rewrite docs/zoo.md and the curves from the shipped cards (after a model was replaced)")
    p.add_argument("--fast-run", type=Path, default=None, help="folder of the joint johnson-half run")
    p.add_argument("--dest", type=Path, default=ZOO_DIR)
    p.add_argument("--curves", type=Path, default=Path("docs/zoo-curves.png"))
    a = p.parse_args()
    if a.docs_only:
        names = [*CATALOG, *(f"{slug}-fast" for slug in FAST)]
        cards = {n: json.loads((a.dest / f"{n}.json").read_text()) for n in names if (a.dest / f"{n}.json").is_file()}
        curves_figure(cards, a.curves)
        write_doc(cards, Path("docs/zoo.md"))
        print("docs: docs/zoo.md")
        return
    if a.run is None:
        p.error("--run is required (or --docs-only)")
    shipped = {}
    for slug, (desc, strength, scale) in CATALOG.items():
        out = ship(a.run / f"{slug}.safetensors", slug, desc, strength=strength, scale=scale, dest=a.dest,
                   notes=RUN_NOTES)
        shipped[slug] = out
    if a.fast_run is not None:
        for slug in FAST:
            desc, strength, scale = CATALOG[slug]
            out = ship(a.fast_run / f"{slug}.safetensors", f"{slug}-fast", f"{desc} {FAST_NOTE}",
                       strength=strength, scale=scale, dest=a.dest, notes=FAST_RUN_NOTES)
            shipped[f"{slug}-fast"] = out
    cards = {name: json.loads(path.with_suffix(".json").read_text()) for name, path in shipped.items()}
    curves_figure(cards, a.curves)
    write_doc(cards, Path("docs/zoo.md"))
    print("docs: docs/zoo.md")
    for name, path in shipped.items():
        print(f"{name:24s} {path.stat().st_size / 1e6:5.1f} MB  {cards[name]['command'][:90]}…")
    print(f"curves: {a.curves}")


if __name__ == "__main__":
    main()

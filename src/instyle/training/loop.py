"""The training loop: one readable function, nanoGPT style.

One run = one style, or several styles sharing one network (``style`` a list: conditional instance
norm, see ``instyle.models.norms``), which then also writes each style as its own plain model.
The loop is deterministic for a seed (data order, crops and init all derive from it), writes an
atomic checkpoint every ``checkpoint_every`` steps, and ``resume=True`` picks up from it
producing the same batches a non-interrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from instyle.core.errors import InstyleError
from instyle.core.files import refuse_overwriting, sha256_file
from instyle.core.hardware import machine_description, pick_device
from instyle.core.version import __version__
from instyle.data.datasets import CropDataset, infinite_batches
from instyle.losses.diversity import nearest_neighbour_log_distance
from instyle.losses.perceptual import BALANCED, PerceptualLoss, balance_style_layers, get_preset, style_layer_shares
from instyle.losses.temporal import StabilityLoss
from instyle.models import create_model, set_style_index, single_style_state
from instyle.models.card import ModelCard
from instyle.models.layers import with_noise
from instyle.models.modelfile import card_path, load_model, load_weights, read_card, save_model
from instyle.models.norms import broadcast_rows, resampled_rows
from instyle.training.adapt import init_adapted
from instyle.training.checkpoints import check_run_state, load_checkpoint, save_checkpoint
from instyle.training.config import TrainConfig, autocast, resolve_precision
from instyle.training.distributed import (
    average_buffers,
    barrier,
    init_from_env,
    local_device,
    mean_over_ranks,
    sharded_batches,
    shutdown,
)
from instyle.training.guard import StepGuard
from instyle.training.holdout import MAIN_TERMS, center_crops, chunked_content_targets, loss_terms, run_model
from instyle.training.inputs import content_split, load_style_tensor, split_paths, step_generator, style_targets

_RESUME_KEYS = ("style", "arch", "norm", "loss", "size", "batch", "seed", "lr", "content_weight",
                "style_weight", "tv_weight", "style_size", "arch_kwargs", "style_scales", "diversity",
                "diversity_copies", "strokes", "temporal_weight", "temporal_shift", "temporal_noise", "temporal_grain",
                "adapt", "adapt_init")


# ----------------------------------------------------------------------------- the loop


def compiled_step_modules(net: torch.nn.Module, criterion: torch.nn.Module,
                          cuda_graphs: bool = False) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The generator (or its DDP wrapper) and the loss under ``torch.compile`` for the training
    forward (and, through AOTAutograd, backward): fused norms, activations and Gram matrices, fewer
    kernel launches. The first step compiles (about 1.5 minutes on 2 CPU cores); after that an fp32
    step of ``johnson`` ran 1.07x faster on a 2-core AVX2 CPU, where convolutions dominate; the
    launch-bound small steps of a GPU are where it should gain more (docs/benchmarks.md). Several
    styles do not recompile. Under torchrun, 2 gloo processes with and without it logged the same
    loss after 4 steps (within 4e-5, instance and batch norm; checked by hand, too slow for the test
    suite). Held-out evaluation, checkpoints and the written model use the plain modules, which
    share the weights.

    ``cuda_graphs``: inductor's "reduce-overhead" mode, which records each compiled forward and
    backward as CUDA graphs and replays them, one launch per graph instead of hundreds of kernels
    (a batch-4 step on an H200 spent most of its 24 ms launching). The caller must call
    ``torch.compiler.cudagraph_mark_step_begin()`` before each step and read a step's outputs before
    the next one, whose replay reuses their memory. Off CUDA the mode compiles as without it."""
    mode = "reduce-overhead" if cuda_graphs else None
    return torch.compile(net, dynamic=False, mode=mode), torch.compile(criterion, dynamic=False, mode=mode)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, restart: bool = False,
          on_log: Callable[[dict[str, Any]], None] | None = None) -> ModelCard:
    """Train one style network; returns the model card that was written beside the weights.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes its slice of the same global batch
    and DDP averages gradients, so the result matches one process with batch ``cfg.batch``; only
    rank 0 writes the log, checkpoints and the model, and every rank resumes from the checkpoint.
    """
    out_path, ckpt_path, log_path = cfg.paths()
    cfg.validate()
    style_files = cfg.style_files()
    for f in style_files:
        if not Path(f).is_file():
            raise InstyleError(f"{f}: style image not found")
    n_styles = len(style_files)
    rows = cfg.rows  # norm rows: one per style, or one per stroke size of the one style
    if n_styles > 1 and cfg.norm == "none":
        raise InstyleError("several styles share one network through its norm layers; --norm none has none")
    singles = split_paths(cfg) if n_styles > 1 else []  # refuse clashing names before training, not after
    train_files, hold_files = content_split(cfg)
    outputs = [out_path, card_path(out_path), ckpt_path, log_path, *singles, *map(card_path, singles)]
    refuse_overwriting(outputs, [*style_files, *train_files, *hold_files, *([cfg.init] if cfg.init else [])])
    check_run_state(ckpt_path, dataclasses.asdict(cfg), _RESUME_KEYS, resume=resume, restart=restart)
    dist_info = init_from_env(pick_device(cfg.device))
    if cfg.cuda_graphs and dist_info.enabled:  # before any model, loss or data is built
        raise InstyleError("--cuda-graphs does not combine with torchrun (DDP's gradient all-reduce is not "
                           "captured); use --compile")
    if cfg.temporal_weight and dist_info.enabled:
        raise InstyleError("--temporal-weight runs the generator twice per step, which DDP's one-forward "
                           "reducer is not tested with; train it in one process")
    main = dist_info.is_main
    device = local_device(pick_device(cfg.device), dist_info)
    amp_dtype = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)

    model = create_model(cfg.arch, norm=cfg.norm, styles=rows, **cfg.arch_kwargs).train()
    # --adapt: the base's weights, the affine's start, everything else frozen (a resume then loads
    # its checkpoint over them); the optimizer below sees only what still trains.
    adapted = init_adapted(model, cfg.adapt, cfg.adapt_init, {
        "arch": cfg.arch, "norm": cfg.norm, "arch_kwargs": cfg.arch_kwargs}) if cfg.adapt else None
    model = model.to(device)
    loss_cfg = get_preset(cfg.loss)
    for name in ("content_weight", "style_weight", "tv_weight"):
        if getattr(cfg, name) is not None:
            setattr(loss_cfg, name, getattr(cfg, name))
    criterion = PerceptualLoss(loss_cfg, weights=cfg.vgg_weights).to(device)
    criterion.set_style([load_style_tensor(f, size).to(device) for f, size in style_targets(cfg)], cfg.style_scales)
    balance = balance_style_layers(criterion, center_crops(train_files[:8], cfg.size)) \
        if cfg.loss in BALANCED else None
    # the second forward pass exists only with a weight: a plain run is today's, bit for bit
    stability = StabilityLoss(cfg.temporal_weight, cfg.temporal_shift, cfg.temporal_noise,
                              grain=cfg.temporal_grain) if cfg.temporal_weight else None
    guard = StepGuard([p for p in model.parameters() if p.requires_grad], cfg.lr, device,
                      fp16=amp_dtype == torch.float16)
    opt = guard.opt

    dataset = CropDataset(train_files, cfg.size, seed=cfg.seed)
    hold = center_crops(hold_files, cfg.size) if hold_files and main else None

    state: dict[str, Any] = {"step": 0, "start": 0, "elapsed": 0.0, "holdout_curve": [], "last": {}}
    best: dict[str, torch.Tensor] = {}  # weights of the best held-out evaluation so far (keep_best)
    if cfg.init and not resume:
        state.update(init_from_model(model, cfg))
    if resume:
        state = load_checkpoint(ckpt_path, model, opt, best)
        guard.restore(state.get("skipped", 0))
        if main:
            _truncate_log(log_path, state["step"])
    elif main:
        log_path.unlink(missing_ok=True)  # a new run (--restart, or none to continue) starts a new log
        ckpt_path.unlink(missing_ok=True)
    state["config"] = dataclasses.asdict(cfg)
    if adapted:
        state["adapt"] = adapted
    state.setdefault("start", 0)  # checkpoints of earlier versions have none
    end = state["start"] + cfg.iters

    net: torch.nn.Module = model
    pin = device.type == "cuda"  # so the non-blocking copy below does not wait for the GPU (infinite_batches)
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # Buffers are averaged after each step instead of broadcast from rank 0 (see average_buffers).
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      broadcast_buffers=False)
        batches: Iterator[torch.Tensor] = sharded_batches(
            dataset, cfg.batch, cfg.seed, dist_info, num_workers=cfg.workers, start_step=state["step"], pin_memory=pin)
    else:
        batches = infinite_batches(
            dataset, cfg.batch, seed=cfg.seed, num_workers=cfg.workers, start_step=state["step"], pin_memory=pin
        )
    bar = tqdm(total=end, initial=state["step"], disable=not progress or not main, unit="step",
               dynamic_ncols=True, desc=f"{cfg.arch}/{cfg.norm}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: the fastest conv algorithms are found once
    if cfg.cuda_graphs and device.type != "cuda" and main:
        print(f"note: --cuda-graphs needs a CUDA device; on {device.type} the step is compiled without graphs",
              file=sys.stderr)
    compiled = cfg.compile or cfg.cuda_graphs
    fwd_net, fwd_loss = compiled_step_modules(net, criterion, cfg.cuda_graphs) if compiled else (net, criterion)
    t0 = time.perf_counter() - state["elapsed"]
    c0 = time.process_time() - state.get("cpu_s", 0.0)  # CPU time: a paused or crowded run still counts true
    held: dict[str, str] = {}  # the last held-out total, shown beside the training loss terms
    while state["step"] < end:
        if cfg.cuda_graphs:  # the last step's graph outputs (read below, at its log step) may now be reused
            torch.compiler.cudagraph_mark_step_begin()
        x = next(batches).to(device, non_blocking=True)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, state["step"] - state["start"])
        style_index = None
        if rows > 1:  # styles (or stroke rows) take turns image by image along the global data stream
            first = state["step"] * cfg.batch + dist_info.rank * len(x)
            style_index = (torch.arange(first, first + len(x)) % rows).to(device)
            set_style_index(model, style_index)
        photos, inputs, style_index = diversity_inputs(cfg, x, style_index, state["step"], dist_info.rank)
        if style_index is not None and len(photos) != len(x):
            set_style_index(model, style_index)
        with autocast(device, amp_dtype):
            y = fwd_net(inputs)
            terms = fwd_loss(y.float(), photos, style_index)
            if stability is not None:  # its own generator per step: resumed runs see the same views
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state["step"] * 2 + dist_info.rank)
                terms["temporal"] = stability(fwd_net, inputs, y, gen)
                terms["total"] = terms["total"] + terms["temporal"]
        if cfg.diversity:  # the batch holds diversity_copies noise draws per photo, consecutive
            terms = with_entropy(terms, y.float(), cfg.diversity, groups=len(x))
        grad_norm = guard.step(terms["total"], cfg.grad_clip)
        average_buffers(model, dist_info)
        state["step"] += 1
        step = state["step"]
        if step % cfg.log_every == 0 or step == end:
            state["skipped"] = guard.check()  # on CUDA the first look at the skip counts since the last log
            terms = mean_over_ranks(terms, dist_info)
            rec = {"step": step, **{k: round(v.item(), 6) for k, v in terms.items()},
                   "grad_norm": round(float(grad_norm), 4), "elapsed": round(time.perf_counter() - t0, 2)}
            shares = {"step": step, **style_layer_shares(loss_cfg, {k.removeprefix("detail/style/"): v.item()
                                                                      for k, v in terms.items()
                                                                      if k.startswith("detail/style/")})}
            state.setdefault("first_shares", shares)  # unrounded: relu4_3's distances are ~1e-6
            state["last_shares"] = shares
            state["last"] = rec
            if main:
                _append_log(log_path, rec)
            bar.set_postfix({**{k: f"{rec[k]:.3g}" for k in MAIN_TERMS}, **held})
            if on_log:
                on_log(rec)
        if hold is not None and (step % cfg.eval_every == 0 or step == end):
            hold_targets = chunked_content_targets(criterion, hold)
            elapsed = round(time.perf_counter() - t0, 2)  # training time so far, for loss-vs-wall-clock plots
            cpu_s = round(time.process_time() - c0, 2)
            totals = []
            for s in range(rows):
                rec = {"step": step, "elapsed": elapsed, "cpu_s": cpu_s,
                       **evaluate_holdout(model, criterion, hold, amp_dtype, s if rows > 1 else None, hold_targets)}
                if cfg.strokes:
                    rec["stroke"] = cfg.strokes[s]
                elif rows > 1:
                    rec["style_index"] = s
                state["holdout_curve"].append(rec)
                _append_log(log_path, {"holdout": True, **rec})
                totals.append(rec["total"])
            held = {"held-out": f"{sum(totals) / len(totals):.3g}"}
            if cfg.keep_best:
                keep_if_best(state, best, model, step, sum(totals) / len(totals))
        bar.update(1)
        if main and step % cfg.checkpoint_every == 0 and step < end:
            state["elapsed"] = time.perf_counter() - t0
            state["cpu_s"] = time.process_time() - c0
            state["skipped"] = guard.check()
            save_checkpoint(ckpt_path, model, opt, state, best)
    bar.close()
    state["elapsed"] = time.perf_counter() - t0
    state["cpu_s"] = time.process_time() - c0
    state["weights_step"] = state["step"]
    if best and state["best"]["step"] != state["step"]:
        model.load_state_dict(best)  # a late loss spike or a noisy last step costs nothing
        state["weights_step"] = state["best"]["step"]

    data = _model_card(cfg, loss_cfg.to_dict(), state, device, amp_dtype, len(train_files), len(hold_files))
    if balance is not None:
        data["loss_balance"] = balance
    card = ModelCard.from_dict(data, str(out_path))
    if main:
        save_model(model.cpu(), card, out_path)
        if n_styles > 1:
            for i, path in enumerate(split_paths(cfg)):
                write_single_style(model, card.data, i, path)
        if ckpt_path.exists():
            ckpt_path.unlink()
    barrier(dist_info)  # the model file exists for every rank once train() returns
    shutdown(dist_info)
    return card


def diversity_inputs(cfg: TrainConfig, x: torch.Tensor, style_index: torch.Tensor | None, step: int, rank: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(photos, generator input, style index) of a step. A generator g(x, z) gets noise channels
    drawn from (seed, step, rank), so a resumed run sees the same noise; with ``diversity`` every
    photo appears ``diversity_copies`` times in a row, each copy with its own noise. A plain
    generator gets the batch as it is."""
    k = int(cfg.arch_kwargs.get("noise_channels", 0))
    if not k:
        return x, x, style_index
    copies = cfg.diversity_copies if cfg.diversity else 1
    photos = x.repeat_interleave(copies, dim=0) if copies > 1 else x
    if style_index is not None and copies > 1:
        style_index = style_index.repeat_interleave(copies)
    z = torch.rand(len(photos), k, *x.shape[-2:], generator=step_generator(cfg.seed, step, rank))
    return photos, torch.cat([photos, z.to(x.device, x.dtype)], dim=1), style_index


def with_entropy(terms: dict[str, torch.Tensor], outputs: torch.Tensor, diversity: float, groups: int
                 ) -> dict[str, torch.Tensor]:
    """``total`` − λ · mean ln nearest-neighbour distance among each photo's noise draws (the
    Kozachenko–Leonenko entropy estimate, ``instyle.losses.diversity``), the term logged beside it."""
    log_nn = nearest_neighbour_log_distance(outputs, groups=groups).mean()
    return {**terms, "total": terms["total"] - diversity * log_nn, "log_nn_distance": log_nn}


def keep_if_best(state: dict[str, Any], best: dict[str, torch.Tensor], model: torch.nn.Module, step: int,
                 total: float) -> None:
    """Remember the weights if this held-out total (mean over styles) is the lowest so far."""
    if total < state.get("best", {}).get("total", math.inf):
        state["best"] = {"step": step, "total": round(total, 6)}
        best.clear()
        best.update({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})


def lr_factor(cfg: TrainConfig, done: int) -> float:
    """Learning-rate multiplier before step ``done + 1`` of this run.

    Warm-up: Adam's first steps move every weight by about ``lr``, harmless from a random start but
    a blow to a trained model (``init``). Decay: a constant rate leaves the weights jittering (the
    held-out loss of one evaluation can be 30% above the next); annealing the last steps settles them.
    """
    warmup = cfg.warmup if cfg.warmup is not None else (100 if cfg.init else 0)
    factor = min(1.0, (done + 1) / warmup) if warmup else 1.0
    into_decay = done - (cfg.iters - cfg.decay)
    if cfg.decay and into_decay >= 0:
        factor *= 0.5 * (1 + math.cos(math.pi * into_decay / cfg.decay))
    return factor


def init_from_model(model: torch.nn.Module, cfg: TrainConfig) -> dict[str, Any]:
    """Load ``cfg.init``'s weights into ``model``; the run then counts on from that model's steps.

    This continues a finished run (its checkpoint, with the Adam moments, is gone by then) or
    starts a new style from a trained model's weights instead of random ones.
    The held-out curve carries over when the styles are the same, so the card shows the whole run.
    """

    path = Path(cfg.init or "")
    if not path.is_file():
        raise InstyleError(f"--init: {path} not found")
    card = read_card(path)
    mismatch = f"--init: {path} ({card.describe_net}) does not fit this run"
    if cfg.strokes and not card.has_rows and card.n_styles == 1:  # a shipped single-style model: every
        single = create_model(card.arch, **card.model_kwargs())   # stroke row starts as its norm affine
        load_weights(single, path, mismatch)
        try:
            model.load_state_dict(broadcast_rows(single.state_dict(), model))
        except RuntimeError:
            raise InstyleError(f"{mismatch}: another architecture") from None
    elif card.has_rows and list(card.strokes or []) != list(cfg.strokes):
        # a stroke-row model seeding other rows, or a single-row run: each new row starts as the
        # network ``--stroke`` would give at its size (the card's default stroke for no rows)
        source, _ = load_model(path)
        values = list(cfg.strokes) or [card.defaults.stroke]
        try:
            model.load_state_dict(resampled_rows(source, card.strokes or [], values, model))
        except (RuntimeError, ValueError):
            raise InstyleError(f"{mismatch}: another architecture") from None
    else:
        load_weights(model, path, mismatch)
    steps = card.steps
    same = [e.get("sha256") for e in card.styles] == [sha256_file(f) for f in cfg.style_files()] \
        and list(card.strokes or []) == list(cfg.strokes) and card.data.get("loss_preset") == cfg.loss
    return {"step": steps, "start": steps, "elapsed": card.wall_time_s if same else 0.0,
            "cpu_s": float(card.data.get("cpu_time_s", 0.0)) if same else 0.0,
            "holdout_curve": list(card.metrics.get("holdout_curve", [])) if same else [],
            "init": {"file": path.name, "sha256": sha256_file(path), "steps": steps}}


def write_single_style(model: torch.nn.Module, joint_card: dict[str, Any], index: int, path: Path) -> dict[str, Any]:
    """Save style ``index`` of a multi-style network as a plain single-style model with its own card."""
    single = create_model(joint_card["arch"], norm=joint_card["norm"], **joint_card["train"]["arch_kwargs"])
    single.load_state_dict(single_style_state(model, index))
    card = json.loads(json.dumps(joint_card))
    card["arch_kwargs"] = joint_card["train"]["arch_kwargs"]
    card["style"] = joint_card["styles"][index]
    del card["styles"]
    card["joint"] = {"index": index, "model": Path(joint_card["train"]["output"]).name,
                     "styles": joint_card["styles"]}
    curve = [{k: v for k, v in r.items() if k != "style_index"}
             for r in joint_card["metrics"]["holdout_curve"] if r.get("style_index") == index]
    card["metrics"] = {"final_train": joint_card["metrics"]["final_train"], "holdout_curve": curve,
                       "holdout_final": curve[-1] if curve else None}
    save_model(single, card, path)
    return card


def evaluate_holdout(model: torch.nn.Module, criterion: PerceptualLoss, hold: torch.Tensor,
                     amp_dtype: torch.dtype | None, style_index: int | None = None,
                     targets: list[dict[str, torch.Tensor]] | None = None) -> dict[str, float]:
    """Mean loss terms on held-out photos, with the model in eval mode (test-time statistics)."""
    was_training = model.training
    model.eval()
    if style_index is not None:
        set_style_index(model, style_index)
    k = int(getattr(model, "noise_channels", 0) or 0)  # a diversity model: the same noise field at every evaluation
    inputs = with_noise(hold, 3, k, torch.Generator().manual_seed(0)) if k else hold
    terms = loss_terms(criterion, run_model(model, inputs, autocast_dtype=amp_dtype), hold, style_index=style_index,
                       targets=targets)
    model.train(was_training)
    return {k: round(v, 6) for k, v in terms.items()}


def layer_shares(state: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each style layer's share of the style term at the run's first and last logged steps (training
    batches, weighted by the run's layer weights): how much each layer actually steers."""
    return {f"{when}_log": state[f"{when}_shares"] for when in ("first", "last") if f"{when}_shares" in state}


def _append_log(path: Path, rec: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a resumed run restarts from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def _model_card(cfg: TrainConfig, loss: dict[str, Any], state: dict[str, Any], device: torch.device,
                amp_dtype: torch.dtype | None, n_train: int, n_hold: int) -> dict[str, Any]:
    styles = [{"file": Path(f).name, "sha256": sha256_file(f), **meta}
              for f, meta in zip(cfg.style_files(), cfg.style_metas(), strict=True)]
    for entry, scale in zip(styles, cfg.style_scales, strict=False):
        entry["style_weight_scale"] = scale
    n, rows = len(styles), cfg.rows
    return {
        "arch": cfg.arch,
        "norm": cfg.norm,
        "arch_kwargs": {**cfg.arch_kwargs, "styles": rows} if rows > 1 else cfg.arch_kwargs,
        "loss_preset": cfg.loss,
        "loss": loss,
        **({"styles": styles} if n > 1 else {"style": styles[0]}),
        **({"strokes": list(cfg.strokes)} if cfg.strokes else {}),
        "train": {**dataclasses.asdict(cfg), "n_train_images": n_train, "n_holdout_images": n_hold},
        "metrics": {"final_train": state["last"], "holdout_curve": state["holdout_curve"],
                    "holdout_final": state["holdout_curve"][-1] if state["holdout_curve"] else None,
                    "style_layer_shares": layer_shares(state)},
        "steps": state["step"],
        "skipped_steps": state.get("skipped", 0),  # non-finite gradients: no optimizer step taken
        "weights_step": state.get("weights_step", state["step"]),  # earlier than steps with keep_best
        **({"best_holdout": state["best"]} if "best" in state else {}),
        **({"init": state["init"]} if "init" in state else {}),
        **({"adapt": state["adapt"]} if "adapt" in state else {}),
        "wall_time_s": round(state["elapsed"], 1),
        "cpu_time_s": round(state.get("cpu_s", 0.0), 1),  # all threads' CPU seconds: the per-CPU-minute budget
        "threads": torch.get_num_threads(),  # intra-op threads the run trained with
        "machine": machine_description(),
        "device": str(device),
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "software": {"instyle": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

"""Checkpoints as safetensors: model, Adam moments and RNG as tensors, the loop state as JSON (no pickle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_path


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any],
                    best: dict[str, torch.Tensor] | None = None) -> None:
    """Model, Adam moments, RNG and the best weights so far (``keep_best``) as tensors; everything
    else as JSON metadata (no pickle)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.contiguous() for k, v in (best or {}).items()})
    opt_state = opt.state_dict()
    for pid, st in opt_state["state"].items():
        for k, v in st.items():
            tensors[f"optim.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tensors["rng.cpu"] = torch.get_rng_state()
    meta = {"state": json.dumps(state), "param_groups": json.dumps(opt_state["param_groups"])}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """The loop state of a checkpoint (its config among it) without loading any tensor."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {})["state"])
    except Exception as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InstyleError(f"{path}: unreadable checkpoint ({why}); pass --restart to discard it") from None


def check_run_state(ckpt_path: Path, config: dict[str, Any], resume_keys: tuple[str, ...], *, resume: bool,
                    restart: bool) -> None:
    """What a run may do with an earlier run's checkpoint, decided before anything is built.

    ``--resume`` needs one and refuses options (``resume_keys``) that change what the run learns;
    without ``--resume`` an existing checkpoint is an interrupted run that only ``--restart`` may
    discard, so a rerun never replaces it silently."""
    if resume and restart:
        raise InstyleError("--resume and --restart exclude each other")
    if resume and not ckpt_path.is_file():
        raise InstyleError(f"--resume: no checkpoint at {ckpt_path}")
    if resume:
        old = read_checkpoint_state(ckpt_path).get("config", {})
        changed = [k for k in resume_keys if k in old and old[k] != config.get(k)]
        if changed:
            raise InstyleError(f"--resume: the checkpoint was made with different {', '.join(changed)}; "
                               "use the same options, or --restart to discard it")
    elif ckpt_path.is_file() and not restart:
        raise InstyleError(f"{ckpt_path} holds an interrupted run: --resume continues it, --restart discards it")


def load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    best: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Restore model and optimizer in place (and fill ``best``); returns the loop state."""
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata()
        tensors = load_file(str(path))
    except Exception as exc:
        raise InstyleError(f"{path}: unreadable checkpoint ({exc})") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    groups = json.loads(meta["param_groups"])
    for saved, current in zip(groups, opt.param_groups, strict=False):
        # How Adam runs here (fused on CUDA, see instyle.training.guard) is this machine's choice, not the checkpoint's.
        saved.update({k: current[k] for k in ADAM_IMPL if k in current})
    opt_state: dict[str, Any] = {"state": {}, "param_groups": groups}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            opt_state["state"].setdefault(int(pid), {})[name] = v
    opt.load_state_dict(opt_state)
    torch.set_rng_state(tensors["rng.cpu"])
    if best is not None:
        best.update({k[5:]: v for k, v in tensors.items() if k.startswith("best.")})
    return json.loads(meta["state"])


ADAM_IMPL = ("foreach", "fused", "capturable", "differentiable")

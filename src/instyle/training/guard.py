"""The optimizer step of ``instyle.training.loop``: Adam, gradient clipping, and skipping steps whose gradient
is not finite, without making the host wait for a GPU.

A host-side ``bool(torch.isfinite(grad_norm))`` each step blocks until the GPU has finished the
step, so the CPU cannot queue the next step's kernels while the GPU works, and a step of a few
dozen small kernels at batch 4 is launch-bound on a GPU (docs/benchmarks.md, Training, GPU). On
CUDA, ``StepGuard`` therefore lets fused Adam skip a bad step on the device (``GradScaler`` hands it
``found_inf``) and keeps its counts as device tensors that ``check`` reads when the loop syncs
anyway (logging). On the CPU the host check costs nothing and stops a diverging run at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from instyle.core.errors import InstyleError

MAX_BAD_STEPS = 10  # consecutive non-finite gradients before a run is declared diverged


def device_side_steps(device: torch.device) -> bool:
    """Whether ``StepGuard`` decides on the device (CUDA) or on the host (CPU)."""
    return device.type == "cuda"


class StepGuard:
    """Adam with clipping that skips non-finite steps and stops a run after ``MAX_BAD_STEPS`` in a row.

    fp16 keeps its usual loss scaling (its overflow steps are calibration, not counted as bad).
    Otherwise the device mode uses a loss scale of 1 that never grows; it halves after a bad step,
    and scaling by a power of two changes no bits of an fp32 or bf16 gradient.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, device: torch.device, fp16: bool = False,
                 on_device: bool | None = None):
        self.params = list(params)
        self.fp16 = fp16
        self.on_device = device_side_steps(device) if on_device is None else on_device
        self.opt = torch.optim.Adam(self.params, lr=lr, fused=True if self.on_device else None)
        if fp16 or not self.on_device:
            self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        else:
            self.scaler = torch.amp.GradScaler(device.type, init_scale=1.0, growth_interval=2**30)
        zero = torch.zeros((), dtype=torch.long, device=device)
        self.skipped, self.streak, self.worst = zero, zero.clone(), zero.clone()

    def step(self, loss: Tensor, clip: float | None) -> Tensor:
        """Backward, clip to ``clip`` (None: measure only), step unless the gradient is not finite;
        returns the gradient norm before clipping (a device tensor)."""
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        # The norm of the (DDP-averaged) gradient is the same on every rank, so all ranks agree on
        # clipping and skipping. Clipping keeps one wild batch from wrecking the instance-norm scales
        # (a run without it collapsed to flat outputs).
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip or math.inf)
        bad = torch.zeros((), dtype=torch.bool, device=grad_norm.device) if self.fp16 else ~torch.isfinite(grad_norm)
        if self.on_device or self.scaler.is_enabled():
            self.scaler.step(self.opt)  # skips a step with non-finite gradients by itself
        elif not bool(bad):
            self.opt.step()
        self.scaler.update()
        self.skipped = self.skipped + bad
        self.streak = (self.streak + 1) * bad
        self.worst = torch.maximum(self.worst, self.streak)
        if not self.on_device:
            self.check()
        return grad_norm

    def check(self) -> int:
        """Raises if a run of ``MAX_BAD_STEPS`` bad steps happened; returns the bad steps so far."""
        if int(self.worst) >= MAX_BAD_STEPS:
            raise InstyleError(f"training diverged ({int(self.worst)} steps in a row with a non-finite "
                               "gradient); lower --lr or set --grad-clip")
        return int(self.skipped)

    def restore(self, skipped: int) -> None:
        """Continue the count of a resumed run."""
        self.skipped = torch.full_like(self.skipped, skipped)

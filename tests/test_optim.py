"""StepGuard: the host-checked (CPU) and device-side (CUDA) ways of skipping bad steps agree."""

from __future__ import annotations

import pytest
import torch

from instyle.core.errors import InstyleError
from instyle.training.guard import MAX_BAD_STEPS, StepGuard


def _run(on_device: bool, grads: list[float]) -> tuple[torch.Tensor, StepGuard, list[float]]:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    guard = StepGuard([w], lr=0.1, device=torch.device("cpu"), on_device=on_device)
    norms = []
    for g in grads:
        norms.append(float(guard.step((w * g).sum() + (w**2).sum(), clip=3.0)))
    return w.detach(), guard, norms


@pytest.mark.parametrize("on_device", [False, True])
def test_a_bad_step_changes_nothing_and_is_counted(on_device: bool) -> None:
    nan = float("nan")
    w_bad, guard, norms = _run(on_device, [1.0, nan, 2.0])
    w_good, _, _ = _run(on_device, [1.0, 2.0])
    torch.testing.assert_close(w_bad, w_good)  # the NaN step neither moved w nor advanced Adam
    assert guard.check() == 1 and norms[0] > 0 and norms[1] != norms[1]


def test_device_side_matches_the_host_check() -> None:
    grads = [1.0, -3.0, float("inf"), 0.5, 2.0]
    host, _, _ = _run(False, grads)
    device, _, _ = _run(True, grads)
    torch.testing.assert_close(device, host, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("on_device", [False, True])
def test_a_run_of_bad_steps_is_reported_as_divergence(on_device: bool) -> None:
    with pytest.raises(InstyleError, match="diverged"):
        _, guard, _ = _run(on_device, [1.0] + [float("nan")] * MAX_BAD_STEPS)
        guard.check()  # device-side: found when the loop looks (at log time)
    _, guard, _ = _run(on_device, ([float("nan")] * (MAX_BAD_STEPS - 1) + [1.0]) * 2)
    assert guard.check() == 2 * (MAX_BAD_STEPS - 1)  # long runs of bad steps, but never ten in a row


def test_a_checkpoint_resumes_under_the_other_optimizer_implementation(tmp_path) -> None:
    """A CPU checkpoint (plain Adam) resumed on CUDA (fused Adam) keeps running fused, and back."""
    from instyle.training.checkpoints import load_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    host = StepGuard(model.parameters(), lr=0.1, device=torch.device("cpu"), on_device=False)
    host.step(model(torch.ones(1, 3)).sum(), clip=None)
    save_checkpoint(tmp_path / "c.safetensors", model, host.opt, {"step": 1})
    fused = StepGuard(model.parameters(), lr=0.1, device=torch.device("cpu"), on_device=True)
    load_checkpoint(tmp_path / "c.safetensors", model, fused.opt)
    assert fused.opt.param_groups[0]["fused"] is True
    assert fused.opt.state[model.weight]["step"].item() == 1
    fused.step(model(torch.ones(1, 3)).sum(), clip=None)
    assert fused.opt.state[model.weight]["step"].item() == 2 and fused.check() == 0

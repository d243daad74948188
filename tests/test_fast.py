"""Inference backends: each agrees with fp32 eager, ``auto`` only picks validated paths."""

from __future__ import annotations

import pytest
import torch

from instyle.core.errors import InstyleError
from instyle.core.hardware import cpu_supports_bf16
from instyle.inference.backends import (
    CUDA_ONLY,
    MIN_PSNR,
    auto_candidates,
    build_runner,
    check_psnr,
    psnr,
    sample_image,
)
from instyle.inference.stylizer import Stylizer
from instyle.models import create_model
from instyle.models.clamped import ClampedGenerator
from instyle.models.norms import Norm2d, fused_instance_norm, make_multistyle, set_style_index


@pytest.fixture(scope="module")
def module() -> torch.nn.Module:
    torch.manual_seed(0)
    return ClampedGenerator(create_model("johnson-half", norm="instance")).eval()


def test_eager_is_the_module(module: torch.nn.Module) -> None:
    x = sample_image((40, 56))
    with torch.inference_mode():
        assert torch.equal(build_runner(module, "eager", "cpu")(x), module(x))


def test_channels_last_matches_and_leaves_the_module_alone(module: torch.nn.Module) -> None:
    runner = build_runner(module, "channels_last", "cpu")
    assert check_psnr(runner, module, (48, 64)) > 80
    assert runner.module is not module
    assert next(module.parameters()).is_contiguous()  # the user's module is not converted


def test_bf16_is_close_and_fp32_in_out(module: torch.nn.Module) -> None:
    runner = build_runner(module, "bf16", "cpu")
    y = runner(sample_image((48, 64)))
    assert y.dtype == torch.float32 and y.shape == (1, 3, 48, 64)
    assert next(module.parameters()).dtype == torch.float32
    assert check_psnr(runner, module, (64, 64)) > 30  # measured values for trained models: docs/benchmarks.md


def test_onnxruntime_handles_sizes_not_seen_at_export(module: torch.nn.Module) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    runner = build_runner(module, "onnxruntime", "cpu")
    for size in ((37, 53), (64, 80), (9, 9)):
        x = sample_image(size, n=2)
        with torch.inference_mode():
            ref = module(x)
        out = runner(x)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_onnxruntime_ulyanov_small_and_odd_sizes() -> None:
    """The multi-scale net pads to 64 px at least; below the graph's exact size, eager takes over."""
    pytest.importorskip("onnxruntime")
    torch.manual_seed(1)
    net = ClampedGenerator(create_model("ulyanov", norm="instance")).eval()
    runner = build_runner(net, "onnxruntime", "cpu")
    for size in ((20, 20), (70, 45), (96, 130)):
        x = sample_image(size)
        with torch.inference_mode():
            torch.testing.assert_close(runner(x), net(x), atol=5e-4, rtol=0)


def test_bad_backends_are_refused(module: torch.nn.Module) -> None:
    with pytest.raises(InstyleError, match="unknown backend"):
        build_runner(module, "tensorrt", "cpu")
    for name in CUDA_ONLY:
        with pytest.raises(InstyleError, match="CUDA"):
            build_runner(module, name, "cpu")
    with pytest.raises(InstyleError, match="unknown backend"):
        Stylizer(create_model("johnson-half"), backend="nope")


@pytest.mark.parametrize("styles", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_instance_norm_matches_aten(styles: int, channels_last: bool) -> None:
    """``fused_instance_norm(True)`` (the CUDA default at test time) is the same function as F.instance_norm."""
    torch.manual_seed(0)
    norm = make_multistyle(Norm2d(6, "instance"), styles).eval()
    with torch.no_grad():
        norm.bias.normal_()
    if styles > 1:
        set_style_index(norm, torch.tensor([2, 0]))
    x = (torch.randn(2, 6, 9, 11) * 3 + 2).contiguous(memory_format=torch.channels_last if channels_last
                                                     else torch.contiguous_format)
    with fused_instance_norm(False):
        ref = norm(x)
    with fused_instance_norm(True):
        fused = norm(x)
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)
    assert (fused - ref).abs().max() < 1e-4


def test_auto_picks_a_validated_path(module: torch.nn.Module) -> None:
    runner = build_runner(module, "auto", "cpu")
    assert runner.backend in auto_candidates(torch.device("cpu"))  # the fastest that passed, timed once
    assert auto_candidates(torch.device("cpu"))[-1] == "eager"
    if cpu_supports_bf16():
        assert "bf16" in auto_candidates(torch.device("cpu"))
    assert check_psnr(runner, module, (64, 64)) >= MIN_PSNR or runner.backend == "eager"
    # A path that misses the threshold is never chosen: with an impossible bar, auto falls back to eager.
    assert build_runner(module, "auto", "cpu", min_psnr=float("inf")).backend == "eager"


def test_stylizer_keeps_the_plain_module_and_controls() -> None:
    torch.manual_seed(0)
    fast = Stylizer(create_model("johnson-half"), device="cpu", backend="auto")
    ref = Stylizer(create_model("johnson-half"), device="cpu", backend="eager")
    ref.module.load_state_dict(fast.module.state_dict())
    assert isinstance(fast.module, ClampedGenerator)
    x = sample_image((50, 70))[0]
    for controls in ({}, {"strength": 0.5, "preserve_colors": True}, {"scale": 2.0}):
        a, b = fast.stylize_tensor(x, **controls), ref.stylize_tensor(x, **controls)
        assert a.shape == x.shape
        assert psnr(a, b) > 35


@pytest.mark.slow
def test_compile_matches_eager(module: torch.nn.Module) -> None:
    runner = build_runner(module, "compile", "cpu")
    assert check_psnr(runner, module, (32, 32)) > 60


def test_int8_is_close_to_fp32_on_a_trained_model_and_quantizes_once_per_shape() -> None:
    from instyle.models.modelfile import load_model
    from instyle.zoo import resolve_model

    model = ClampedGenerator(load_model(resolve_model("starry-night-fast"))[0]).eval()
    runner = build_runner(model, "int8", "cpu")
    assert "int8" not in auto_candidates(torch.device("cpu")), "int8 misses 40 dB at 1080p: explicit only"
    x = sample_image((64, 96), seed=7)
    with torch.no_grad():
        ref = model(x)
    out = runner(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert 30 < psnr(out, ref) < 80, "int8 changes the numbers, but only a little"
    runner(sample_image((48, 48)))
    runner(x)
    assert list(runner._graphs) == [(1, 3, 48, 48), (1, 3, 64, 96)]

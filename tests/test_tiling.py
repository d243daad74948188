"""Tiled stylization: blends without seams and keeps the whole image's norm statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from instyle.inference.backends import build_runner, psnr, sample_image
from instyle.inference.stylizer import Stylizer
from instyle.inference.tiling import collect_norm_stats, fixed_norm_stats, stylize_tiled, tile_starts
from instyle.models import create_model
from instyle.models.clamped import ClampedGenerator


@pytest.fixture(scope="module")
def module() -> torch.nn.Module:
    torch.manual_seed(0)
    return ClampedGenerator(create_model("johnson-half", norm="instance")).eval()


def test_tiles_cover_the_image() -> None:
    assert tile_starts(100, 128, 32) == [0]
    assert tile_starts(300, 128, 32) == [0, 96, 172]
    for length in (129, 257, 1000):
        starts = tile_starts(length, 128, 32)
        covered = torch.zeros(length, dtype=torch.bool)
        for s in starts:
            covered[s : s + 128] = True
        assert covered.all() and starts[-1] + 128 == length


def test_blending_weights_are_a_partition_of_unity() -> None:
    x = torch.rand(2, 3, 150, 230)
    y = stylize_tiled(lambda t: t, torch.nn.Identity(), x, tile=64, overlap=16, stats_side=None)
    torch.testing.assert_close(y, x)


def test_injected_statistics_reproduce_the_untiled_run(module: torch.nn.Module) -> None:
    x = sample_image((64, 96), n=2)
    run = build_runner(module, "eager", "cpu")
    ref = run(x)
    stats = collect_norm_stats(run, module, x)
    assert len(stats) == 15 and stats[next(iter(stats))][0].shape[0] == 2  # per image
    with fixed_norm_stats(stats):
        torch.testing.assert_close(run(x), ref, atol=1e-5, rtol=0)
    assert all(m.fixed_stats is None for m in stats)  # restored


def test_tiled_matches_untiled(module: torch.nn.Module) -> None:
    x = sample_image((256, 320))
    run = build_runner(module, "eager", "cpu")
    ref = run(x)
    tiled = stylize_tiled(run, module, x, tile=160, overlap=64)
    per_tile = stylize_tiled(run, module, x, tile=160, overlap=64, stats_side=None)
    assert psnr(tiled, ref) >= 40
    # The whole-image statistics are what keeps tiles in one tone: per-tile statistics are far worse.
    assert psnr(tiled, ref) > psnr(per_tile, ref) + 10


def test_stylizer_tiles_on_request(module: torch.nn.Module) -> None:
    whole = Stylizer(create_model("johnson-half"), device="cpu", backend="eager", tile=0)
    whole.module.load_state_dict(module.state_dict())
    tiled = Stylizer(create_model("johnson-half"), device="cpu", backend="bf16", tile=192)
    tiled.module.load_state_dict(module.state_dict())
    img = Image.fromarray((sample_image((300, 420))[0].permute(1, 2, 0).numpy() * 255).astype("uint8"))
    a, b = whole(img), tiled(img)
    assert a.size == b.size == img.size
    ta = torch.from_numpy(np.asarray(a, dtype=np.float32) / 255)
    tb = torch.from_numpy(np.asarray(b, dtype=np.float32) / 255)
    assert psnr(ta, tb) > 35

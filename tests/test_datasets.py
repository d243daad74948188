"""Training crops: shapes, determinism for a seed, exact resume, bad files skipped."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instyle.core.errors import InstyleError
from instyle.data import datasets
from instyle.data.datasets import CropDataset, infinite_batches, split_holdout


def _photos(root: Path, n: int = 6) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        p = root / f"p{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        files.append(p)
    return files


def test_items_shape_dtype_range(tmp_path: Path) -> None:
    ds = CropDataset(_photos(tmp_path), size=32, seed=1)
    assert len(ds) == 6
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_deterministic_per_seed_epoch_and_cache(tmp_path: Path) -> None:
    files = _photos(tmp_path)
    a = CropDataset(files, size=24, seed=3)
    b = CropDataset(files, size=24, seed=3, cache=False)
    c = CropDataset(files, size=24, seed=4)
    assert torch.equal(a[(2, 0)], b[(2, 0)])
    assert torch.equal(a[(2, 0)], a[(2, 0)])  # warm cache == cold cache
    assert not torch.equal(a[(2, 0)], c[(2, 0)])
    assert not torch.equal(a[(2, 0)], a[(2, 1)])  # new augmentation each epoch
    a.set_epoch(1)
    assert torch.equal(a[2], b[(2, 1)])


def test_crops_are_the_resized_photo_cropped(tmp_path: Path) -> None:
    """Only the crop's region is resampled, but the pixels are those of resizing the photo first."""
    yy, xx = np.mgrid[0:90, 0:130]
    smooth = np.stack([xx * 1.9, yy * 2.7, (xx + yy) * 1.1], -1).clip(0, 255).astype(np.uint8)
    p = tmp_path / "smooth.png"
    Image.fromarray(smooth).save(p)
    ds = CropDataset([p], size=48, scale=(1.3, 1.9), flip=False, seed=5)
    for epoch in range(6):
        item = ds[(0, epoch)]
        rng = datasets._rng(datasets._ITEM_SALT, ds.seed, epoch, 0)  # the item's own random draws
        img = Image.open(p).convert("RGB")
        s = rng.uniform(*ds.scale)
        f = max(48, round(48 * s)) / 90
        new = (max(48, round(130 * f)), max(48, round(90 * f)))
        x, y = int(rng.integers(0, new[0] - 47)), int(rng.integers(0, new[1] - 47))
        want = img.resize(new, Image.Resampling.BICUBIC).crop((x, y, x + 48, y + 48))
        ref = torch.from_numpy(np.asarray(want).copy()).permute(2, 0, 1).float() / 255
        assert (item - ref).abs().max() <= 2 / 255 + 1e-6, epoch


def test_big_photo_is_downsized_in_cache(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("RGB", (400, 300), (10, 20, 30)).save(p)
    ds = CropDataset([p], size=16)
    ds[0]
    assert min(ds._cache[0].size) == 32


def test_infinite_batches_deterministic_and_resume(tmp_path: Path) -> None:
    ds = CropDataset(_photos(tmp_path, 7), size=16, seed=0)
    full = [b.clone() for b in itertools.islice(infinite_batches(ds, batch_size=2, seed=5), 10)]
    assert all(b.shape == (2, 3, 16, 16) for b in full)
    again = list(itertools.islice(infinite_batches(ds, batch_size=2, seed=5), 10))
    assert all(torch.equal(x, y) for x, y in zip(full, again, strict=True))
    # 7 photos, batch 2 -> 3 steps per epoch; resume mid-epoch and on an epoch boundary
    for start in (4, 6):
        fresh = CropDataset(ds.files, size=16, seed=0)
        resumed = list(itertools.islice(infinite_batches(fresh, 2, seed=5, start_step=start), 10 - start))
        assert all(torch.equal(x, y) for x, y in zip(full[start:], resumed, strict=True))
        assert not fresh._cache.keys() - set(range(7))
    other = next(infinite_batches(ds, batch_size=2, seed=6))
    assert not torch.equal(other, full[0])


def test_infinite_batches_with_workers_matches(tmp_path: Path) -> None:
    ds = CropDataset(_photos(tmp_path, 4), size=16, seed=0)
    plain = list(itertools.islice(infinite_batches(ds, 2, seed=1, start_step=1), 3))
    workers = list(itertools.islice(infinite_batches(ds, 2, seed=1, num_workers=1, start_step=1), 3))
    assert all(torch.equal(x, y) for x, y in zip(plain, workers, strict=True))


def test_plain_dataset_gets_int_keys() -> None:
    data = torch.arange(10).float()
    ds = torch.utils.data.TensorDataset(data)
    batches = list(itertools.islice(infinite_batches(ds, 5, seed=0), 4))
    seen = torch.cat([b[0] for b in batches[:2]]).sort().values
    assert torch.equal(seen, data)
    with pytest.raises(InstyleError):
        next(infinite_batches(ds, 11, seed=0))


def test_unreadable_files_skipped(tmp_path: Path) -> None:
    files = _photos(tmp_path, 3)
    (tmp_path / "bad.jpg").write_text("not an image")
    (tmp_path / "big.png").write_bytes(b"")
    huge = tmp_path / "huge.png"
    Image.new("RGB", (200, 200)).save(huge)
    with pytest.warns(UserWarning) as caught:
        ds = CropDataset([*files, tmp_path / "bad.jpg", tmp_path / "big.png", huge], size=8, max_pixels=20000)
    assert ds.files == files
    assert len(ds.skipped) == 3
    named = {str(w.message).split(":")[0].rsplit("/", 1)[-1] for w in caught}
    assert named == {"bad.jpg", "big.png", "huge.png"}
    with pytest.raises(InstyleError, match="no usable images"), pytest.warns(UserWarning):
        CropDataset([tmp_path / "bad.jpg"], size=8)
    with pytest.raises(InstyleError, match="no usable images"):
        CropDataset([], size=8)


def test_truncated_file_found_late_is_replaced(tmp_path: Path) -> None:
    files = _photos(tmp_path, 3)
    p = tmp_path / "trunc.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:3000])  # header intact: passes the cheap check
    ds = CropDataset([*files, p], size=16)
    idx = ds.files.index(p)
    with pytest.warns(UserWarning, match="trunc.jpg"):
        x = ds[idx]
    assert x.shape == (3, 16, 16)


def test_split_holdout(tmp_path: Path) -> None:
    files = [tmp_path / f"{i:02d}.jpg" for i in range(20)]
    train, held = split_holdout(files, 4, seed=0)
    assert len(held) == 4 and len(train) == 16 and not set(train) & set(held)
    assert split_holdout(list(reversed(files)), 4, seed=0) == (train, held)
    assert split_holdout(files, 4, seed=1)[1] != held
    assert split_holdout(files, 0) == (files, [])
    with pytest.raises(InstyleError):
        split_holdout(files, 20)

"""Training data: random square crops of content photos, reproducible for a seed, resumable.

Every random choice (which photo, scale, crop, flip) is a pure function of
``(seed, epoch, index)``, never of global RNG state or worker scheduling. That is what makes
a run reproducible with any number of loader workers, and lets a resumed run produce exactly
the batches the uninterrupted run would have produced from that step on.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate

from instyle.core.errors import InstyleError
from instyle.data.images import DEFAULT_MAX_PIXELS, ImageError, _open_header, _reason, load_image, pil_to_tensor

__all__ = ["CropDataset", "infinite_batches", "split_holdout"]

# Salts that keep the item stream and the shuffling stream independent for the same seed.
_ITEM_SALT = 0x1C0
_SHUFFLE_SALT = 0x5F1


def _rng(*key: int) -> np.random.Generator:
    """A generator determined only by ``key``: SeedSequence mixes small ints into independent streams."""
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]))


def _check_header(path: Path, max_pixels: int | None) -> str | None:
    """Cheap usability check (header only, no decode): None if fine, else the reason."""
    try:
        with _open_header(path) as im:  # Pillow's own bomb limit off: ours applies below
            w, h = im.size
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return f"not a readable image ({_reason(exc)})"
    if w < 1 or h < 1:
        return "empty image"
    if max_pixels is not None and w * h > max_pixels:
        return f"{w}x{h} pixels is over the limit of {max_pixels}"
    return None


def _describe(files: Sequence[Path]) -> str:
    if not files:
        return "an empty file list"
    try:
        common = os.path.commonpath([str(Path(f).parent) for f in files])
    except ValueError:
        common = ""
    return f"{common} ({len(files)} files)" if common else f"{len(files)} files"


class CropDataset(Dataset[torch.Tensor]):
    """Random ``size`` x ``size`` crops of photos, as float32 (3, size, size) tensors in [0, 1].

    Each photo is first resized so its short side is ``size * s`` with ``s`` uniform in
    ``scale``: the default (1, 2) shows the network whole objects at roughly the scale it will
    stylise them, instead of tiny patches of a 24-megapixel photo that are all flat colour.

    Decoded photos are kept in memory downsized to a short side of ``cache_side`` (default
    ``ceil(size * scale[1])``, the largest size ever needed), so later epochs skip the JPEG
    decode. Items are always made from that downsized copy, so a cold cache (a resumed run,
    a fresh worker) gives bit-identical crops to a warm one.

    An item key is an index (using the epoch from ``set_epoch``) or an ``(index, epoch)``
    tuple, which is what ``infinite_batches`` passes so workers never need to be told the epoch.
    """

    accepts_epoch_keys = True

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        size: int,
        scale: tuple[float, float] = (1.0, 2.0),
        flip: bool = True,
        cache_side: int | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        if size < 1:
            raise ValueError(f"crop size must be positive, got {size}")
        lo, hi = float(scale[0]), float(scale[1])
        if not 1.0 <= lo <= hi:
            raise ValueError(f"scale must satisfy 1 <= min <= max (else crops won't fit), got {scale}")
        self.size = int(size)
        self.scale = (lo, hi)
        self.flip = flip
        self.cache_side = int(cache_side) if cache_side else int(np.ceil(size * hi))
        if self.cache_side < size:
            raise ValueError(f"cache_side {self.cache_side} is smaller than the crop size {size}")
        self.max_pixels = max_pixels
        self.seed = int(seed)
        self.epoch = 0
        self.use_cache = cache
        all_files = [Path(f) for f in files]
        self.files: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        for f in all_files:
            why = _check_header(f, max_pixels)
            if why is None:
                self.files.append(f)
            else:
                self.skipped.append((f, why))
                warnings.warn(f"skipping {f}: {why}", stacklevel=2)
        if not self.files:
            raise InstyleError(f"no usable images in {_describe(all_files)}")
        self._cache: dict[int, Image.Image] = {}
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used by plain integer keys (DataLoader users that re-create iterators)."""
        self.epoch = int(epoch)

    def _photo(self, i: int) -> Image.Image:
        """The photo, decoded once and downsized to the cache side."""
        img = self._cache.get(i)
        if img is None:
            img = load_image(self.files[i], max_pixels=self.max_pixels).rgb
            w, h = img.size
            short = min(w, h)
            if short > self.cache_side:
                f = self.cache_side / short
                new = (max(1, round(w * f)), max(1, round(h * f)))
                img = img.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
            if self.use_cache:
                self._cache[i] = img
        return img

    def crop(self, index: int, epoch: int) -> torch.Tensor:
        """The item for ``index`` in ``epoch``: deterministic for (seed, epoch, index)."""
        n = len(self.files)
        index = int(index) % n
        rng = _rng(_ITEM_SALT, self.seed, epoch, index)
        s = rng.uniform(*self.scale)
        # A file whose header was fine but whose data is broken is replaced by the next good
        # one; which one depends only on which files are broken, so determinism holds.
        for k in range(n):
            j = (index + k) % n
            if j in self._bad:
                continue
            try:
                img = self._photo(j)
                break
            except ImageError as exc:
                self._bad.add(j)
                warnings.warn(f"skipping {exc}", stacklevel=2)
        else:
            raise InstyleError(f"no usable images in {_describe(self.files)}")
        w, h = img.size
        short_target = max(self.size, round(self.size * s))
        f = short_target / min(w, h)
        new_w, new_h = max(self.size, round(w * f)), max(self.size, round(h * f))
        x = int(rng.integers(0, new_w - self.size + 1))
        y = int(rng.integers(0, new_h - self.size + 1))
        flip = bool(self.flip and rng.random() < 0.5)
        if (new_w, new_h) != (w, h):
            # Resample only the crop's region (the photo resized to new_w x new_h, then cropped):
            # 3x faster than resizing the whole photo, the same pixels up to rounding (1/255 on ~2%).
            sx, sy = w / new_w, h / new_h
            box = (x * sx, y * sy, (x + self.size) * sx, (y + self.size) * sy)
            out = img.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        else:
            out = img.crop((x, y, x + self.size, y + self.size))
        if flip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return pil_to_tensor(out)

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        if isinstance(key, tuple):
            index, epoch = key
            return self.crop(index, epoch)
        return self.crop(key, self.epoch)

    def __getstate__(self) -> dict[str, Any]:
        # Workers start with an empty cache instead of pickling decoded photos across processes.
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state


def split_holdout(
    files: Sequence[str | os.PathLike[str]], n_holdout: int, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Deterministic (train, held_out) split; held-out photos are for evaluation and never trained on.

    Files are sorted first, so the split doesn't depend on directory listing order.
    """
    ordered = sorted({Path(f) for f in files})
    if n_holdout < 0:
        raise ValueError(f"n_holdout must be >= 0, got {n_holdout}")
    if n_holdout >= len(ordered) and n_holdout > 0:
        raise InstyleError(f"cannot hold out {n_holdout} of {len(ordered)} photos and keep some to train on")
    perm = _rng(_SHUFFLE_SALT, seed, 0xE7A1).permutation(len(ordered))
    held = sorted(ordered[i] for i in perm[:n_holdout])
    train = sorted(ordered[i] for i in perm[n_holdout:])
    return train, held


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return _rng(_SHUFFLE_SALT, seed, epoch).permutation(n)


class _BatchKeys:
    """Infinite batch sampler: lists of dataset keys from ``start_step`` on, computed not replayed."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, epoch_keys: bool) -> None:
        self.n, self.batch_size, self.seed, self.start_step = n, batch_size, seed, start_step
        self.epoch_keys = epoch_keys
        self.steps_per_epoch = n // batch_size

    def __iter__(self) -> Iterator[list[Any]]:
        epoch, offset = divmod(self.start_step, self.steps_per_epoch)
        while True:
            order = _epoch_order(self.n, self.seed, epoch)
            for b in range(offset, self.steps_per_epoch):
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                yield [(int(i), epoch) if self.epoch_keys else int(i) for i in idx]
            epoch, offset = epoch + 1, 0


def _worker_init(_worker_id: int) -> None:
    # Each worker does single-image PIL work; torch threads per worker would only oversubscribe.
    torch.set_num_threads(1)


def resolve_workers(num_workers: int | str) -> int:
    """``"auto"``: one worker per spare core, at most 4 (decoding crops is cheap next to training)."""
    if num_workers == "auto":
        return max(0, min(4, (os.cpu_count() or 1) - 1))
    n = int(num_workers)
    if n < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return n


def infinite_batches(
    dataset: Dataset[Any],
    batch_size: int,
    seed: int,
    num_workers: int | str = 0,
    start_step: int = 0,
    pin_memory: bool = False,
) -> Iterator[Any]:
    """Endless stream of batches: each epoch a fresh shuffle from ``seed``, incomplete last batch dropped.

    Batch ``k`` of the stream is the same whether the stream started at 0 or was resumed with
    ``start_step <= k``: the epoch and offset are computed, skipped images are never loaded.
    Datasets with ``accepts_epoch_keys`` (CropDataset) get ``(index, epoch)`` keys so their
    augmentation changes per epoch; others get plain indices. ``pin_memory`` (CUDA): batches in
    page-locked memory, so ``.to("cuda", non_blocking=True)`` is queued behind the GPU's work; a copy
    from ordinary memory first waits for the GPU to finish, and the host cannot run ahead.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n < batch_size:
        raise InstyleError(f"batch size {batch_size} is larger than the {n} training images")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    keys = _BatchKeys(n, batch_size, seed, start_step, bool(getattr(dataset, "accepts_epoch_keys", False)))
    yield from batch_stream(dataset, keys, num_workers, pin_memory)


def batch_stream(dataset: Dataset[Any], keys: Iterable[list[Any]], num_workers: int | str,
                 pin_memory: bool) -> Iterator[Any]:
    """The batches ``keys`` name, made here or by worker processes, optionally pinned."""
    workers = resolve_workers(num_workers)
    if workers == 0:
        for batch in keys:
            out = default_collate([dataset[k] for k in batch])
            yield out.pin_memory() if pin_memory else out
        return
    yield from DataLoader(dataset, batch_sampler=keys, num_workers=workers,  # type: ignore[arg-type]
                          worker_init_fn=_worker_init, persistent_workers=False, prefetch_factor=2,
                          pin_memory=pin_memory)


def link_folder(folder: Path, files: Sequence[str | os.PathLike[str]]) -> Path:
    """A folder of symlinks to exactly ``files`` (stale links removed): a training set that cannot
    contain the held-out photos, without copying the data."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"{i:04d}_{Path(f).name}": Path(f) for i, f in enumerate(files)}
    for old in folder.iterdir():
        if old.name not in wanted:
            old.unlink()
    for name, src in wanted.items():
        link = folder / name
        if not link.exists():
            os.symlink(src.resolve(), link)
    return folder

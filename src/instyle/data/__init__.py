"""Image I/O, training data sets and the registry-built data set (``instyle data fetch``).

The names below load their module on first use, so ``instyle.data.images`` (PIL and numpy only)
can be imported without torch, as the fast start path does."""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "CropDataset": "datasets", "infinite_batches": "datasets", "split_holdout": "datasets",
    "default_data_dir": "fetch", "fetch_dataset": "fetch", "list_paintings": "fetch", "style_path": "fetch",
    **dict.fromkeys(("DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "ImageError", "LoadedImage", "ensure_not_input",
                     "list_images", "load_image", "pil_to_tensor", "save_image", "tensor_to_pil"), "images"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'instyle.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"instyle.data.{_HOME[name]}"), name)

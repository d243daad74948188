"""Image I/O, training data sets and the registry-built data set (``instyle data fetch``)."""

from instyle.data.datasets import CropDataset, infinite_batches, split_holdout
from instyle.data.fetch import default_data_dir, fetch_dataset, list_paintings, style_path
from instyle.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageError,
    LoadedImage,
    ensure_not_input,
    list_images,
    load_image,
    pil_to_tensor,
    save_image,
    tensor_to_pil,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "CropDataset",
    "ImageError",
    "LoadedImage",
    "default_data_dir",
    "ensure_not_input",
    "fetch_dataset",
    "infinite_batches",
    "list_images",
    "list_paintings",
    "load_image",
    "pil_to_tensor",
    "save_image",
    "split_holdout",
    "style_path",
    "tensor_to_pil",
]

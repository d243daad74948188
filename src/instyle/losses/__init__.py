"""Perceptual losses and the frozen VGG16 feature extractor they are measured with."""

from instyle.losses.perceptual import (
    PRESETS,
    LossConfig,
    PerceptualLoss,
    content_distance,
    get_preset,
    gram_matrix,
    optimize_image,
    style_distance,
    total_variation,
)
from instyle.losses.vgg import (
    LAYER_INDEX,
    VGG16_CFG,
    VGG16Features,
    VGGWeightsError,
    safe_load_pickle,
    vgg16_weights_path,
)

__all__ = [
    "LAYER_INDEX",
    "PRESETS",
    "VGG16_CFG",
    "LossConfig",
    "PerceptualLoss",
    "VGG16Features",
    "VGGWeightsError",
    "content_distance",
    "get_preset",
    "gram_matrix",
    "optimize_image",
    "safe_load_pickle",
    "style_distance",
    "total_variation",
    "vgg16_weights_path",
]

"""Generators and the normalization factory."""

from instyle.models.norms import (
    NORM_KINDS,
    Norm2d,
    make_multistyle,
    make_norm,
    set_eval_stats,
    set_style_index,
    single_style_state,
)
from instyle.models.registry import create_model, list_models, register_model

__all__ = ["NORM_KINDS", "Norm2d", "create_model", "list_models", "make_multistyle", "make_norm", "register_model",
           "set_eval_stats", "set_style_index", "single_style_state"]

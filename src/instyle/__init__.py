"""instyle: fast feed-forward neural style transfer with instance normalization."""

from __future__ import annotations

from typing import Any

from instyle.core.version import __version__

__all__ = ["Stylizer", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so `instyle --help` and light imports don't pay for torch until it is needed.
    if name == "Stylizer":
        from instyle.inference.stylizer import Stylizer

        return Stylizer
    raise AttributeError(name)

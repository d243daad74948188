"""The generators' padding rule, as plain integers: shared by the models (torch) and the fast start
path (numpy), so both pad every image size alike."""

from __future__ import annotations


def padding_for(h: int, w: int, multiple: int, min_size: int = 16) -> tuple[tuple[int, int, int, int], str]:
    """The (left, right, top, bottom) padding that brings H and W up to a multiple and at least
    ``min_size``, and its mode (reflection where the image is large enough, else replication)."""
    th = max(min_size, -(-h // multiple) * multiple)
    tw = max(min_size, -(-w // multiple) * multiple)
    th, tw = -(-th // multiple) * multiple, -(-tw // multiple) * multiple
    ph, pw = th - h, tw - w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode

"""The bundled demo photos, and the fetched files they were made from (never trained on)."""

from __future__ import annotations

from pathlib import Path

DEMO_PHOTOS = Path(__file__).resolve().parents[1] / "assets" / "demo"
# The fetched training-set files the bundled demo photos were made from: training skips them so
# the gallery only ever shows photos no model was trained on.
DEMO_SOURCES = frozenset({
    "skimage-astronaut.jpg", "skimage-chelsea.jpg", "skimage-coffee.jpg", "skimage-rocket.jpg",
    "matplotlib-grace-hopper.jpg", "gcompris-explore-monuments-greatwallofchina.jpg",
})

"""The web app's Texture tab API (#17): list, thumbnail, seeded any-size samples, tiling, limits."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")
from fastapi.testclient import TestClient

from instyle.apps.serve import create_app
from instyle.core.errors import InstyleError
from instyle.zoo import list_textures


@pytest.fixture(scope="module")
def client(model_file: Path, texture_file: Path) -> Iterator[TestClient]:
    app = create_app(models={"tiny": model_file}, textures={"tiny-texture": texture_file}, max_pixels=20_000,
                     device="cpu", backend="eager")
    with TestClient(app) as c:
        yield c


def _sample(client: TestClient, **query: object):
    return client.get("/api/textures/tiny-texture/sample", params=query)


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def test_list_and_thumbnail(client: TestClient) -> None:
    body = client.get("/api/textures").json()
    assert [t["name"] for t in body["textures"]] == [*list_textures(), "tiny-texture"]
    entry = body["textures"][-1]
    assert entry == {"name": "tiny-texture", "title": "tiny", "size_multiple": 4,
                     "thumbnail": "/api/textures/tiny-texture/thumbnail"}
    assert body["limits"]["max_pixels"] == 20_000 and body["message"] is None
    thumb = client.get(entry["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (128, 128)
    # texture networks are not photo styles: the style list does not offer them
    assert "tiny-texture" not in [s["name"] for s in client.get("/api/styles").json()["styles"]]


def test_any_size_seeded_samples(client: TestClient) -> None:
    a = _sample(client, width=37, height=21, seed=3)
    assert a.status_code == 200 and a.headers["content-type"] == "image/png"
    assert "tiny-texture-seed3-37x21.png" in a.headers["content-disposition"]
    assert Image.open(io.BytesIO(a.content)).size == (37, 21)
    same, other = _sample(client, width=37, height=21, seed=3), _sample(client, width=37, height=21, seed=4)
    assert same.content == a.content
    assert np.abs(_pixels(other.content) - _pixels(a.content)).mean() > 1.0


def test_tileable_sample_wraps_and_bad_tile_sizes_are_422(client: TestClient) -> None:
    r = _sample(client, width=64, height=48, seed=1, tile=True)
    assert r.status_code == 200 and "-tile.png" in r.headers["content-disposition"]
    x = _pixels(r.content)
    wrap = np.abs(x[:, 0] - x[:, -1]).mean()
    interior = np.abs(x[:, 4::4] - x[:, 3:-1:4]).mean()  # neighbours across the 4 px grid, like the wrap edge
    assert wrap < 1.5 * interior, (wrap, interior)
    bad = _sample(client, width=66, height=48, tile=True)
    assert bad.status_code == 422 and "multiples of 4" in bad.json()["detail"]


@pytest.mark.parametrize("query, status, words", [
    ({"width": 200, "height": 200}, 413, "limit of 20000 pixels"),
    ({"width": 0}, 422, "width"), ({"width": 5000}, 422, "width"), ({"seed": -1}, 422, "seed"),
    ({"width": "abc"}, 422, "width"),
])
def test_bad_requests_are_clear(client: TestClient, query: dict, status: int, words: str) -> None:
    r = _sample(client, **query)
    assert r.status_code == status and words in str(r.json()["detail"])


def test_unknown_texture_and_style_models_refused(client: TestClient, model_file: Path) -> None:
    r = client.get("/api/textures/nope/sample")
    assert r.status_code == 404 and "tiny-texture" in r.json()["detail"]
    with pytest.raises(InstyleError, match="not a texture network"):
        create_app(textures={"x": model_file}, device="cpu", backend="eager")

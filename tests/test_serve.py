"""The web app: JSON API through TestClient, and the page end to end in a real headless Chromium."""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")
from fastapi.testclient import TestClient

from instyle.apps.serve import create_app
from instyle.models.modelfile import read_card

CHROMIUM = os.environ.get("INSTYLE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _png(w: int = 40, h: int = 30, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(model_file: Path) -> Iterator[TestClient]:
    app = create_app(models={"tiny": model_file}, max_upload_mb=0.05, max_pixels=200_000, device="cpu", backend="eager")
    with TestClient(app) as c:
        yield c


def _stylize(client: TestClient, data: bytes, name: str = "photo.png", **form: str):
    return client.post("/api/stylize", files={"image": (name, data, "image/png")}, data={"style": "tiny", **form})


def test_styles_thumbnail_and_health(client: TestClient) -> None:
    body = client.get("/api/styles").json()
    from instyle.zoo import list_styles

    names = [s["name"] for s in body["styles"]]
    assert names == [*list_styles(), "tiny"], "shipped styles first, then the ones given at start-up"
    assert body["message"] is None
    entry = body["styles"][-1]
    assert entry["defaults"] == {"strength": 1.0, "scale": 1.0, "stroke": 1.0} and entry["strokes"] is None
    shipped = [s for s in body["styles"] if s["shipped"]]
    assert all(s["defaults"]["strength"] <= 1.0 and s["title"] for s in shipped)
    thumb = client.get(entry["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[0] > 0
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/api/styles/nope/thumbnail").status_code == 404


def test_page_and_openapi(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/stylize" in schema["paths"] and "/api/styles" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_stylize_keeps_size_and_controls_apply(client: TestClient) -> None:
    r = _stylize(client, _png(41, 27), strength="1", scale="1")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (41, 27)
    same = _stylize(client, _png(41, 27), strength="0")
    photo = np.asarray(Image.open(io.BytesIO(_png(41, 27))), dtype=float)
    assert np.abs(np.asarray(Image.open(io.BytesIO(same.content)), dtype=float) - photo).max() <= 1
    jpeg = _stylize(client, _png(41, 27), format="jpeg")
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"


@pytest.mark.parametrize(("data", "status", "words"), [
    (b"this is not an image at all", 415, "not a usable image"),
    (b"", 400, "empty"),
    (os.urandom(80_000), 413, "too large"),
])
def test_bad_uploads_get_clear_4xx(client: TestClient, data: bytes, status: int, words: str) -> None:
    r = _stylize(client, data, name="upload.png")
    assert r.status_code == status
    assert words in r.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_pixel_bomb_guard_and_validation(client: TestClient) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (600, 400), (90, 120, 200)).save(buf, format="PNG")  # 240 kpx > 200 k, but a tiny file
    big = _stylize(client, buf.getvalue())
    assert big.status_code == 413 and "pixel" in big.json()["detail"]
    assert _stylize(client, _png(), strength="1.5").status_code == 422
    assert client.post("/api/stylize", files={"image": ("a.png", _png(), "image/png")},
                       data={"style": "nope"}).status_code == 404


def test_concurrent_requests(client: TestClient) -> None:
    sizes = [(32 + i, 24 + i) for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda s: _stylize(client, _png(*s, seed=s[0])), sizes))
    assert [r.status_code for r in results] == [200] * len(sizes)
    assert [Image.open(io.BytesIO(r.content)).size for r in results] == sizes
    assert client.get("/healthz").status_code == 200


def test_no_styles_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("instyle.apps.serve.app.list_styles", dict)
    with TestClient(create_app(device="cpu", backend="eager")) as c:
        body = c.get("/api/styles").json()
    assert body["styles"] == [] and "--model" in body["message"]


# ----------------------------------------------------------------------------- end to end in Chromium


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium, as root)"
    return None


@pytest.fixture(scope="module")
def live_model(model_file: Path) -> Path:
    return Path(os.environ.get("INSTYLE_DOCS_MODEL") or model_file)  # docs/make_pictures.py: a trained one


@pytest.fixture(scope="module")
def live_server(live_model: Path, texture_file: Path) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    model = live_model
    app = create_app(models={"tiny": model}, textures={"tiny-texture": texture_file}, device="cpu", backend="eager")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_web_page_end_to_end(live_server: str, live_model: Path, tmp_path: Path) -> None:
    reason = _chromium_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    upload = tmp_path / "photo.png"
    if os.environ.get("INSTYLE_DOCS_PHOTO"):
        Image.open(os.environ["INSTYLE_DOCS_PHOTO"]).convert("RGB").save(upload)
    else:
        Image.open(io.BytesIO(_png(96, 72, seed=3))).save(upload)
    expected = list(Image.open(upload).size)
    shot = Path("docs/webapp.png") if os.environ.get("INSTYLE_UPDATE_DOCS") == "1" else tmp_path / "webapp.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(live_server + "/")
            style = page.locator('.style[data-name="tiny"]')
            expect(style).to_be_visible()
            expect(style.locator("img")).to_have_js_property("complete", True)
            page.set_input_files("#file", str(upload))
            style.click()
            expect(style).to_have_attribute("aria-checked", "true")
            slider = page.locator("#strength")
            # choosing a style puts its tuned strength (model card defaults) on the slider
            start = read_card(live_model).defaults.strength
            expect(page.locator("#strength-value")).to_have_text(f"{start:.2f}")
            slider.focus()
            for _ in range(4):
                page.keyboard.press("ArrowLeft")
            expect(page.locator("#strength-value")).to_have_text(f"{start - 0.2:.2f}")
            page.click("#go")
            expect(page.locator("#status")).to_contain_text("Done", timeout=30_000)
            size = page.eval_on_selector("#after", "img => [img.naturalWidth, img.naturalHeight]")
            assert size == expected
            expect(page.locator("#download")).to_be_visible()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 1000


@pytest.mark.slow
def test_texture_tab_samples_and_downloads(live_server: str, tmp_path: Path) -> None:
    """The Texture tab (#17): pick a texture, set size, seed and tiling, sample, and the download matches."""
    reason = _chromium_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(live_server + "/")
            page.click("#tab-texture")
            expect(page.locator("#texture-section")).to_be_visible()
            expect(page.locator("#styles-section")).to_be_hidden()
            # INSTYLE_DOCS_TEXTURE=NAME (a shipped texture) draws docs/webapp-texture.png with real weights
            tex_name = os.environ.get("INSTYLE_DOCS_TEXTURE") or "tiny-texture"
            texture = page.locator(f'.texture[data-name="{tex_name}"]')
            expect(texture.locator("img")).to_have_js_property("complete", True)
            texture.click()
            expect(texture).to_have_attribute("aria-checked", "true")
            w, h = (256, 192) if os.environ.get("INSTYLE_DOCS_TEXTURE") else (96, 64)  # the docs picture: larger
            page.fill("#texture-width", str(w))
            page.fill("#texture-height", str(h))
            page.fill("#texture-seed", "7")
            page.check("#texture-tile")
            page.click("#texture-go")
            expect(page.locator("#texture-status")).to_contain_text("Done", timeout=30_000)
            size = page.eval_on_selector("#texture-out", "img => [img.naturalWidth, img.naturalHeight]")
            assert size == [w, h]
            expect(page.locator("#texture-tiled")).to_have_js_property("width", 2 * w)
            link = page.locator("#texture-download")
            expect(link).to_have_attribute("download", f"{tex_name}-seed7-{w}x{h}-tile.png")
            docs = os.environ.get("INSTYLE_UPDATE_DOCS") == "1"
            page.screenshot(path=str(Path("docs/webapp-texture.png") if docs else tmp_path / "texture.png"),
                            full_page=True)
            page.fill("#texture-width", "90")  # not a multiple of the grid (4 px tiny, 32 px real): refused
            page.click("#texture-go")
            expect(page.locator("#texture-status")).to_contain_text(
                "multiples of 32" if os.environ.get("INSTYLE_DOCS_TEXTURE") else "multiples of 4")
            page.click("#tab-photo")
            expect(page.locator("#styles-section")).to_be_visible()
            expect(page.locator("#texture-section")).to_be_hidden()
        finally:
            browser.close()


"""Live mode: the /api/live WebSocket through TestClient, its scheduler, and the Live tab in a real Chromium."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from instyle.apps.serve import create_app
from instyle.apps.serve.live import BUSY_CODE, MAX_FRAME_BYTES, RESULT_HEADER, Frame, LiveConfig, LiveHub, Viewer

ROOT = Path(__file__).resolve().parents[1]


def _image(w: int, h: int, fmt: str = "JPEG", colour: tuple[int, int, int] | None = None, seed: int = 0) -> bytes:
    if colour is None:
        arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
        img = Image.fromarray(arr)
    else:
        img = Image.new("RGB", (w, h), colour)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _frame(number: int, data: bytes) -> bytes:
    return struct.pack(">I", number) + data


def _result(ws: Any) -> tuple[int, int, int, Image.Image]:
    """The next binary result; fails on an error message instead of waiting forever."""
    message = ws.receive()
    assert message.get("bytes") is not None, f"expected a result, got {message}"
    data = message["bytes"]
    number, server_us, dropped = RESULT_HEADER.unpack_from(data)
    return number, server_us, dropped, Image.open(io.BytesIO(data[RESULT_HEADER.size:]))


def _hello(ws: Any, style: str | None = "tiny", **controls: Any) -> dict[str, Any]:
    hello = ws.receive_json()
    assert hello["type"] == "hello"
    if style or controls:
        ws.send_text(json.dumps({"type": "config", **({"style": style} if style else {}), **controls}))
        ack = ws.receive_json()
        assert ack["type"] == "config", ack
    return hello


@pytest.fixture(scope="module")
def client(model_file: Path) -> Iterator[TestClient]:
    app = create_app(models={"tiny": model_file}, device="cpu", backend="eager", max_live=3)
    with TestClient(app) as c:
        yield c


def test_hello_defaults_to_a_fast_style_and_results_keep_the_frame_size(client: TestClient) -> None:
    with client.websocket_connect("/api/live") as ws:
        hello = _hello(ws, style=None)
        assert hello["config"]["style"].endswith("-fast"), "live mode starts on a fast style"
        assert hello["limits"]["max_side"] == 1280 and hello["limits"]["max_viewers"] == 3
        ws.send_text(json.dumps({"type": "config", "style": "tiny"}))
        assert ws.receive_json() == {"type": "config", "style": "tiny", "strength": None, "scale": None,
                                     "stroke": None, "preserve_color": False}
        for number, (w, h, fmt) in enumerate([(64, 48, "JPEG"), (50, 70, "PNG"), (96, 40, "WEBP")], start=7):
            ws.send_bytes(_frame(number, _image(w, h, fmt)))
            got, server_us, dropped, out = _result(ws)
            assert (got, dropped, out.format, out.size) == (number, 0, "JPEG", (w, h))
            assert server_us > 0


def test_controls_apply_from_the_next_frame(client: TestClient) -> None:
    frame = _image(64, 48, colour=(200, 40, 30))
    with client.websocket_connect("/api/live") as ws:
        _hello(ws, strength=1.0)
        ws.send_bytes(_frame(1, frame))
        styled = np.asarray(_result(ws)[3], dtype=float)
        ws.send_text(json.dumps({"strength": 0}))  # "type" may be left out; fields not sent are kept
        assert ws.receive_json()["strength"] == 0.0
        ws.send_bytes(_frame(2, frame))
        photo = np.asarray(_result(ws)[3], dtype=float)
    assert np.abs(photo - [200, 40, 30]).max() < 12, "strength 0 gives the frame back (up to JPEG)"
    assert np.abs(styled - [200, 40, 30]).mean() > 20, "the random-weight net does change the frame"


@pytest.mark.parametrize(("data", "words"), [
    (_frame(5, b"this is not an image at all"), "frame 5: not a JPEG, PNG or WebP image"),
    (_frame(5, _image(40, 40, "GIF")), "frame 5: not a JPEG, PNG or WebP image"),
    (b"\x00\x01", "4-byte big-endian frame number"),
    (_frame(5, _image(1400, 800, colour=(9, 9, 9))), "frame 5: 1400x800 is over the live limit"),
    (_frame(5, _image(720, 1300, colour=(9, 9, 9))), "over the live limit"),
    (_frame(5, _image(16, 300, colour=(9, 9, 9))), "16x300 is too small for live"),
    (_frame(5, _image(64, 48)[:1000]), "frame 5: the image data is corrupt"),  # a valid header, cut short
    (_frame(5, os.urandom(MAX_FRAME_BYTES + 1)), "over the live limit of 2 MB"),
])
def test_bad_frames_get_a_clear_error_and_the_stream_goes_on(client: TestClient, data: bytes, words: str) -> None:
    with client.websocket_connect("/api/live") as ws:
        _hello(ws)
        ws.send_bytes(data)
        error = ws.receive_json()
        assert error["type"] == "error" and words in error["message"], error
        assert error["frame"] == (None if len(data) < 5 else 5)
        ws.send_bytes(_frame(6, _image(48, 32)))
        assert _result(ws)[0] == 6


@pytest.mark.parametrize(("text", "words"), [
    ("strength=1", "a control message is a JSON object"),
    ('["config"]', "a control message is a JSON object"),
    ('{"type": "frame"}', '"type": "config"'),
    ('{"style": "nope"}', "unknown style 'nope'"),
    ('{"strength": 1.5}', "strength must be a number from 0 to 1"),
    ('{"strength": true}', "strength must be a number"),
    ('{"scale": 0}', "scale must be a number from 0.1 to 8"),
    ('{"preserve_color": "yes"}', "preserve_color must be true or false"),
    ('{"strenght": 0.5}', "unknown control field(s): strenght"),
])
def test_bad_control_messages_get_a_clear_error_and_change_nothing(client: TestClient, text: str, words: str) -> None:
    with client.websocket_connect("/api/live") as ws:
        _hello(ws, strength=0.0)
        ws.send_text(text)
        error = ws.receive_json()
        assert error["type"] == "error" and words in error["message"] and error["frame"] is None, error
        ws.send_text("{}")
        assert ws.receive_json() == {"type": "config", "style": "tiny", "strength": 0.0, "scale": None,
                                     "stroke": None, "preserve_color": False}


def test_stale_frames_are_dropped_not_queued(client: TestClient) -> None:
    """A flood of frames: the server stylizes the newest one waiting, never a backlog."""
    colours = [(10 * i, 250 - 10 * i, 128) for i in range(20)]
    with client.websocket_connect("/api/live") as ws:
        _hello(ws, strength=0.0)  # the result then shows which frame it came from
        frames = [_frame(i, _image(320, 240, colour=colour)) for i, colour in enumerate(colours)]
        for frame in frames:  # encoded beforehand: they arrive far faster than one stylization
            ws.send_bytes(frame)
        results = []
        while not results or results[-1][0] != len(colours) - 1:
            results.append(_result(ws))
    numbers = [r[0] for r in results]
    assert len(results) < len(colours), "every frame was stylized: nothing was dropped"
    assert numbers == sorted(numbers) and numbers[-1] == 19, numbers
    last = np.asarray(results[-1][3], dtype=float).reshape(-1, 3).mean(axis=0)
    assert np.abs(last - colours[-1]).max() < 6, "the last result is the last frame sent"
    assert results[-1][2] == len(colours) - len(results), "each frame was either stylized or counted as dropped"


def test_viewers_are_served_fairly(client: TestClient) -> None:
    """Two viewers flooding at once both get their newest frame stylized."""
    with client.websocket_connect("/api/live") as a, client.websocket_connect("/api/live") as b:
        _hello(a)
        _hello(b)
        for i in range(8):
            a.send_bytes(_frame(i, _image(160, 120, seed=i)))
            b.send_bytes(_frame(100 + i, _image(160, 120, seed=i)))
        for ws, last in ((a, 7), (b, 107)):
            numbers = []
            while not numbers or numbers[-1] != last:
                numbers.append(_result(ws)[0])


def test_over_the_limit_viewer_gets_a_message_and_a_clean_close(model_file: Path) -> None:
    app = create_app(models={"tiny": model_file}, device="cpu", backend="eager", max_live=1)
    with TestClient(app) as c:
        with c.websocket_connect("/api/live") as first:
            _hello(first)
            with c.websocket_connect("/api/live") as second:
                busy = second.receive_json()
                assert busy == {"type": "busy", "message": "the live view is full (1 viewer at once); try again later"}
                with pytest.raises(WebSocketDisconnect) as closed:
                    second.receive_json()
                assert closed.value.code == BUSY_CODE
            first.send_bytes(_frame(1, _image(48, 32)))
            assert _result(first)[0] == 1, "the first viewer is not disturbed"
        assert _wait(lambda: app.state.live.viewers == 0)
        with c.websocket_connect("/api/live") as again:  # the place is free once the first one left
            _hello(again)
            again.send_bytes(_frame(2, _image(48, 32)))
            assert _result(again)[0] == 2
        assert _wait(lambda: app.state.live._running == 0), "the workers stop with the last viewer"


def test_live_off(model_file: Path) -> None:
    with TestClient(create_app(models={"tiny": model_file}, device="cpu", max_live=0)) as c, \
            c.websocket_connect("/api/live") as ws:
        msg = ws.receive_json()
        assert msg["type"] == "unavailable" and "--max-live 0" in msg["message"]
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()


@pytest.mark.parametrize(("origin", "allowed"), [
    ("http://evil.example", False), ("http://testserver.evil.example", False), ("http://testserver", True),
    (None, True),
])
def test_only_this_servers_page_may_connect(client: TestClient, origin: str | None, allowed: bool) -> None:
    headers = {"origin": origin} if origin else {}
    with client.websocket_connect("/api/live", headers=headers) as ws:
        msg = ws.receive_json()
        if allowed:
            assert msg["type"] == "hello"
        else:
            assert msg == {"type": "forbidden", "message": "live connections from another site's page are refused"}
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008


def _wait(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_hub_round_robin_and_latest_frame_wins() -> None:
    """The scheduler alone, with a gate in place of the network, so the order is exact."""
    order: list[tuple[str, int]] = []
    gate = threading.Semaphore(0)
    started = threading.Semaphore(0)

    def process(frame: Frame, config: LiveConfig) -> bytes:
        order.append((config.style, frame.number))
        started.release()
        gate.acquire()
        return b"jpeg"

    hub = LiveHub(process, max_viewers=3)
    delivered: dict[str, list[Any]] = {"a": [], "b": [], "c": []}
    viewers = {k: Viewer(LiveConfig(k), delivered[k].append) for k in "abc"}
    for v in viewers.values():
        assert hub.join(v)
    assert not hub.join(Viewer(LiveConfig("d"), print)), "max_viewers is a hard limit"
    hub.submit(viewers["a"], Frame(1, b""))
    assert started.acquire(timeout=5)  # a1 is being stylized
    hub.submit(viewers["a"], Frame(2, b""))
    hub.submit(viewers["a"], Frame(3, b""))  # replaces a2: stale
    hub.submit(viewers["b"], Frame(1, b""))
    hub.submit(viewers["c"], Frame(1, b""))
    for _ in range(3):
        gate.release()
        assert started.acquire(timeout=5)
    hub.submit(viewers["b"], Frame(2, b""))
    gate.release()
    assert started.acquire(timeout=5)
    gate.release()
    assert _wait(lambda: sum(len(d) for d in delivered.values()) == 5)
    assert order == [("a", 1), ("b", 1), ("c", 1), ("a", 3), ("b", 2)], "round robin, newest frame per viewer"
    header = RESULT_HEADER.unpack_from(delivered["a"][-1])
    assert header[0] == 3 and header[2] == 1 and delivered["a"][-1].endswith(b"jpeg")
    for v in viewers.values():
        hub.leave(v)
    assert _wait(lambda: hub._running == 0)


def test_hub_turns_a_crash_into_an_error_message() -> None:
    def process(frame: Frame, config: LiveConfig) -> bytes:
        raise ValueError("boom")

    hub = LiveHub(process, max_viewers=1)
    got: list[Any] = []
    viewer = Viewer(LiveConfig("x"), got.append)
    hub.join(viewer)
    hub.submit(viewer, Frame(4, b""))
    assert _wait(lambda: bool(got))
    assert got == [{"type": "error", "message": "stylization failed: ValueError: boom", "frame": 4}]
    hub.submit(viewer, Frame(5, b""))
    assert _wait(lambda: len(got) == 2), "the worker survived"
    hub.leave(viewer)


def test_cli_passes_max_live(monkeypatch: pytest.MonkeyPatch) -> None:
    from instyle.apps.cli import main

    seen: dict[str, Any] = {}
    monkeypatch.setattr("instyle.apps.serve.serve", lambda **kw: seen.update(kw))
    assert main(["serve", "--max-live", "2", "--port", "9"]) == 0
    assert seen["max_live"] == 2 and seen["port"] == 9


@pytest.mark.slow
def test_live_benchmark_runs(model_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "live.py"), "-m", str(model_file), "--sizes",
                           "64x48", "--seconds", "1", "--rounds", "1", "--flood-ms", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "live-cpu.json").read_text())["rows"]
    assert {r["client"] for r in rows} == {"bare Stylizer", "paced", "flood", "2 viewers"}
    assert all(r["fps"] > 0 for r in rows)
    flood = next(r for r in rows if r["client"] == "flood")
    assert flood["dropped"] > 0 and flood["sent"] > flood["frames"], "a flood's extra frames are dropped, not queued"


# ----------------------------------------------------------------------------- the Live tab in Chromium

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
       "img-src 'self' blob: data:; media-src 'self' blob: mediastream:")


def _write_y4m(path: Path, photo: Path, w: int = 640, h: int = 480, n: int = 30) -> None:
    """A slow pan over a photo as raw YUV 4:2:0 frames, for Chromium's --use-file-for-fake-video-capture."""
    img = Image.open(photo).convert("RGB")
    scale = max((w + n * 2) / img.width, h / img.height)
    img = img.resize((round(img.width * scale) + 1, round(img.height * scale) + 1))
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F15:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(n):
            ycc = np.asarray(img.crop((2 * i, 0, 2 * i + w, h)).convert("YCbCr"))
            fh.write(b"FRAME\n" + ycc[..., 0].tobytes())
            for c in (1, 2):
                fh.write(ycc[::2, ::2, c].tobytes())


def _write_webm(path: Path, w: int = 160, h: int = 120, n: int = 30) -> bool:
    """A VP8 clip of a moving square, for the video-file input; False when PyAV or libvpx is missing."""
    try:
        import av
    except ImportError:
        return False
    if "libvpx" not in av.codecs_available:
        return False
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=15)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.full((h, w, 3), (40, 90, 160), np.uint8)
            img[30:70, 4 * i % (w - 40):4 * i % (w - 40) + 40] = (240, 200, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return True


@pytest.mark.slow
def test_live_tab_end_to_end(model_file: Path, tmp_path: Path) -> None:
    """The fake camera's frames go out, stylized frames come back, the read-out moves, controls apply live."""
    from test_serve import CHROMIUM, CHROMIUM_ARGS, _chromium_reason, _free_port

    reason = _chromium_reason()
    if reason:
        pytest.skip(reason)
    import uvicorn
    from playwright.sync_api import expect, sync_playwright

    docs = os.environ.get("INSTYLE_UPDATE_DOCS") == "1"  # docs/webapp-live.png: a demo photo, a real style
    style = "starry-night-fast" if docs else "tiny"
    app = create_app(models={} if docs else {"tiny": model_file}, device="cpu", backend="auto" if docs else "eager",
                     max_live=2)

    @app.middleware("http")
    async def csp(request: Any, call_next: Any) -> Any:  # the policy the app is to ship with: no inline code
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        return response

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert _wait(lambda: server.started, 20), "uvicorn did not start"
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    if docs:
        clip = tmp_path / "clip.y4m"
        _write_y4m(clip, ROOT / "src/instyle/assets/demo/chelsea.jpg")
        args.append(f"--use-file-for-fake-video-capture={clip}")
    problems: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.on("console", lambda m: problems.append(m.text) if m.type == "error"
                        and not m.location.get("url", "").endswith("/favicon.ico") else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(f"http://127.0.0.1:{port}/")
                expect(page.locator("#live-camera")).to_be_hidden()
                page.click("#tab-live")
                expect(page.locator("#go")).to_be_hidden()
                expect(page.locator("#live-fps")).to_have_text("– frames/s")
                page.click(f'.style[data-name="{style}"]')
                page.click("#live-camera")
                page.wait_for_function("() => Number(document.getElementById('live-output').dataset.frames) >= 4",
                                       timeout=60_000)
                expect(page.locator("#live-fps")).to_have_text(re.compile(r"^\d+\.\d frames/s$"))
                fps = float(page.locator("#live-fps").inner_text().split()[0])
                assert fps > 0, "the frames/s read-out moved off zero"
                expect(page.locator("#live-latency")).to_have_text(re.compile(r"^\d+ ms latency$"))
                size = page.eval_on_selector("#live-output", "c => [c.width, c.height]")
                vw, vh = page.eval_on_selector("#live-input", "v => [v.videoWidth, v.videoHeight]")
                scale = min(1, 320 / vw, 240 / vh)
                assert size == [round(vw * scale), round(vh * scale)], f"the camera's {vw}x{vh} fits 320x240"
                spread = page.eval_on_selector("#live-output", """c => {
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let s = 0, s2 = 0;
                    for (let i = 0; i < d.length; i += 4) { s += d[i + 1]; s2 += d[i + 1] ** 2; }
                    const n = d.length / 4; return Math.sqrt(s2 / n - (s / n) ** 2); }""")
                assert spread > 5, "a stylized picture was drawn, not a blank canvas"
                hub = app.state.live
                assert hub.viewers == 1 and hub._viewers[0].config.style == style
                page.click("#preserve")  # the colour switch and the strength slider reach the server live
                page.locator("#strength").focus()
                page.keyboard.press("Home")
                assert _wait(lambda: hub._viewers[0].config.preserve_color and hub._viewers[0].config.strength == 0)
                if docs:
                    page.keyboard.press("End")
                    page.click("#preserve")
                    page.select_option("#live-size", "640x480")
                    page.wait_for_function("() => document.getElementById('live-output').width === 640",
                                           timeout=60_000)
                    page.wait_for_timeout(3000)
                before = int(page.eval_on_selector("#live-output", "c => c.dataset.frames"))
                more = f"() => Number(document.getElementById('live-output').dataset.frames) > {before}"
                page.wait_for_function(more, timeout=60_000)
                if docs:  # the picture shows the style thumbnails, which load while the stream runs
                    page.wait_for_function("() => [...document.querySelectorAll('img[src*=\"thumbnail\"]')].every("
                                           "i => i.complete && i.naturalWidth > 0)", timeout=120_000)
                shot = ROOT / "docs/webapp-live.png" if docs else tmp_path / "live.png"
                page.screenshot(path=str(shot), full_page=True)
                if docs:  # 256 colours, as docs/make_pictures.py does for webapp.png: a few hundred KB, not MBs
                    img = Image.open(shot).convert("RGB")
                    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(shot, optimize=True)
                page.click("#live-stop")
                assert _wait(lambda: hub.viewers == 0), "Stop closes the socket"
                expect(page.locator("#live-status")).to_have_text("Stopped")
                clip = tmp_path / "clip.webm"
                if not docs and _write_webm(clip):  # a chosen video file instead of the camera
                    page.set_input_files("#live-file", str(clip))  # start() resets the frame counter
                    page.wait_for_function("() => Number(document.getElementById('live-output').dataset.frames) "
                                           "> 2 && document.getElementById('live-output').width === 160",
                                           timeout=60_000)
                    assert page.eval_on_selector("#live-output", "c => [c.width, c.height]") == [160, 120], \
                        "a 160x120 video is sent as it is, not enlarged"
                    page.click("#live-stop")
                    assert _wait(lambda: hub.viewers == 0)
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not problems, f"the page logged errors (a CSP violation shows up here): {problems}"
    assert shot.stat().st_size > 1000

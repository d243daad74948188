"""Hostile clients against a real ``instyle serve`` process on 127.0.0.1, and bad start-up arguments.

One uvicorn server runs for the whole module (``serve()`` in a subprocess, 1 MB upload limit, 1 MP
pixel limit, 3 s body deadline, its own TMPDIR so spooled uploads can be measured). Every case is an
attack with a bounded loop; the last case checks that the server is still alive and that its peak
memory stayed within a ceiling of the memory it had after warming up.
"""

from __future__ import annotations

import io
import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")
httpx = pytest.importorskip("httpx")

from tests.hostile.conftest import assert_refused, snapshot  # noqa: E402

import instyle  # noqa: E402

MAX_UPLOAD_MB = 1
MAX_PIXELS = 1_000_000
BODY_TIMEOUT_S = 3.0
RSS_CEILING_MB = 400  # above the warmed-up server: two tiny stylizations at a time need far less


def _png(w: int, h: int, seed: int = 0, icc: bytes | None = None) -> bytes:
    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **({"icc_profile": icc} if icc else {}))
    return buf.getvalue()


def _flat_png(w: int, h: int) -> bytes:
    """Many pixels in a few kilobytes: a scale bomb that passes any upload-size limit."""
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (90, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    spool: Path
    baseline_kb: int = 0

    def spooled_bytes(self) -> int:
        """Bytes in the server's open files under its TMPDIR (unnamed O_TMPFILE spools included)."""
        total = 0
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd).startswith(str(self.spool)):
                    total += os.stat(fd).st_size
            except OSError:
                continue  # closed meanwhile
        return total

    def alive(self) -> bool:
        return self.proc.poll() is None and httpx.get(self.url + "/healthz", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def server(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    spool = tmp_path_factory.mktemp("spool")
    port = _free_port()
    code = ("import sys; from instyle.apps.serve import serve; "
            f"serve(port={port}, models={{'tiny': {str(model_file)!r}}}, max_upload_mb={MAX_UPLOAD_MB}, "
            f"max_pixels={MAX_PIXELS}, body_timeout_s={BODY_TIMEOUT_S}, device='cpu', backend='eager')")
    src = str(Path(instyle.__file__).resolve().parents[1])
    env = {**os.environ, "TMPDIR": str(spool), "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "INSTYLE_CACHE": str(tmp_path_factory.mktemp("cache"))}
    log = (spool.parent / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT)
    srv = Server(proc, f"http://127.0.0.1:{port}", port, spool)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (spool.parent / "server.log").read_text()
        try:
            if httpx.get(srv.url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("the server did not start in 60 s")
    warm = _post(srv, _png(64, 48))  # first request builds the runner: count that as the baseline
    assert warm.status_code == 200, warm.text
    srv.baseline_kb = _kb(proc.pid, "VmRSS")
    yield srv
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _post(srv: Server, data: bytes, name: str = "photo.png", timeout: float = 60, **form: str) -> httpx.Response:
    return httpx.post(srv.url + "/api/stylize", files={"image": (name, data, "image/png")},
                      data={"style": "tiny", **form}, timeout=timeout)


# ----------------------------------------------------------------------------- body size and speed

_BOUNDARY = "hostileboundary0123456789"


def _form_head(name: str = "big.png") -> bytes:
    return (f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="style"\r\n\r\ntiny\r\n'
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()


def _connect(srv: Server, headers: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)  # bytes we count as sent are near the server
    s.sendall((f"POST /api/stylize HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
               f"Content-Type: multipart/form-data; boundary={_BOUNDARY}\r\n{headers}\r\n").encode())
    return s


def _status(s: socket.socket, timeout: float = 30) -> int | None:
    """The response's status code, or None when the server reset the connection before we read it."""
    s.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            part = s.recv(65536)
            if not part:
                break
            data += part
    except (ConnectionResetError, TimeoutError):
        pass
    return int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.1") else None


@pytest.mark.parametrize("attack_mb", [50, 400])
def test_chunked_body_over_the_limit_is_refused_while_it_streams(server: Server, attack_mb: int) -> None:
    """#16 item 6: a chunked body has no Content-Length, so only counting the bytes can stop it."""
    s = _connect(server, "Transfer-Encoding: chunked\r\n")
    block = os.urandom(256 << 10)
    sent, peak_spool, answered = 0, 0, False
    head = _form_head()
    try:
        s.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        while sent < attack_mb << 20:
            if select.select([s], [], [], 0)[0]:
                answered = True
                break
            s.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            sent += len(block)
            if sent % (4 << 20) == 0:
                peak_spool = max(peak_spool, server.spooled_bytes())
    except (BrokenPipeError, ConnectionResetError):
        answered = True
    status = _status(s)
    s.close()
    assert answered, f"the server read all {attack_mb} MB of a body over its {MAX_UPLOAD_MB} MB limit"
    assert status in (413, None), status
    assert sent < 12 << 20, f"{sent >> 20} MB were accepted before the 413"
    assert peak_spool <= (MAX_UPLOAD_MB + 1) << 20, f"{peak_spool} bytes spooled to disk"
    assert server.spooled_bytes() == 0


def test_declared_length_over_the_limit_is_refused_before_the_body(server: Server) -> None:
    s = _connect(server, f"Content-Length: {300 << 20}\r\n")
    status = _status(s, timeout=10)  # no body byte sent at all
    s.close()
    assert status == 413


def test_slow_body_gets_408_within_the_deadline_and_others_are_served(server: Server) -> None:
    head = _form_head()
    s = _connect(server, f"Content-Length: {len(head) + 1000}\r\n")
    s.sendall(head)
    start = time.monotonic()
    answered = False
    for _ in range(100):  # one byte per 0.1 s: 1000 bytes would take 100 s
        if select.select([s], [], [], 0.1)[0]:
            answered = True
            break
        try:
            s.sendall(b"x")
        except (BrokenPipeError, ConnectionResetError):
            answered = True
            break
        if _ == 5:  # while the slow client holds its connection, others are served
            assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    elapsed = time.monotonic() - start
    status = _status(s, timeout=5)
    s.close()
    assert answered and status in (408, None), status
    assert elapsed < BODY_TIMEOUT_S + 3, elapsed


def test_many_slow_connections_do_not_stall_the_server(server: Server) -> None:
    socks = [_connect(server, "Content-Length: 5000\r\n") for _ in range(30)]
    try:
        for s in socks:
            s.sendall(_form_head())
        t0 = time.monotonic()
        r = _post(server, _png(40, 30), timeout=20)
        assert r.status_code == 200 and time.monotonic() - t0 < 15
    finally:
        for s in socks:
            s.close()


# ----------------------------------------------------------------------------- pixels


@pytest.mark.parametrize(("side", "scale", "status"), [
    (800, "0.1", 413),   # 0.64 MP upload, 64 MP for the network: #16 item 7
    (800, "0.5", 413),   # 2.56 MP after scaling
    (1001, "1", 413),    # over the limit before any scaling
    (800, "2", 200),     # 0.16 MP: fine
])
def test_pixels_are_bounded_after_the_stroke_scale(server: Server, side: int, scale: str, status: int) -> None:
    t0 = time.monotonic()
    r = _post(server, _flat_png(side, side), scale=scale, timeout=30)
    assert r.status_code == status, r.text[:300]
    if status == 413:
        assert "limit of 1000000" in r.json()["detail"] and time.monotonic() - t0 < 10
        assert "instyle-upload-" not in r.json()["detail"], "no server-side temp names in answers"
    else:
        assert Image.open(io.BytesIO(r.content)).size == (side, side)


def test_concurrent_uploads_are_all_answered(server: Server) -> None:
    sizes = [(48 + i, 40 + 2 * i) for i in range(24)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        rs = list(pool.map(lambda wh: _post(server, _png(*wh, seed=wh[0])), sizes))
    assert [r.status_code for r in rs] == [200] * len(sizes)
    assert [Image.open(io.BytesIO(r.content)).size for r in rs] == sizes


# ----------------------------------------------------------------------------- names, forms, headers


@pytest.mark.parametrize("name", ["写真.png", "café.png", 'quote"semi;colon.png', "..\\..\\windows\\evil.png",
                                  "../../etc/passwd.png", "emoji-😀.png", "tab\tname.png", ".png", "x" * 400 + ".png"])
def test_any_upload_name_gets_a_valid_content_disposition(server: Server, name: str) -> None:
    """#16 item 9: the header must be Latin-1; the real name travels RFC 5987-encoded."""
    r = _post(server, _png(30, 20), name=name)
    assert r.status_code == 200, r.text[:200]
    header = r.headers["content-disposition"]
    header.encode("ascii")  # both parts are plain ASCII
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback and all(ch.isalnum() or ch in "._ ()+-" for ch in fallback), fallback
    encoded = header.split("filename*=UTF-8''", 1)[1]
    real = urllib.parse.unquote(encoded, errors="strict")
    assert real.endswith("-tiny.png") and "/" not in real and "\\" not in real
    assert "\t" not in real and len(real) <= 150


@pytest.mark.parametrize(("files", "data", "status"), [
    (None, {"style": "tiny"}, 422),                                         # no image at all
    ({"image": ("a.png", _png(20, 20), "image/png")}, {}, 422),              # no style
    ({"image": ("a.png", _png(20, 20), "image/png")}, {"style": "nope"}, 404),
    ({"image": ("a.png", b"", "image/png")}, {"style": "tiny"}, 400),
    ({"image": ("a.png", b"GIF89a broken", "image/gif")}, {"style": "tiny"}, 415),
    ({"image": ("a.png", _png(20, 20), "image/png")}, {"style": "tiny", "strength": "nan"}, 422),
    ({"image": ("a.png", _png(20, 20), "image/png")}, {"style": "tiny", "scale": "0"}, 422),
    ({"image": ("a.png", _png(20, 20), "image/png")}, {"style": "tiny", "format": "gif"}, 422),
    ({"image": ("a.png", os.urandom(MAX_UPLOAD_MB << 20 | 1000), "image/png")}, {"style": "tiny"}, 413),
])
def test_malformed_forms_get_a_clear_4xx(server: Server, files: dict | None, data: dict, status: int) -> None:
    r = httpx.post(server.url + "/api/stylize", files=files, data=data, timeout=30)
    assert r.status_code == status, r.text[:300]
    assert r.json()["detail"]


@pytest.mark.parametrize("body", [b'{"style": "tiny"}', b"--nope\r\n\r\n", b"\x00" * 1000])
def test_non_multipart_bodies_get_a_4xx(server: Server, body: bytes) -> None:
    r = httpx.post(server.url + "/api/stylize", content=body, timeout=10,
                   headers={"content-type": "multipart/form-data; boundary=nope"})
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/styles", "/healthz", "/missing", "/docs"])
def test_security_headers_on_every_response(server: Server, path: str) -> None:
    r = httpx.get(server.url + path, timeout=10)
    h = r.headers
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY" and h["referrer-policy"] == "no-referrer"
    policy = dict(p.strip().split(" ", 1) for p in h["content-security-policy"].split(";"))
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert f"ws://127.0.0.1:{server.port}" in policy["connect-src"] and "'self'" in policy["connect-src"]
    if path != "/docs":  # Swagger UI's CDN bootstrap gets its own, narrower exception
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
        assert set(policy["img-src"].split()) == {"'self'", "blob:", "data:"}
        assert set(policy["media-src"].split()) == {"'self'", "blob:", "mediastream:"}


def test_security_headers_on_refusals_too(server: Server) -> None:
    s = _connect(server, f"Content-Length: {500 << 20}\r\n")
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data and (part := s.recv(65536)):
        data += part
    s.close()
    head = data.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 413") and b"x-content-type-options: nosniff" in head
    assert b"content-security-policy: " in head


def test_icc_profile_survives_the_server(server: Server) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for fmt in ("png", "jpeg"):
        r = _post(server, _png(40, 30, icc=icc), format=fmt)
        assert r.status_code == 200
        assert Image.open(io.BytesIO(r.content)).info.get("icc_profile") == icc, fmt


def test_zz_server_survived_with_bounded_memory(server: Server) -> None:
    """Runs last in this module: alive after every attack above, and its peak RSS within the ceiling."""
    assert server.alive()
    peak = _kb(server.proc.pid, "VmHWM")
    print(f"server RSS: {server.baseline_kb // 1024} MB warmed up, peak {peak // 1024} MB")  # shown with -s
    assert peak - server.baseline_kb < RSS_CEILING_MB * 1024, (
        f"peak RSS {peak // 1024} MB, {(peak - server.baseline_kb) // 1024} MB over the warmed-up server")
    assert server.spooled_bytes() == 0
    assert not list(server.spool.iterdir()), "temporary upload files left behind"


# ----------------------------------------------------------------------------- start-up refusals (in-process CLI)


@pytest.fixture
def no_listen(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a bad argument slipped through, fail instead of serving forever."""
    import uvicorn

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server started despite a bad argument")

    monkeypatch.setattr(uvicorn.Server, "run", refuse)


@pytest.mark.parametrize(("argv", "says"), [
    (["--port", "99999"], "--port"),
    (["--port", "-1"], "--port"),
    (["--port", "0"], "--port"),
    (["--max-upload-mb", "0"], "--max-upload-mb"),
    (["--max-upload-mb", "nan"], "--max-upload-mb"),
    (["--host", "192.0.2.1"], "cannot listen"),  # TEST-NET: not an address of this machine
])
def test_bad_serve_arguments_are_one_line(cli, no_listen: None, argv: list[str], says: str) -> None:
    assert_refused(cli("serve", *argv), says=says)


def test_busy_port_is_one_line(cli, no_listen: None) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert_refused(cli("serve", "--port", str(port)), says="cannot listen")


def _with_card(src: Path, dst: Path, card_text: str) -> Path:
    """``src``'s weights under a replaced (possibly malformed) embedded card."""
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(src)), str(dst), metadata={"instyle_card": card_text})
    return dst


_GOOD = {"format": "instyle-model/1", "arch": "johnson-half", "norm": "instance", "arch_kwargs": {}}


@pytest.mark.parametrize("card", [
    "{not json",
    "[1, 2, 3]",
    json.dumps({k: v for k, v in _GOOD.items() if k != "arch"}),
    json.dumps({**_GOOD, "arch": "no-such-arch"}),
    json.dumps({**_GOOD, "arch_kwargs": {"nonsense": 3}}),
    json.dumps({**_GOOD, "defaults": {"strength": "strong"}}),
    json.dumps({**_GOOD, "arch": "ulyanov"}),  # weights of another architecture
])
def test_serve_with_a_malformed_model_card_is_one_line(cli, no_listen: None, model_file: Path, tmp_path: Path,
                                                      card: str) -> None:
    bad = _with_card(model_file, tmp_path / "bad.safetensors", card)
    before = snapshot([bad])
    assert_refused(cli("serve", "-m", bad, "--port", str(_free_port()), "--device", "cpu"), unchanged=before)

"""Hostile image files through ``instyle stylize``: broken ones get one line, odd ones just work.

Every file is built here, a few hundred bytes each: truncations, lies about the format, headers that
claim billions of pixels (decompression bombs), FIFOs, and the odd-but-valid kinds (16-bit, CMYK,
float, palette with transparency...). Colour profiles must survive the trip.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from tests.hostile.conftest import Outcome, snapshot


def _rgb(w: int = 23, h: int = 17, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def _encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb() -> bytes:
    """A 100 000 x 100 000 RGB PNG header (30 GB decoded) in 70 bytes."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        _chunk(b"IEND", b"")


def _jpeg_bomb() -> bytes:
    """A small JPEG whose frame header claims 65 000 x 65 000."""
    data = bytearray(_encoded(_rgb(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65_000, 65_000)
    return bytes(data)


def _gif_bomb() -> bytes:
    data = bytearray(_encoded(_rgb(8, 8).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", 65_535, 65_535)  # logical screen size
    return bytes(data)


def _bad_crc_png() -> bytes:
    data = bytearray(_encoded(_rgb(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 8] ^= 0xFF  # flip compressed bytes: the zlib stream (and the CRC) no longer match
    return bytes(data)


BROKEN: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "zero-bytes": ("empty.png", lambda: b"", "not a readable image"),
    "truncated-png": ("cut.png", lambda: _encoded(_rgb(64, 64), "PNG")[:300], "not a readable image"),
    "truncated-jpeg": ("cut.jpg", lambda: _encoded(_rgb(64, 64), "JPEG")[:400], "truncated"),
    "text-as-png": ("notes.png", lambda: b"just some text, not pixels\n" * 4, "unknown or unsupported format"),
    "html-as-jpg": ("page.jpg", lambda: b"<!doctype html><html><body>hi</body></html>", "unknown or unsupported"),
    "random-bytes": ("noise.jpg", lambda: np.random.default_rng(5).bytes(2048), "not a readable image"),
    "corrupt-png-data": ("crc.png", _bad_crc_png, "not a readable image"),
    "png-header-bomb": ("bomb.png", _png_bomb, "decompression-bomb guard"),
    "jpeg-header-bomb": ("bomb.jpg", _jpeg_bomb, "decompression-bomb guard"),
    "gif-header-bomb": ("bomb.gif", _gif_bomb, "decompression-bomb guard"),
}


def assert_one_failed(outcome: Outcome, says: str) -> None:
    """A run whose only input failed: exit 1, one line naming the file's problem, then the summary."""
    assert outcome.code == 1, outcome
    assert "Traceback" not in outcome.err + outcome.out, outcome.err
    lines = outcome.error_lines()
    assert len(lines) == 2, lines
    assert says.lower() in lines[0].lower() and "1 of 1 inputs failed" in lines[1], lines


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_image_gets_one_line_and_nothing_is_written(cli, model_file: Path, tmp_path: Path, case: str) -> None:
    name, build, says = BROKEN[case]
    src = tmp_path / name
    src.write_bytes(build())
    before = snapshot([src])
    out = tmp_path / "out.png"
    assert_one_failed(cli("stylize", src, "-m", model_file, "-o", out), says)
    assert not out.exists() and snapshot([src]) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temp files left"


def test_a_fifo_does_not_hang_the_run(cli, model_file: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    # If the guard were missing, the decoder would block on open(); a writer that closes unblocks it.
    unblock = threading.Timer(10, lambda: open(fifo, "wb").close())
    unblock.start()
    try:
        assert_one_failed(cli("stylize", fifo, "-m", model_file, "-o", tmp_path / "o.png"), "not a regular file")
    finally:
        unblock.cancel()


def test_folder_without_images_is_one_line(cli, model_file: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no photos here")
    outcome = cli("stylize", tmp_path / "empty", "-m", model_file, "-o", tmp_path / "out")
    assert outcome.code == 2 and outcome.error_lines() and "no images found" in outcome.error_lines()[0]
    assert len(outcome.error_lines()) == 1 and not (tmp_path / "out").exists()


def _odd(kind: str) -> tuple[str, bytes, tuple[int, int]]:
    rgb = _rgb()
    if kind == "png-16bit-rgb":
        arr = (np.random.default_rng(1).random((17, 23, 3)) * 65535).astype(">u2")
        # Pillow cannot write 16-bit RGB PNGs; build one with a raw IHDR (bit depth 16, colour type 2).
        raw = b"".join(b"\0" + row.tobytes() for row in arr)
        ihdr = struct.pack(">IIBBBBB", 23, 17, 16, 2, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
        return "deep.png", data, (23, 17)
    if kind == "png-16bit-gray":
        return "g16.png", _encoded(Image.fromarray((np.arange(23 * 17).reshape(17, 23) * 150).astype(np.uint16)),
                                   "PNG"), (23, 17)
    if kind == "cmyk-jpeg":
        return "print.jpg", _encoded(rgb.convert("CMYK"), "JPEG"), (23, 17)
    if kind == "float-tiff":
        return "f.tif", _encoded(Image.fromarray(np.random.default_rng(2).random((17, 23)).astype(np.float32)),
                                 "TIFF"), (23, 17)
    if kind == "png-named-jpg":
        return "liar.jpg", _encoded(rgb, "PNG"), (23, 17)
    if kind == "palette-transparency":
        p = rgb.convert("P")
        return "pal.png", _encoded(p, "PNG", transparency=0), (23, 17)
    if kind == "one-pixel":
        return "dot.png", _encoded(rgb.resize((1, 1)), "PNG"), (1, 1)
    if kind == "sliver":
        return "sliver.png", _encoded(rgb.resize((900, 3)), "PNG"), (900, 3)
    if kind == "animated-gif":
        frames = [rgb.convert("P"), _rgb(seed=3).convert("P")]
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
        return "anim.gif", buf.getvalue(), (23, 17)
    if kind == "gray-alpha":
        return "la.png", _encoded(rgb.convert("LA"), "PNG"), (23, 17)
    raise AssertionError(kind)


ODD = ["png-16bit-rgb", "png-16bit-gray", "cmyk-jpeg", "float-tiff", "png-named-jpg", "palette-transparency",
       "one-pixel", "sliver", "animated-gif", "gray-alpha"]


@pytest.mark.parametrize("kind", ODD)
def test_odd_but_valid_images_are_stylized(cli, model_file: Path, tmp_path: Path, kind: str) -> None:
    name, data, size = _odd(kind)
    src = tmp_path / name
    src.write_bytes(data)
    out = tmp_path / "out.png"
    outcome = cli("stylize", src, "-m", model_file, "-o", out, "--backend", "eager")
    assert outcome.code == 0 and not outcome.error_lines(), outcome
    assert Image.open(out).size == size
    assert src.read_bytes() == data


def _profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(("src_fmt", "out_ext"), [("PNG", ".png"), ("PNG", ".jpg"), ("JPEG", ".jpg"),
                                                  ("PNG", ".webp"), ("JPEG", ".tiff")])
def test_icc_profile_is_kept(cli, model_file: Path, tmp_path: Path, src_fmt: str, out_ext: str) -> None:
    """#16 item 11: fails on the old code, which dropped the profile (wide-gamut photos shift colour)."""
    icc = _profile()
    src = tmp_path / ("in." + src_fmt.lower())
    src.write_bytes(_encoded(_rgb(), src_fmt, icc_profile=icc))
    out = tmp_path / f"out{out_ext}"
    assert cli("stylize", src, "-m", model_file, "-o", out, "--backend", "eager").code == 0
    assert Image.open(out).info.get("icc_profile") == icc


def test_icc_profile_is_kept_through_the_api(model_file: Path) -> None:
    from instyle.inference.stylizer import Stylizer

    icc = _profile()
    img = Image.open(io.BytesIO(_encoded(_rgb(), "PNG", icc_profile=icc)))
    out = Stylizer.load(model_file, device="cpu", backend="eager")(img)
    assert Image.open(io.BytesIO(_encoded(out, "PNG"))).info.get("icc_profile") == icc

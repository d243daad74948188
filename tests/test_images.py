"""Image I/O on every odd kind of input we could think of, all generated here in tmp_path."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instyle.core.errors import InstyleError
from instyle.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    ensure_not_input,
    list_images,
    load_image,
    pil_to_tensor,
    save_image,
    tensor_to_pil,
)


def _gradient(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    arr = np.stack([x, y, 255 - x], axis=-1).round().astype(np.uint8)
    return Image.fromarray(arr)


def _png16(path: Path, arr: np.ndarray, color_type: int) -> None:
    """Write a 16-bit PNG by hand (Pillow can't write 16-bit RGB)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _one_line(err: pytest.ExceptionInfo[BaseException], *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_plain_rgb_and_odd_sizes(tmp_path: Path) -> None:
    for w, h in [(333, 77), (1, 1), (77, 333)]:
        p = tmp_path / f"img_{w}x{h}.png"
        _gradient(w, h).save(p)
        li = load_image(p)
        assert li.rgb.mode == "RGB" and li.rgb.size == (w, h)
        assert li.alpha is None and li.bits == 8 and li.source_format == "PNG"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = _gradient(60, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = tmp_path / "phone.jpg"
    img.save(p, exif=exif, quality=95)
    li = load_image(p)
    assert li.rgb.size == (20, 60)
    expected = img.transpose(Image.Transpose.ROTATE_270)
    diff = np.abs(np.asarray(li.rgb, np.int16) - np.asarray(expected, np.int16)).mean()
    assert diff < 6


def test_rgba_alpha_round_trip(tmp_path: Path) -> None:
    rgba = _gradient(40, 30).convert("RGBA")
    alpha = np.zeros((30, 40), np.uint8)
    alpha[:, 20:] = 255
    alpha[5:10, 5:10] = 128
    rgba.putalpha(Image.fromarray(alpha))
    src = tmp_path / "in.png"
    rgba.save(src)
    li = load_image(src)
    assert li.alpha is not None and li.alpha.mode == "L"
    assert np.array_equal(np.asarray(li.alpha), alpha)
    out = tmp_path / "out.png"
    save_image(li.rgb, out, alpha=li.alpha)
    back = Image.open(out)
    assert back.mode == "RGBA"
    assert np.array_equal(np.asarray(back.getchannel("A")), alpha)
    # JPEG can't hold alpha: dropped, not an error
    save_image(li.rgb, tmp_path / "out.jpg", alpha=li.alpha)
    assert Image.open(tmp_path / "out.jpg").mode == "RGB"
    # an alpha of another size (model output resized) is stretched to fit
    save_image(li.rgb.resize((80, 60)), tmp_path / "big.webp", alpha=li.alpha)
    assert Image.open(tmp_path / "big.webp").mode == "RGBA"


def test_la_palette_gray_and_bilevel(tmp_path: Path) -> None:
    la = Image.merge("LA", [Image.new("L", (8, 6), 100), Image.new("L", (8, 6), 7)])
    la.save(tmp_path / "la.png")
    li = load_image(tmp_path / "la.png")
    assert li.rgb.getpixel((0, 0)) == (100, 100, 100) and li.alpha.getpixel((0, 0)) == 7

    pal = Image.new("P", (8, 6), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.putpixel((0, 0), 2)
    pal.save(tmp_path / "pal.png", transparency=1)
    li = load_image(tmp_path / "pal.png")
    assert li.alpha is not None
    assert li.alpha.getpixel((1, 1)) == 0 and li.alpha.getpixel((0, 0)) == 255
    assert li.rgb.getpixel((0, 0)) == (0, 255, 0)

    pal.save(tmp_path / "pal_opaque.gif")
    li = load_image(tmp_path / "pal_opaque.gif")
    assert li.alpha is None and li.rgb.getpixel((1, 1)) == (255, 0, 0)

    Image.new("L", (5, 5), 77).save(tmp_path / "gray.png")
    li = load_image(tmp_path / "gray.png")
    assert li.rgb.mode == "RGB" and li.rgb.getpixel((2, 2)) == (77, 77, 77) and li.source_mode == "L"

    Image.new("1", (5, 5), 1).save(tmp_path / "bw.bmp")
    assert load_image(tmp_path / "bw.bmp").rgb.getpixel((0, 0)) == (255, 255, 255)


def test_16bit_gray_is_scaled_not_clipped(tmp_path: Path) -> None:
    g = np.full((4, 6), 65535, np.uint16)
    g[0, 0] = 32768
    g[0, 1] = 0
    _png16(tmp_path / "g16.png", g, 0)
    li = load_image(tmp_path / "g16.png")
    arr = np.asarray(li.rgb)
    assert li.bits == 16
    assert tuple(arr[1, 1]) == (255, 255, 255)
    assert abs(int(arr[0, 0, 0]) - 128) <= 1
    assert arr[0, 1, 0] == 0
    # Pillow's own 16-bit writer path ("I;16" image)
    Image.fromarray(g).save(tmp_path / "g16b.png")
    assert abs(int(np.asarray(load_image(tmp_path / "g16b.png").rgb)[0, 0, 0]) - 128) <= 1


def test_16bit_rgb_png(tmp_path: Path) -> None:
    a = np.full((4, 5, 3), 65535, np.uint16)
    a[0, 0] = [32768, 0, 65535]
    _png16(tmp_path / "rgb16.png", a, 2)
    li = load_image(tmp_path / "rgb16.png")
    assert li.bits == 16 and li.rgb.mode == "RGB"
    px = li.rgb.getpixel((0, 0))
    assert abs(px[0] - 128) <= 1 and px[1] == 0 and px[2] == 255


def test_int32_and_float_modes(tmp_path: Path) -> None:
    f = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], np.float32))
    f.save(tmp_path / "f.tif")
    arr = np.asarray(load_image(tmp_path / "f.tif").rgb)[..., 0]
    assert arr.tolist() == [[0, 128], [255, 64]]
    i = Image.fromarray(np.array([[0, 65535]], np.int32))
    i.save(tmp_path / "i.tif")
    assert np.asarray(load_image(tmp_path / "i.tif").rgb)[0, :, 0].tolist() == [0, 255]


def test_cmyk_and_ycbcr_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    li = load_image(tmp_path / "cmyk.jpg")
    assert li.source_mode == "CMYK" and li.rgb.mode == "RGB"
    r, g, b = li.rgb.getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60
    Image.new("YCbCr", (4, 4), (128, 128, 128)).save(tmp_path / "ycc.tif")
    assert load_image(tmp_path / "ycc.tif").rgb.mode == "RGB"


def test_truncated_jpeg_is_one_line_error(tmp_path: Path) -> None:
    p = tmp_path / "x.jpg"
    _gradient(200, 150).save(p, quality=95)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as err:
        load_image(p)
    _one_line(err, "x.jpg", "truncated")
    assert isinstance(err.value, InstyleError)


def test_text_missing_and_directory(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n")
    with pytest.raises(ImageError) as err:
        load_image(p)
    _one_line(err, "notes.jpg", "not a readable image")
    with pytest.raises(ImageError) as err:
        load_image(tmp_path / "nope.png")
    _one_line(err, "nope.png", "not found")
    with pytest.raises(ImageError) as err:
        load_image(tmp_path)
    _one_line(err, "directory")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError):
        load_image(tmp_path / "empty.png")


def test_decompression_bomb_guard(tmp_path: Path) -> None:
    p = tmp_path / "photo.png"
    _gradient(100, 100).save(p)
    with pytest.raises(ImageError) as err:
        load_image(p, max_pixels=5000)
    _one_line(err, "photo.png", "100x100", "5000", "--max-pixels")
    assert load_image(p, max_pixels=10_000).rgb.size == (100, 100)
    before = Image.MAX_IMAGE_PIXELS
    assert load_image(p, max_pixels=None).rgb.size == (100, 100)
    assert load_image(p, max_pixels=10 * DEFAULT_MAX_PIXELS).rgb.size == (100, 100)
    assert before == Image.MAX_IMAGE_PIXELS  # no global state leaks


def test_save_formats_atomic_and_unknown_extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = _gradient(33, 17)
    for ext in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".TIFF"):
        save_image(img, tmp_path / f"o{ext}")
        assert load_image(tmp_path / f"o{ext}").rgb.size == (33, 17)
    with pytest.raises(ImageError) as err:
        save_image(img, tmp_path / "o.xyz")
    _one_line(err, ".png", ".jpg")
    # a failing write leaves neither a half file nor a temp file behind
    good = tmp_path / "keep.png"
    save_image(img, good)
    before = good.read_bytes()


    def disk_full(self: Image.Image, fp: Path, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(ImageError) as err:
        save_image(img, tmp_path / "keep.png")
    _one_line(err, "keep.png", "No space left")
    monkeypatch.undo()
    assert good.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted(
        [f"o{e}" for e in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".TIFF")] + ["keep.png"]
    )


def test_ensure_not_input(tmp_path: Path) -> None:
    a = tmp_path / "a.jpg"
    _gradient(4, 4).save(a)
    ensure_not_input(tmp_path / "b.jpg", [a])
    with pytest.raises(ImageError):
        ensure_not_input(a, [a])
    with pytest.raises(ImageError):
        ensure_not_input(tmp_path / "sub" / ".." / "a.jpg", [a])
    link = tmp_path / "hard.jpg"
    os.link(a, link)
    with pytest.raises(ImageError):
        ensure_not_input(link, [a])
    sym = tmp_path / "sym.jpg"
    sym.symlink_to(a)
    with pytest.raises(ImageError):
        ensure_not_input(sym, [a])


def test_tensor_round_trip() -> None:
    img = _gradient(9, 5)
    t = pil_to_tensor(img)
    assert t.shape == (3, 5, 9) and t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert np.array_equal(np.asarray(tensor_to_pil(t)), np.asarray(img))
    assert np.array_equal(np.asarray(tensor_to_pil(t[None])), np.asarray(img))
    bf = tensor_to_pil(t.to(torch.bfloat16))
    assert np.abs(np.asarray(bf, np.int16) - np.asarray(img, np.int16)).max() <= 2
    wild = torch.tensor([-1.0, 0.5, 2.0, float("nan")]).view(1, 1, 4).expand(3, 1, 4)
    assert np.asarray(tensor_to_pil(wild))[0, :, 0].tolist() == [0, 128, 255, 0]
    with pytest.raises(ValueError):
        tensor_to_pil(torch.zeros(1, 4, 4))
    assert pil_to_tensor(Image.new("L", (2, 2), 255)).shape == (3, 2, 2)


def test_list_images(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ("b.jpg", "a.PNG", "sub/c.webp", ".secret.png", ".hidden/d.png", "notes.txt"):
        (tmp_path / rel).write_bytes(b"x")
    assert list_images(tmp_path) == [tmp_path / "a.PNG", tmp_path / "b.jpg", tmp_path / "sub" / "c.webp"]
    assert list_images(tmp_path, recursive=False) == [tmp_path / "a.PNG", tmp_path / "b.jpg"]
    assert list_images([tmp_path / "b.jpg", tmp_path / "sub", tmp_path / "b.jpg"]) == [
        tmp_path / "b.jpg",
        tmp_path / "sub" / "c.webp",
    ]
    with pytest.raises(ImageError):
        list_images(tmp_path / "missing")

"""Safe image I/O: every odd or broken input becomes one clear line, and nothing gets lost.

Style transfer is run on whatever people have on disk: phone JPEGs with EXIF rotation,
transparent PNGs, 16-bit scans, CMYK print files, half-downloaded files. Loading normalises
all of these to an 8-bit RGB image plus an optional alpha channel, so the models only ever
see one kind of input and the alpha can be put back on the way out. Writing is atomic and
refuses to overwrite the inputs, so a crash or a typo never destroys a user's photo.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_path, refuse_overwriting

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SAVE_FORMATS",
    "ImageError",
    "LoadedImage",
    "ensure_none_is_input",
    "ensure_not_input",
    "list_images",
    "load_image",
    "pil_to_tensor",
    "save_image",
    "split_alpha",
    "tensor_to_pil",
]

# Pillow's own default ``Image.MAX_IMAGE_PIXELS`` (its DecompressionBombWarning threshold):
# about a quarter gigabyte of RGB, far above any real photo but low enough to stop a tiny
# file that claims to be 100k x 100k from eating all memory.
DEFAULT_MAX_PIXELS = 89_478_485

# Extensions that list_images() picks up from folders (reading); Pillow reads more, but
# these are the ones people mean by "my photos".
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}
)

# Extensions save_image() writes, and the Pillow format each one means.
SAVE_FORMATS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
#: Modes whose ICC profile describes RGB, so it stays right on the RGB result (not grey or CMYK ones).
RGB_PROFILE_MODES = frozenset({"RGB", "RGBA", "RGBX", "RGBa", "P", "PA"})
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
_ICC_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF"}

# Image.MAX_IMAGE_PIXELS is process-global; this lock makes our temporary changes to it
# atomic with respect to each other (threads in the web server load images concurrently).
_PILLOW_LIMIT_LOCK = threading.Lock()

# Pillow's decoders raise a zoo of exception types on corrupt data (struct errors are ValueErrors).
_DECODE_ERRORS = (
    OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, KeyError, ZeroDivisionError,
)


class ImageError(InstyleError):
    """An image could not be read or written; the message names the file and the reason."""


@dataclass
class LoadedImage:
    """A decoded image normalised to 8-bit RGB, with its alpha kept aside (``None`` if opaque)."""

    rgb: Image.Image
    alpha: Image.Image | None
    source_mode: str
    source_format: str | None
    bits: int = 8
    icc_profile: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size


def _reason(exc: BaseException) -> str:
    """Turn a Pillow/OS exception into a short lower-case reason for a one-line message."""
    text = " ".join(str(exc).split())  # one line, whatever the library put in it
    low = text.lower()
    if "truncated" in low:
        return "truncated file"
    if isinstance(exc, UnidentifiedImageError) or "cannot identify" in low:
        return "unknown or unsupported format"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return text[:200] or type(exc).__name__


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR: Pillow silently reduces 16-bit RGB(A) PNGs to 8 bits."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(25)
    except OSError:
        return None
    if len(head) == 25 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return None


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map 16-bit, 32-bit-int and float pixels to 0..255 by scaling (Pillow's convert would clip)."""
    arr = np.asarray(arr)
    if mode.startswith("I;16"):
        return np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
    a = arr.astype(np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = a * 255.0  # float images conventionally hold 0..1
    elif lo >= 0.0 and hi <= 255.0 and mode == "F":
        scaled = a
    elif lo >= 0.0 and hi <= 65535.0:
        scaled = a / 257.0  # "I" from a 16-bit PNG/TIFF: full 16-bit range
    else:
        scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)  # arbitrary range: stretch
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _normalise(im: Image.Image) -> tuple[Image.Image, Image.Image | None, int]:
    """Return (RGB, alpha or None, source bit depth) for any mode Pillow hands us."""
    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        if mode == "La":
            im = im.convert("LA")  # premultiplied: Pillow has no La->RGBA path
        elif mode in ("RGBa", "PA"):
            im = im.convert("RGBA")
        alpha = im.getchannel("A")
        rgb = im.convert("RGBA").convert("RGB") if im.mode == "LA" else im.convert("RGB")
        return rgb, alpha, 8
    if mode in ("P", "L", "1", "RGB") and "transparency" in im.info:
        rgba = im.convert("RGBA")
        return rgba.convert("RGB"), rgba.getchannel("A"), 8
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = Image.fromarray(_scale_to_uint8(np.array(im), mode))
        bits = 32 if mode == "F" else 16
        return gray.convert("RGB"), None, bits
    # RGB, L, 1, CMYK (Pillow undoes Adobe's inverted CMYK), YCbCr, LAB, HSV, RGBX, ...
    return im.convert("RGB"), None, 8


def split_alpha(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """(8-bit RGB, alpha or None) for an in-memory image of any mode: the API's twin of ``load_image``."""
    rgb, alpha, _ = _normalise(im)
    return rgb, alpha


def _open_header(p: Path) -> Image.Image:
    """Image.open with Pillow's own bomb check off, so our check can report the exact size."""
    with _PILLOW_LIMIT_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(p)
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _too_big(name: str, w: int, h: int, max_pixels: int) -> ImageError:
    return ImageError(
        f"{name}: {w}x{h} pixels is over the limit of {max_pixels} (decompression-bomb guard); "
        "raise it with --max-pixels"
    )


def _decode(im: Image.Image, name: str, max_pixels: int | None) -> None:
    """Force a full decode so truncation shows up here, not later in a worker."""
    default = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None and (default is None or max_pixels <= default):
        im.load()  # some formats re-check sizes while decoding; the global limit is already looser
        return
    # A limit above Pillow's global one (or none): loosen the global for this decode only.
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            im.load()
        finally:
            Image.MAX_IMAGE_PIXELS = old


def load_image(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode any image file into 8-bit RGB (+ alpha), upright per EXIF, or raise ImageError.

    ``max_pixels`` guards against decompression bombs before any pixel is decoded;
    ``None`` turns the guard off (for genuinely huge scans).
    """
    p = Path(path)
    name = str(path)
    if p.is_dir():
        raise ImageError(f"{name}: is a directory, not an image")
    if not p.exists():
        raise ImageError(f"{name}: file not found")
    if not p.is_file():  # a FIFO or device would block the decoder forever, or stream without end
        raise ImageError(f"{name}: not a regular file")
    try:
        with _open_header(p) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise _too_big(name, w, h, max_pixels)
            source_mode, source_format = im.mode, im.format
            icc = im.info.get("icc_profile") or None
            _decode(im, name, max_pixels)
            upright = ImageOps.exif_transpose(im)  # returns a copy when it rotates
            rgb, alpha, bits = _normalise(upright)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        limit = "none" if max_pixels is None else str(max_pixels)
        raise ImageError(
            f"{name}: image is over the pixel limit of {limit} (decompression-bomb guard: {_reason(exc)}); "
            "raise it with --max-pixels"
        ) from exc
    except FileNotFoundError as exc:
        raise ImageError(f"{name}: file not found") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{name}: is a directory, not an image") from exc
    except MemoryError as exc:
        raise ImageError(f"{name}: not enough memory to decode this image") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name}: not a readable image ({_reason(exc)})") from exc
    if source_format == "PNG" and _png_bit_depth(p) == 16:
        bits = 16
    if source_mode not in ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA"):
        icc = None  # a gray or CMYK profile would be wrong on the RGB result
    return LoadedImage(rgb=rgb, alpha=alpha, source_mode=source_mode, source_format=source_format,
                       bits=bits, icc_profile=icc)


def ensure_none_is_input(outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Raise ImageError if any output is one of ``inputs``: results must never replace the originals."""
    refuse_overwriting(outputs, inputs, what="an input image", error=ImageError)


def ensure_not_input(out_path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Raise ImageError if ``out_path`` is one of ``inputs``: results must never replace the originals."""
    ensure_none_is_input([out_path], inputs)


def save_image(
    img: Image.Image,
    path: str | os.PathLike[str],
    alpha: Image.Image | None = None,
    quality: int = 95,
    icc_profile: bytes | None = None,
) -> None:
    """Write ``img`` atomically, format from the extension; alpha goes back where the format allows.

    An alpha of a different size (the model may have resized) is stretched to fit the image.
    JPEG and BMP cannot store alpha, so it is dropped there.
    """
    p = Path(path)
    fmt = SAVE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(SAVE_FORMATS))
        raise ImageError(f"{p}: unsupported output extension '{p.suffix}' (use one of {supported})")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory")
    if alpha is None and img.mode in ("RGBA", "LA", "PA"):
        alpha = img.getchannel("A")
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    out: Image.Image = rgb
    if alpha is not None and fmt in _ALPHA_FORMATS:
        a = alpha if alpha.mode == "L" else alpha.convert("L")
        if a.size != rgb.size:
            a = a.resize(rgb.size, Image.Resampling.BILINEAR)
        out = rgb.copy()
        out.putalpha(a)
    kwargs: dict[str, object] = {}
    if fmt == "JPEG":
        # 4:4:4 chroma at high quality: stylised outputs are full of fine coloured strokes.
        kwargs.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
    elif fmt == "WEBP":
        kwargs.update(quality=quality, method=4)
    elif fmt == "TIFF":
        kwargs.update(compression="tiff_deflate")
    if icc_profile and fmt in _ICC_FORMATS:
        kwargs["icc_profile"] = icc_profile
    try:
        with atomic_path(p) as tmp:
            out.save(tmp, format=fmt, **kwargs)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{p}: could not write image ({_reason(exc)})") from exc


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float32 (3, H, W) tensor in [0, 1], the models' input convention."""
    import torch  # here, not at the top: the fast start path reads and writes images without torch

    rgb = img if img.mode == "RGB" else img.convert("RGB")
    arr = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous().float().div_(255.0)


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) tensor of any float dtype in [0, 1] -> 8-bit RGB (clamped, rounded)."""
    import torch

    x = t.detach()
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) or (1, 3, H, W) tensor, got shape {tuple(t.shape)}")
    x = torch.nan_to_num(x.float(), nan=0.0).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    arr = x.permute(1, 2, 0).cpu().contiguous().numpy()
    return Image.fromarray(arr)


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def list_images(
    paths_or_dirs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], recursive: bool = True
) -> list[Path]:
    """Image files under the given folders (plus files named directly), sorted and without duplicates.

    Hidden files and folders are skipped (``.DS_Store``, ``.thumbnails``, our own temp files).
    Files named explicitly are kept whatever their extension: the user asked for them.
    """
    items = [paths_or_dirs] if isinstance(paths_or_dirs, str | os.PathLike) else list(paths_or_dirs)
    found: set[Path] = set()
    for item in items:
        root = Path(item)
        if root.is_dir():
            pattern = root.rglob("*") if recursive else root.glob("*")
            for f in pattern:
                if f.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(f.relative_to(root)) and f.is_file():
                    found.add(f)
        elif root.is_file():
            found.add(root)
        else:
            raise ImageError(f"{root}: no such file or folder")
    return sorted(found)

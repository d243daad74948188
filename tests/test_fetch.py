"""`instyle data fetch`: parsers and bookkeeping on tiny synthetic inputs, plus one real fetch."""

from __future__ import annotations

import csv
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instyle.core.errors import InstyleError
from instyle.data import fetch
from instyle.data.fetch import (
    MANIFEST_FIELDS,
    assemble_painting,
    fetch_dataset,
    list_paintings,
    read_gimp_pattern,
    read_rcc,
    slugify,
    style_path,
    style_slug,
    write_manifest,
)


def _make_rcc(tree: dict, version: int, compress: frozenset[str] = frozenset()) -> bytes:
    """A minimal Qt .rcc writer (breadth-first node table, as Qt's rcc tool lays it out)."""
    names, payload = bytearray(), bytearray()
    name_offsets: dict[str, int] = {}

    def name_off(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            enc = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(name), 0) + enc)
        return name_offsets[name]

    # nodes: (name, children dict or bytes, path)
    order = [("", tree, "")]
    queue = [0]
    node_size = 14 if version == 1 else 22
    table: list[bytes] = [b""]
    while queue:
        idx = queue.pop(0)
        name, content, path = order[idx]
        if isinstance(content, dict):
            first = len(order)
            for child_name in sorted(content):
                order.append((child_name, content[child_name], f"{path}/{child_name}"))
                table.append(b"")
                queue.append(len(order) - 1)
            rec = struct.pack(">IHII", name_off(name) if idx else 0, 2, len(content), first)
        else:
            data = content
            flags = 0
            if path in compress:
                data = struct.pack(">I", len(content)) + zlib.compress(content)
                flags = 1
            offset = len(payload)
            payload.extend(struct.pack(">I", len(data)) + data)
            rec = struct.pack(">IHHHI", name_off(name), flags, 0, 0, offset)
        table[idx] = rec + b"\0" * (node_size - len(rec))
    nodes = b"".join(table)
    header_len = 20 if version < 3 else 24
    tree_off = header_len
    data_off = tree_off + len(nodes)
    names_off = data_off + len(payload)
    header = b"qres" + struct.pack(">IIII", version, tree_off, data_off, names_off)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + nodes + bytes(payload) + bytes(names)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_read_rcc(version: int) -> None:
    tree = {"gcompris": {"a.txt": b"hello", "img": {"p.webp": b"x" * 300, "q.png": b"\x89PNG"}}, "top": b""}
    blob = _make_rcc(tree, version, compress=frozenset({"/gcompris/img/p.webp"}))
    files = read_rcc(blob)
    assert files == {
        "/gcompris/a.txt": b"hello",
        "/gcompris/img/p.webp": b"x" * 300,
        "/gcompris/img/q.png": b"\x89PNG",
        "/top": b"",
    }
    with pytest.raises(ValueError):
        read_rcc(b"nope" + blob[4:])


def _gimp_pat(img: Image.Image, name: str = "test") -> bytes:
    depth = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[img.mode]
    header_size = 24 + len(name) + 1
    head = struct.pack(">5I", header_size, 1, img.width, img.height, depth) + b"GPAT" + name.encode() + b"\0"
    return head + img.tobytes()


def test_read_gimp_pattern() -> None:
    rng = np.random.default_rng(0)
    for mode, ch in (("RGB", 3), ("L", 1), ("RGBA", 4)):
        arr = rng.integers(0, 256, (5, 7, ch), dtype=np.uint8)
        img = Image.fromarray(arr[..., 0] if ch == 1 else arr, mode if mode != "RGB" else None)
        out = read_gimp_pattern(_gimp_pat(img))
        assert out.mode == mode and out.size == (7, 5)
        assert np.array_equal(np.asarray(out), np.asarray(img))
    good = _gimp_pat(Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError):
        read_gimp_pattern(good[:20] + b"XXXX" + good[24:])
    with pytest.raises(ValueError):
        read_gimp_pattern(good[:-5])


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Vincent van Gogh, The Starry Night - 1889", "starry-night"),
        ("Katsushika Hokusai, The Great Wave off Kanagawa - 1823-1829", "great-wave"),
        ("Wassily Kandinsky, Composition VIII - 1923", "composition-viii"),
        ("Vincent van Gogh, Cafe Terrace at Night - 1888", "cafe-terrace"),
        ("Vincent van Gogh, The Night Café - 1888", "night-cafe"),
        ("Pierre-Auguste Renoir, Bal du moulin de la Galette - 1876", "moulin-de-la-galette"),
        ("Leonardo da Vinci, Mona Lisa - 1503-19", "mona-lisa"),
        ("Katsushika Hokusai, Ejiri in Suruga Province - 1830-1833", "ejiri"),
        ("Vincent van Gogh, Portrait of Pere Tanguy 1887-8", "pere-tanguy"),
        ("Katsushika Hokusai, Kazusa sea Route - 1830.", "kazusa-sea-route"),
        ("Albrecht Dürer, Lion - 1494", "lion"),
        ("Vincent van Gogh, The Harvest - 1888", "harvest"),
        ("Katsushika Hokusai, Oiran and Kamuro", "oiran-and-kamuro"),
        ("Untitled", "untitled"),
    ],
)
def test_style_slug(title: str, slug: str) -> None:
    assert style_slug(title) == slug


def test_slugify() -> None:
    assert slugify("Château d'Œuvre — 2 ") == "chateau-d-uvre-2"
    assert slugify("***") == "untitled"
    long = slugify("word " * 30)
    assert len(long) <= 48 and not long.endswith("-")


def test_assemble_painting() -> None:
    rng = np.random.default_rng(1)
    full = Image.fromarray(rng.integers(0, 256, (10, 20, 3), dtype=np.uint8))
    left, right = full.crop((0, 0, 10, 10)), full.crop((10, 0, 20, 10))
    files = {}
    for name, piece in (("l.png", left), ("r.png", right)):
        buf = io.BytesIO()
        piece.save(buf, format="PNG")
        files[f"/res/image/{name}"] = buf.getvalue()
    qml = """QtObject {
       property string instruction: qsTr("Someone, A Test - 2000")
       property var levels : [
          { "pixmapfile" : "image/bg.svg", "type" : "SHAPE_BACKGROUND_IMAGE", "width": 20, "height": 10 },
          { "pixmapfile" : "image/l.png", "x" : "0.25", "y" : "0.5" },
          { "pixmapfile" : "image/r.png", "x" : "0.75", "y" : "0.5" }
       ]
    }"""
    title, img = assemble_painting(qml, files, "/res")
    assert title == "Someone, A Test - 2000"
    assert np.array_equal(np.asarray(img), np.asarray(full))


def test_writer_tiles_trims_and_shrinks(tmp_path: Path) -> None:
    w = fetch._Writer(tmp_path, max_side=64)
    meta = {"registry": "debian", "package": "p", "version": "1", "member": "m", "license": "L", "title": "t"}
    w.add("texture", "tile", Image.new("RGB", (30, 20), (200, 100, 50)), tile_to=100, **meta)
    barred = Image.new("RGB", (40, 40), (0, 0, 0))
    barred.paste((120, 120, 120), (0, 5, 40, 35))
    w.add("texture", "bars", barred, **meta)
    w.add("content", "big", Image.new("RGB", (300, 150), (1, 2, 3)), **meta)
    w.add("content", "big", Image.new("RGB", (30, 15), (1, 2, 3)), **meta)  # same slug: made unique
    sizes = {e.file: (e.width, e.height) for e in w.entries}
    assert sizes["texture/tile.png"] == (64, 43)  # tiled to 150x100, then shrunk to max_side
    assert sizes["texture/bars.png"] == (40, 30)  # black letterbox rows trimmed
    assert sizes["content/big.jpg"] == (64, 32)
    assert "content/big-p.jpg" in sizes
    for e in w.entries:
        assert Image.open(tmp_path / e.file).size == (e.width, e.height)


def test_manifest_list_paintings_and_style_path(tmp_path: Path) -> None:
    (tmp_path / "style").mkdir()
    (tmp_path / "texture").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "style" / "starry-night.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "texture" / "brick.png")
    rows = [
        ["style", "style/starry-night.png", "debian", "opencv-doc", "4.6", "a/b.jpg", "PD", "4", "4",
         "Vincent van Gogh, The Starry Night - 1889"],
        ["texture", "texture/brick.png", "pypi", "scikit-image", "0.26", "x", "CC0, \"quoted\"", "4", "4", "brick"],
        ["content", "content/c.jpg", "pypi", "m", "1", "y", "PD", "4", "4", "c"],
    ]
    write_manifest(tmp_path / "manifest.csv", rows)
    with open(tmp_path / "manifest.csv", newline="") as fh:
        back = list(csv.reader(fh))
    assert back[0] == MANIFEST_FIELDS and back[1:] == rows
    styles = list_paintings(tmp_path)
    assert [s["slug"] for s in styles] == ["starry-night", "brick"]
    assert styles[0]["title"].startswith("Vincent") and styles[1]["license"] == 'CC0, "quoted"'
    assert style_path("starry-night", tmp_path) == tmp_path / "style" / "starry-night.png"
    assert style_path("brick", tmp_path) == tmp_path / "texture" / "brick.png"
    with pytest.raises(InstyleError, match=r"style 'nope' not found; run `instyle data fetch`"):
        style_path("nope", tmp_path)
    assert list_paintings(tmp_path / "empty") == []


def test_finished_fetch_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "content").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "content" / "a.jpg")
    write_manifest(tmp_path / "manifest.csv", [["content", "content/a.jpg", "d", "p", "1", "m", "L", "4", "4", "a"]])
    (tmp_path / ".fetch.json").write_text(json.dumps(fetch._stamp(False, 1024)))
    monkeypatch.setattr(fetch.shutil, "which", lambda _name: None)  # would fail if it tried to fetch
    assert fetch_dataset(tmp_path, progress=False) == tmp_path
    with pytest.raises(InstyleError, match="Debian"):
        fetch_dataset(tmp_path, max_side=512, progress=False)  # other settings: must rebuild


def test_no_apt_get_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch.shutil, "which", lambda _name: None)
    with pytest.raises(InstyleError, match="apt-get and dpkg-deb not found"):
        fetch_dataset(tmp_path / "out", cache=tmp_path / "cache", progress=False)


def test_missing_apt_lists_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "_apt_lists_present", lambda: False)
    monkeypatch.setattr(fetch.os, "geteuid", lambda: 1000)
    reg = fetch._Registry(tmp_path)
    with pytest.raises(InstyleError, match=r"sudo apt-get update"):
        reg.deb("palapeli-data")


def test_missing_package_as_non_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Done:
        returncode = 100
        stdout = ""
        stderr = "E: Unable to locate package palapeli-data"

    monkeypatch.setattr(fetch, "_apt_lists_present", lambda: True)
    monkeypatch.setattr(fetch, "_run", lambda *a, **k: Done())
    monkeypatch.setattr(fetch.os, "geteuid", lambda: 1000)
    with pytest.raises(InstyleError, match=r"sudo apt-get update"):
        fetch._Registry(tmp_path).deb("palapeli-data")


@pytest.mark.network
@pytest.mark.slow
def test_real_fetch(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get/dpkg-deb not present (not a Debian system)")
    out = fetch_dataset(tmp_path / "data", progress=False)  # packages cached under the user cache
    counts = {s: len(list((out / s).iterdir())) for s in ("content", "style", "texture")}
    assert counts["content"] >= 300 and counts["style"] >= 25 and counts["texture"] >= 20, counts
    assert style_path("starry-night", out).is_file()
    for slug in ("great-wave", "composition-viii", "cafe-terrace", "night-cafe", "moulin-de-la-galette",
                 "mona-lisa", "ejiri"):
        assert style_path(slug, out).is_file(), slug
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(counts.values())
    assert all(r["license"].strip() for r in rows)
    assert {r["file"] for r in rows} == {f"{s}/{p.name}" for s in counts for p in (out / s).iterdir()}

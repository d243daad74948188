"""The demo's plumbing (photos, outputs, contact sheet) with a stand-in model instead of training."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

import instyle.apps.demo as demo
from instyle.data.demo_photos import DEMO_PHOTOS


def test_demo_stylizes_every_bundled_photo_and_writes_a_sheet(model_file: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(demo, "list_styles", dict)  # as in a build with no shipped styles
    monkeypatch.setattr(demo, "_fallback_model", lambda log: model_file)
    lines: list[str] = []
    sheet = demo.run_demo(tmp_path / "out", log=lines.append, gallery=tmp_path / "gallery.jpg")
    photos = sorted(DEMO_PHOTOS.glob("*.jpg"))
    assert len(photos) >= 4
    outs = sorted((tmp_path / "out" / "starry-night-demo").glob("*.jpg"))
    assert [p.stem for p in outs] == [p.stem for p in photos]
    for photo, out in zip(photos, outs, strict=True):
        w, h = Image.open(photo).size
        assert Image.open(out).size == (w, h)
    assert Image.open(sheet).size[0] > 1000
    assert any("contact sheet" in line for line in lines)


def test_demo_photos_are_never_trained_on(photos_dir: Path, tmp_path: Path) -> None:
    from instyle.training.config import TrainConfig
    from instyle.training.inputs import content_split

    folder = tmp_path / "content"
    folder.mkdir()
    for f in sorted(photos_dir.glob("*.jpg"))[:6]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "skimage-chelsea.jpg").write_bytes(next(photos_dir.glob("*.jpg")).read_bytes())
    train, held = content_split(TrainConfig(style="s.png", content=str(folder), output="m.safetensors", holdout=0))
    assert "skimage-chelsea.jpg" not in {f.name for f in train + held}
    assert len(train) == 6


def test_an_unchanged_gallery_is_left_alone_and_a_changed_one_rewritten(tmp_path: Path) -> None:
    """`make demo` in a fresh clone must not leave docs/gallery.jpg modified over float/JPEG noise."""
    import numpy as np

    rng = np.random.default_rng(0)
    sheet = Image.open(sorted(DEMO_PHOTOS.glob("*.jpg"))[0]).convert("RGB").resize((320, 256))
    path = tmp_path / "gallery.jpg"
    sheet.save(path, quality=90)
    assert demo._same_picture(path, sheet)  # the same picture through JPEG
    noisy = np.clip(np.asarray(sheet, dtype=np.int16) + rng.integers(-2, 3, (256, 320, 3)), 0, 255)
    assert demo._same_picture(path, Image.fromarray(noisy.astype(np.uint8)))
    assert not demo._same_picture(path, sheet.rotate(180))  # other results
    assert not demo._same_picture(path, sheet.resize((320, 200)))  # another layout
    assert not demo._same_picture(tmp_path / "missing.jpg", sheet)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    assert not demo._same_picture(tmp_path / "broken.jpg", sheet)

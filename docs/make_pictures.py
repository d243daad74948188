"""Regenerate the README pictures of the controls, video, export and web-app sections.

    .venv/bin/python docs/make_pictures.py --model MODEL.safetensors [--photo P]

``docs/controls.jpg``: a demo photo at several strengths, with colour preservation and stroke
scales. ``docs/video_frames.jpg``: input frames of a synthetic clip over the same frames stylized
by ``instyle video``. ``docs/export.jpg``: PyTorch vs ONNX Runtime on the exported model, with
their difference ×1000. ``docs/webapp.png``: the end-to-end browser test, run with
INSTYLE_UPDATE_DOCS=1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from instyle.apps.cli import main  # noqa: E402
from test_video import make_video  # noqa: E402


def frames(path: Path, picks: list[int]) -> list[Image.Image]:
    with av.open(str(path)) as c:
        return [f.to_image() for i, f in enumerate(c.decode(video=0)) if i in picks]


def video_strip(model: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = make_video(Path(tmp) / "clip.mp4", n=24, w=192, h=144, fps=24)
        dst = Path(tmp) / "styled.mp4"
        assert main(["video", str(src), "-m", str(model), "-o", str(dst), "--quiet"]) == 0
        picks = [0, 8, 16, 23]
        rows = [frames(src, picks), frames(dst, picks)]
    w, h = rows[0][0].size
    sheet = Image.new("RGB", (w * len(picks) + 4 * (len(picks) - 1), 2 * h + 4), "white")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            sheet.paste(im, (c * (w + 4), r * (h + 4)))
    sheet.save(out, quality=85)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


DEMO = ROOT / "src/instyle/assets/demo"


def controls_grid(model: Path, out: Path) -> None:
    from instyle.data.grid import contact_sheet
    from instyle.inference.stylizer import Stylizer

    stylizer = Stylizer.load(model, backend="eager")
    photo = Image.open(DEMO / "chelsea.jpg").convert("RGB")
    settings = [("photo", None), ("strength 1", {}), ("strength 0.5", {"strength": 0.5}),
                ("preserve colour", {"preserve_colors": True}), ("scale 0.5", {"scale": 0.5}),
                ("scale 2", {"scale": 2.0})]
    images = [photo if c is None else stylizer(photo, **c) for _, c in settings]
    contact_sheet([images], col_labels=[n for n, _ in settings], cell=220).save(out, quality=85)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def export_check(model: Path, out: Path) -> None:
    import onnxruntime as ort
    import torch

    from instyle.data.grid import contact_sheet
    from instyle.data.images import pil_to_tensor, tensor_to_pil
    from instyle.inference.stylizer import Stylizer

    photo = Image.open(DEMO / "great-wall.jpg").convert("RGB").resize((333, 250))
    x = pil_to_tensor(photo).unsqueeze(0)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "m.onnx"
        assert main(["export", "-m", str(model), "--format", "onnx", "-o", str(onnx_file)]) == 0
        y_onnx = torch.from_numpy(ort.InferenceSession(str(onnx_file)).run(None, {"image": x.numpy()})[0])
    with torch.inference_mode():
        y_torch = Stylizer.load(model, backend="eager").module(x)
    diff = ((y_onnx - y_torch).abs() * 1000).clamp(0, 1)
    labels = ["photo (333x250)", "PyTorch", "ONNX Runtime", f"|diff| x1000 (max {(y_onnx - y_torch).abs().max():.1e})"]
    images = [photo, tensor_to_pil(y_torch), tensor_to_pil(y_onnx), tensor_to_pil(diff)]
    contact_sheet([images], col_labels=labels, cell=240).save(out, quality=85)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def webapp(model: Path, photo: Path | None) -> None:
    env = {**os.environ, "INSTYLE_UPDATE_DOCS": "1", "INSTYLE_DOCS_MODEL": str(model)}
    if photo:
        small = Path(tempfile.mkdtemp()) / "photo.png"
        img = Image.open(photo).convert("RGB")
        img.thumbnail((360, 360))
        img.save(small)
        env["INSTYLE_DOCS_PHOTO"] = str(small)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_serve.py",
                    "-k", "end_to_end"], cwd=ROOT, env=env, check=True)
    img = Image.open(ROOT / "docs/webapp.png").convert("RGB")
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(ROOT / "docs/webapp.png", optimize=True)  # < 300 KB
    print(f"wrote docs/webapp.png {img.size}, {(ROOT / 'docs/webapp.png').stat().st_size // 1024} KB")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--photo", type=Path, default=None, help="the photo to upload in the screenshot")
    a = p.parse_args()
    np.random.seed(0)
    controls_grid(a.model, ROOT / "docs/controls.jpg")
    export_check(a.model, ROOT / "docs/export.jpg")
    video_strip(a.model, ROOT / "docs/video_frames.jpg")
    webapp(a.model, a.photo)

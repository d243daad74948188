"""``instyle video``: frame count, rate, size and audio survive; flicker is measured and printed."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="video needs the 'video' extra (PyAV)")

from instyle.apps.cli import main  # noqa: E402
from instyle.inference.video import Flicker, output_size  # noqa: E402


def make_video(path: Path, n: int = 24, w: int = 64, h: int = 48, fps: int = 24, audio: bool = True,
               static: bool = False) -> Path:
    """Moving shapes on a gradient (or one still frame repeated) plus a 440 Hz sine track."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aud = out.add_stream("aac", rate=44100, layout="mono") if audio else None
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(n):
            t = 0 if static else i
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 2] = 60 + xx * 2
            img[(xx - (10 + 2 * t) % w) ** 2 + (yy - h // 3) ** 2 < 64] = (250, 200, 30)
            img[h // 2 : h // 2 + 8, max(0, w - 12 - t) : w - t] = (20, 220, 90)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if aud is not None:
            sr, k = 44100, 1024
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr * n // fps) / sr)).astype(np.float32)
            for s0 in range(0, len(wave), k):
                af = av.AudioFrame.from_ndarray(wave[None, s0 : s0 + k], format="fltp", layout="mono")
                af.sample_rate, af.pts = sr, s0
                out.mux(aud.encode(af))
            out.mux(aud.encode(None))
    return path


def _probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(video=0))
        return {"frames": n, "fps": float(v.average_rate), "size": (v.codec_context.width, v.codec_context.height),
                "audio": [a.codec_context.name for a in c.streams.audio]}


def _flicker(text: str) -> tuple[float, float]:
    m = re.search(r"flicker: input ([0-9.e+-]+), output ([0-9.e+-]+), ratio (\S+)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


@pytest.mark.slow
def test_video_cli_keeps_rate_audio_and_reports_flicker(model_file: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = make_video(tmp_path / "in.mp4", n=16, w=64, h=48, fps=24)
    before = src.read_bytes()
    dst = tmp_path / "out" / "styled.mp4"
    assert main(["video", str(src), "-m", str(model_file), "-o", str(dst), "--batch", "3", "--quiet",
                 "--backend", "eager"]) == 0
    text = capsys.readouterr().out
    assert _probe(dst) == {"frames": 16, "fps": 24.0, "size": (64, 48), "audio": ["aac"]}
    f_in, f_out = _flicker(text)
    assert math.isfinite(f_in) and math.isfinite(f_out) and f_in > 0 and f_out > 0
    assert re.search(r"ratio [0-9.]+", text)
    assert src.read_bytes() == before
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.slow
def test_static_video_has_low_flicker_and_max_side(model_file: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = make_video(tmp_path / "still.mp4", n=8, w=70, h=50, fps=12, audio=False, static=True)
    dst = tmp_path / "still_out.mkv"
    assert main(["video", str(src), "-m", str(model_file), "-o", str(dst), "--max-side", "35",
                 "--strength", "0.9", "--quiet", "--backend", "eager"]) == 0
    f_in, f_out = _flicker(capsys.readouterr().out)
    assert f_in < 2e-3, f_in
    assert f_out < 2e-3, f_out  # instance norm on (nearly) identical frames -> (nearly) identical outputs
    probe = _probe(dst)
    assert probe["frames"] == 8 and probe["fps"] == 12.0 and probe["audio"] == []
    assert probe["size"] == (34, 24)  # 35x25 rounded down to even sides for yuv420p


def test_video_refuses_bad_arguments(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_video(tmp_path / "in.mp4", n=2, w=32, h=32, audio=False)
    assert main(["video", str(src), "-m", str(model_file), "-o", str(src)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["video", str(src), "-m", str(model_file), "-o", str(tmp_path / "x.gif")]) == 2
    assert main(["video", str(tmp_path / "missing.mp4"), "-m", str(model_file), "-o", str(tmp_path / "o.mp4")]) == 2
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    assert main(["video", str(tmp_path / "junk.mp4"), "-m", str(model_file), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "not a readable video" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_flicker_and_output_size_helpers() -> None:
    import torch

    f = Flicker()
    frames = torch.stack([torch.full((3, 4, 4), v) for v in (0.0, 0.5, 0.5, 1.0)])
    f.update(frames[:3])
    f.update(frames[3:])
    assert f.pairs == 3 and f.value == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert output_size(1920, 1080, 640) == (640, 360)
    assert output_size(63, 47, None) == (62, 46)


def _pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return sorted(f.pts for f in c.decode(video=0))


@pytest.mark.slow
def test_video_with_a_stable_style_smoothing_and_the_warped_metric_keeps_frames_timestamps_audio(
        photos_dir: Path, style_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cv2", reason="--flicker-metric needs the 'video-metrics' extra (OpenCV)")
    from instyle.training.config import TrainConfig
    from instyle.training.loop import train

    stable = tmp_path / "stable.safetensors"
    card = train(TrainConfig(style=str(style_image), content=str(photos_dir), output=str(stable), arch="johnson-half",
                             size=32, style_size=32, batch=2, iters=2, holdout=0, vgg_weights="random",
                             precision="fp32", temporal_weight=20.0), progress=False)
    assert card.data["train"]["temporal_weight"] == 20.0
    src = make_video(tmp_path / "in.mp4", n=12, w=64, h=48, fps=24)
    dst = tmp_path / "styled.mp4"
    assert main(["video", str(src), "-m", str(stable), "-o", str(dst), "--batch", "5", "--quiet", "--backend", "eager",
                 "--smooth", "0.7", "--flicker-metric"]) == 0
    text = capsys.readouterr().out
    assert _probe(dst) == {"frames": 12, "fps": 24.0, "size": (64, 48), "audio": ["aac"]}
    assert _pts(dst) == _pts(src)
    m = re.search(r"warped flicker: input ([0-9.]+), output ([0-9.]+), ratio ([0-9.]+) .*, 11 pairs\)", text)
    assert m, text
    assert main(["flicker", str(src), str(dst)]) == 0  # the same measure from the two files
    assert "11 pairs" in capsys.readouterr().out
    assert main(["video", str(src), "-m", str(stable), "-o", str(tmp_path / "x.mp4"), "--smooth", "1"]) == 2

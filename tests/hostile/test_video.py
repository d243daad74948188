"""``instyle video`` against outputs it cannot write, inputs that are not videos, and WebM.

Videos are built here: a few 32x32 frames (and a short sine track), a few kilobytes each.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from tests.hostile.conftest import assert_refused, snapshot
from tests.hostile.test_export import unwritable_dir

av = pytest.importorskip("av", reason="video needs the 'video' extra (PyAV)")


def _video(path: Path, n: int = 6, audio: bool = True, video: bool = True) -> Path:
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=12) if video else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        aud = out.add_stream("aac", rate=44100, layout="mono") if audio else None
        for i in range(n if vs is not None else 0):
            img = np.full((32, 32, 3), 40 * i % 255, np.uint8)
            img[8:16, i * 4 : i * 4 + 8] = (250, 200, 30)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        if vs is not None:
            out.mux(vs.encode(None))
        if aud is not None:
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100 * n // 12) / 44100)).astype(np.float32)
            for s0 in range(0, len(wave), 1024):
                af = av.AudioFrame.from_ndarray(wave[None, s0 : s0 + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = 44100, s0
                out.mux(aud.encode(af))
            out.mux(aud.encode(None))
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return _video(tmp_path / "in.mp4")


def _run(cli, src: Path, model: Path, out: Path, *extra: str):
    return cli("video", src, "-m", model, "-o", out, "--quiet", "--backend", "eager", "--device", "cpu", *extra)


def test_webm_output_is_vp9_with_opus(cli, model_file: Path, clip: Path, tmp_path: Path) -> None:
    """#16 item 12: .webm was accepted and then failed with a traceback (no H.264 in WebM)."""
    out = tmp_path / "styled.webm"
    outcome = _run(cli, clip, model_file, out)
    assert outcome.code == 0, outcome
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name in ("vp9", "vp8")
        assert [a.codec_context.name for a in c.streams.audio] in (["opus"], ["vorbis"])
        assert sum(1 for _ in c.decode(video=0)) == 6


def _onto_input(tmp: Path, clip: Path) -> Path:
    return clip


def _onto_hard_link(tmp: Path, clip: Path) -> Path:
    os.link(clip, tmp / "same.mp4")
    return tmp / "same.mp4"


def _onto_symlink(tmp: Path, clip: Path) -> Path:
    (tmp / "link.mkv").symlink_to(clip)
    return tmp / "link.mkv"


def _folder(tmp: Path, clip: Path) -> Path:
    (tmp / "videos.mp4").mkdir()
    return tmp / "videos.mp4"


def _unwritable(tmp: Path, clip: Path) -> Path:
    return unwritable_dir(tmp) / "out.mp4"


def _gif(tmp: Path, clip: Path) -> Path:
    return tmp / "out.gif"


@pytest.mark.parametrize(("target", "says"), [
    (_onto_input, "refusing to overwrite"), (_onto_hard_link, "refusing to overwrite"),
    (_onto_symlink, "refusing to overwrite"), (_folder, "is a folder"), (_unwritable, "cannot write"),
    (_gif, "unsupported video extension"),
])
def test_bad_outputs_are_one_line(cli, model_file: Path, clip: Path, tmp_path: Path, target, says: str) -> None:
    out = target(tmp_path, clip)
    before = snapshot([tmp_path])
    assert_refused(_run(cli, clip, model_file, out), says=says, unchanged=before)


def _zero(tmp: Path) -> Path:
    (tmp / "zero.mp4").write_bytes(b"")
    return tmp / "zero.mp4"


def _junk(tmp: Path) -> Path:
    (tmp / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    return tmp / "junk.mp4"


def _truncated(tmp: Path) -> Path:
    data = _video(tmp / "full.mp4").read_bytes()
    (tmp / "cut.mp4").write_bytes(data[: len(data) // 3])  # the index (moov) is at the end: cut off
    return tmp / "cut.mp4"


def _audio_only(tmp: Path) -> Path:
    return _video(tmp / "sound.mp4", video=False)


@pytest.mark.parametrize(("source", "says"), [
    (_zero, "not a readable video"), (_junk, "not a readable video"), (_truncated, "not a readable video"),
    (_audio_only, "no video stream"),
])
def test_bad_inputs_are_one_line_and_leave_no_output(cli, model_file: Path, tmp_path: Path, source, says: str) -> None:
    src = source(tmp_path)
    before = snapshot([src])
    out = tmp_path / "out" / "o.mp4"
    assert_refused(_run(cli, src, model_file, out), says=says, unchanged=before)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


@pytest.mark.parametrize(("extra", "says"), [(["--batch", "0"], "--batch"), (["--max-side", "1"], "--max-side"),
                                             (["--scale", "0"], "scale"), (["--strength", "2"], "strength")])
def test_bad_arguments_are_one_line(cli, model_file: Path, clip: Path, tmp_path: Path, extra: list[str],
                                    says: str) -> None:
    out = tmp_path / "o.mp4"
    assert_refused(_run(cli, clip, model_file, out, *extra), says=says)
    assert not out.exists()

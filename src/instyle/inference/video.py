"""Stylize videos with PyAV: same frame rate and timestamps, audio kept, frames stylized in batches.

Feed-forward style networks work frame by frame, so their weak point on video is flicker: small
input changes can flip brush strokes. ``flicker`` numbers (mean absolute frame-to-frame change of
the output, against the same for the input) make that measurable, for users and for tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_path, check_output_path
from instyle.data.images import ensure_not_input
from instyle.inference.flicker import WarpedFlicker
from instyle.inference.smoothing import TemporalBlend

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi"})
_AUDIO_FALLBACK = "aac"
# WebM takes only VP8/VP9/AV1 video and Opus/Vorbis audio.
_WEBM_VIDEO = ("libvpx-vp9", "libvpx")
_WEBM_AUDIO = ("libopus", "opus", "libvorbis", "vorbis")


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise InstyleError("video needs PyAV: pip install 'instyle[video]'") from None
    return av


@dataclass
class Flicker:
    """Running mean of |f_t - f_{t-1}| over consecutive frames (pixel values in [0, 1])."""

    total: float = 0.0
    pairs: int = 0
    _last: torch.Tensor | None = None

    def update(self, frames: torch.Tensor) -> None:
        """Feed (N, 3, H, W) frames in order; batches are chained to each other."""
        seq = frames if self._last is None else torch.cat([self._last, frames])
        if len(seq) > 1:
            self.total += (seq[1:] - seq[:-1]).abs().mean(dim=(1, 2, 3)).sum().item()
            self.pairs += len(seq) - 1
        self._last = frames[-1:].clone()

    @property
    def value(self) -> float:
        return self.total / self.pairs if self.pairs else 0.0


@dataclass
class VideoReport:
    frames: int
    fps: float
    size: tuple[int, int]
    audio: str  # "copied", "re-encoded (aac)" or "none"
    flicker_in: float
    flicker_out: float
    seconds: float
    warped: WarpedFlicker | None = None  # with flicker_metric=True

    @property
    def flicker_ratio(self) -> float:
        """Output flicker relative to the input's; nan when the input does not change at all."""
        return self.flicker_out / self.flicker_in if self.flicker_in > 1e-9 else math.nan


def output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Downsize to ``max_side`` (keeping the aspect), then round down to even sides for yuv420p."""
    if max_side is not None and max(width, height) > max_side:
        s = max_side / max(width, height)
        width, height = max(2, round(width * s)), max(2, round(height * s))
    return max(2, width - width % 2), max(2, height - height % 2)


def _encoder(av: Any, name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # PyAV raises UnknownCodecError (a ValueError) or FFmpegError, by version
        return False
    return True


def _video_codec(av: Any, dst: Path) -> str:
    """H.264 where the PyAV build has libx264 (its wheels do), else MPEG-4 part 2; VP9 (or VP8) for WebM."""
    if dst.suffix.lower() == ".webm":
        for name in _WEBM_VIDEO:
            if _encoder(av, name):
                return name
        raise InstyleError(f"{dst}: this PyAV build has no VP9/VP8 encoder for WebM; use .mp4 or .mkv")
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _audio_codec(av: Any, dst: Path) -> str:
    if dst.suffix.lower() == ".webm":
        return next((n for n in _WEBM_AUDIO if _encoder(av, n)), _AUDIO_FALLBACK)
    return _AUDIO_FALLBACK


def _batches(frames: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for f in frames:
        batch.append(f)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _open_video(av: Any, path: Path) -> Any:
    """An opened container with a video stream, or one line saying why not (closed again on refusal):
    the one check that stylizing and reading frames share."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise InstyleError(f"{path}: not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise InstyleError(f"{path}: has no video stream")
    return container


def stylize_video(stylizer: Any, src: str | Path, dst: str | Path, *, batch: int = 4, max_side: int | None = None,
                  crf: int = 18, progress: bool = True, log: Callable[[str], None] | None = None,
                  smooth: float = 0.0, flicker_metric: bool = False, **controls: Any) -> VideoReport:
    """Stylize ``src`` into ``dst`` (written atomically, never onto ``src``); controls as in ``stylize_tensor``.

    ``smooth``: blend with the previous output where the input stood still (``TemporalBlend``; 0 off).
    ``flicker_metric``: also measure the warped flicker (optical flow of the input, needs OpenCV)."""
    import time

    av = _av()
    blend = TemporalBlend(smooth)
    warped = WarpedFlicker() if flicker_metric else None
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InstyleError(f"{src}: no such video file")
    if dst.suffix.lower() not in VIDEO_EXTENSIONS:
        raise InstyleError(f"{dst}: unsupported video extension (use one of {', '.join(sorted(VIDEO_EXTENSIONS))})")
    if batch < 1:
        raise InstyleError(f"--batch must be at least 1, got {batch}")
    if max_side is not None and max_side < 2:
        raise InstyleError(f"--max-side must be at least 2, got {max_side}")
    ensure_not_input(dst, [src])
    check_output_path(dst)
    vcodec, acodec = _video_codec(av, dst), _audio_codec(av, dst)
    start = time.perf_counter()
    with _open_video(av, src) as inp:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        rate = vin.average_rate or vin.guessed_rate or 25
        width, height = output_size(vin.codec_context.width, vin.codec_context.height, max_side)
        total = vin.frames or None
        flick_in, flick_out = Flicker(), Flicker()
        n_frames = 0
        with atomic_path(dst) as tmp, av.open(str(tmp), "w", format=_muxer(dst)) as out:
            vout = out.add_stream(vcodec, rate=rate)
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            vout.time_base = vin.time_base
            vout.codec_context.time_base = vin.time_base
            if vcodec == "libx264":
                vout.options = {"crf": str(crf), "preset": "medium"}
            elif vcodec.startswith("libvpx"):
                # constant quality (libvpx's crf needs a zero target bit rate); "good" with cpu-used 4 is
                # libvpx's usual speed/quality trade-off, row-mt uses the cores on small frames too
                vout.bit_rate = 0
                vout.options = {"crf": str(min(max(crf, 4), 63)), "b": "0", "deadline": "good",
                                "cpu-used": "4", "row-mt": "1"}
            else:
                vout.bit_rate = 8_000_000
            aout, audio = _audio_stream(out, ain, acodec)
            bar = tqdm(total=total, unit="frame", disable=not progress, desc=src.name, dynamic_ncols=True)
            try:
                streams = [s for s in (vin, ain) if s is not None]
                for frames in _batches(_frames(inp, streams, vin, ain, out, aout, audio), batch):
                    x = torch.from_numpy(np.stack([
                        f.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
                        for f in frames
                    ])).permute(0, 3, 1, 2).float().div_(255.0)
                    y = blend(x, stylizer.stylize_tensor(x, **controls))
                    flick_in.update(x)
                    flick_out.update(y)
                    if warped is not None:
                        warped.update(x, y)
                    arr = y.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
                    for f, a in zip(frames, arr, strict=True):
                        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
                        vf.pts, vf.time_base = f.pts, vin.time_base
                        out.mux(vout.encode(vf))
                    n_frames += len(frames)
                    bar.update(len(frames))
                out.mux(vout.encode(None))
                if aout is not None and audio.startswith("re-encoded"):
                    out.mux(aout.encode(None))
            finally:
                bar.close()
    if n_frames == 0:
        raise InstyleError(f"{src}: no video frames could be decoded")
    report = VideoReport(frames=n_frames, fps=float(rate), size=(width, height), audio=audio,
                         flicker_in=flick_in.value, flicker_out=flick_out.value,
                         seconds=time.perf_counter() - start, warped=warped)
    if log:
        log(f"audio: {audio}")
    return report


def _muxer(dst: Path) -> str | None:
    """The container from the real name: the temporary file's suffix also works, but be explicit."""
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".m4v": "mp4", ".mp4": "mp4", ".avi": "avi"}.get(
        dst.suffix.lower())


def _audio_stream(out: Any, ain: Any, codec: str = _AUDIO_FALLBACK) -> tuple[Any, str]:
    """Copy the audio packets when the container takes the codec, else re-encode (AAC; Opus for WebM)."""
    if ain is None:
        return None, "none"
    name = ain.codec_context.name
    if name in out.supported_codecs:
        try:
            return out.add_stream_from_template(ain), "copied"
        except (ValueError, Exception):  # an odd codec/container pair: fall through to re-encoding
            pass
    # Opus runs at 48 kHz only; PyAV's encoder resamples the decoded frames to the stream's rate.
    rate = 48000 if "opus" in codec else (ain.rate or 48000)
    aout = out.add_stream(codec, rate=rate)
    return aout, f"re-encoded ({codec})"


def _frames(inp: Any, streams: list[Any], vin: Any, ain: Any, out: Any, aout: Any, audio: str) -> Iterator[Any]:
    """Decoded video frames, in order; audio is muxed (copied or re-encoded) on the way past."""
    index = 0
    for packet in inp.demux(streams):
        if ain is not None and packet.stream is ain:
            if aout is None:
                continue
            if audio == "copied":
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packet.stream = aout
                out.mux(packet)
            else:
                for af in packet.decode():
                    af.pts = None  # let the encoder count samples
                    out.mux(aout.encode(af))
            continue
        for frame in packet.decode():
            if frame.pts is None and vin.time_base:  # some raw inputs carry no timestamps
                frame.pts = round(index / (vin.average_rate or 25) / vin.time_base)
            index += 1
            yield frame


def read_frames(path: str | Path, size: tuple[int, int] | None = None,
                limit: int | None = None) -> Iterator[np.ndarray]:
    """Decoded RGB frames of a video as (H, W, 3) uint8, resized to ``size`` (w, h) if given."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise InstyleError(f"{path}: no such video file")
    with _open_video(av, path) as container:
        w, h = size or (None, None)
        for i, frame in enumerate(container.decode(video=0)):
            if limit is not None and i >= limit:
                return
            yield frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")


def measure_videos(src: str | Path, styled: str | Path, limit: int | None = None) -> WarpedFlicker:
    """The warped flicker of ``styled`` (a stylized ``src``), flow from ``src`` at the styled size."""
    first = next(read_frames(styled, limit=1), None)
    if first is None:
        raise InstyleError(f"{styled}: no video frames could be decoded")
    meter = WarpedFlicker()
    for a, b in zip(read_frames(src, (first.shape[1], first.shape[0]), limit), read_frames(styled, None, limit),
                    strict=False):
        meter.update(a[None], b[None])
    if not meter.pairs:
        raise InstyleError(f"{src}: fewer than two frames to compare")
    return meter

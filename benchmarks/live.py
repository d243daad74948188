"""Live mode end to end: frames/s and latency over the /api/live WebSocket, against the bare ``Stylizer``.

One command starts ``instyle serve`` in a subprocess (or uses ``--url``), then, interleaved round by
round and size by size so load from other processes hits every row alike:

* ``bare Stylizer``: the same frames through ``Stylizer`` in this process, no socket, no JPEG: the
  ceiling the live path can approach.
* ``paced``: what the page does, one frame in flight: send, wait for the result, decode it, repeat.
  Latency is send -> result decoded.
* ``flood``: a client that sends a frame every ``--flood-ms`` whatever comes back. Stale frames are
  dropped on the server (latest frame wins), so latency stays near one stylization instead of
  growing with a queue; ``sent`` vs ``frames`` shows how many were dropped.
* ``2 viewers``: two paced clients at once: each one's frames/s (fairness), latency pooled.

    python benchmarks/live.py                                  # starry-night-fast, 320x240 and 640x480
    python benchmarks/live.py --url ws://gpu-box:8000/api/live --style starry-night-fast
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import print_and_save  # benchmarks/ is on sys.path when a script here runs
from PIL import Image
from websockets.sync.client import ClientConnection, connect

from instyle.apps.serve.live import RESULT_HEADER
from instyle.core.hardware import machine_description
from instyle.inference.stylizer import Stylizer

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "src/instyle/assets/demo/chelsea.jpg"


def make_frames(w: int, h: int, n: int = 8) -> tuple[list[Image.Image], list[bytes]]:
    """A slow pan over a demo photo, as PIL frames and as the JPEGs a browser would send (quality 85)."""
    photo = Image.open(PHOTO).convert("RGB")
    scale = max((w + 4 * n) / photo.width, h / photo.height)
    photo = photo.resize((round(photo.width * scale) + 1, round(photo.height * scale) + 1))
    images = [photo.crop((4 * i, 0, 4 * i + w, h)) for i in range(n)]
    jpegs = []
    for img in images:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        jpegs.append(buf.getvalue())
    return images, jpegs


@contextlib.contextmanager
def open_viewer(url: str, style: str) -> Iterator[ClientConnection]:
    with connect(url, max_size=2**24, open_timeout=30) as ws:
        hello = json.loads(ws.recv())
        if hello["type"] != "hello":
            raise SystemExit(f"server refused: {hello}")
        ws.send(json.dumps({"type": "config", "style": style}))
        while json.loads(ws.recv())["type"] != "config":
            pass
        yield ws


def receive_result(ws: ClientConnection, timeout: float = 120.0) -> tuple[int, int, int]:
    """The next result: (frame number, server µs, dropped so far); decodes the JPEG as a browser would."""
    while True:
        msg = ws.recv(timeout=timeout)
        if isinstance(msg, str):
            body = json.loads(msg)
            if body["type"] == "error":
                raise SystemExit(f"server error: {body['message']}")
            continue
        Image.open(io.BytesIO(msg[RESULT_HEADER.size:])).load()
        return RESULT_HEADER.unpack_from(msg)


def frame_message(number: int, jpeg: bytes) -> bytes:
    return number.to_bytes(4, "big") + jpeg


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def paced(url: str, style: str, jpegs: list[bytes], seconds: float) -> dict[str, Any]:
    with open_viewer(url, style) as ws:
        for i in range(3):  # warm-up: the first frame of a size loads the style and validates the backend
            ws.send(frame_message(i, jpegs[i % len(jpegs)]))
            receive_result(ws)
        latencies, server, n = [], [], 3
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            ws.send(frame_message(n, jpegs[n % len(jpegs)]))
            number, server_us, _ = receive_result(ws)
            assert number == n, (number, n)
            latencies.append((time.perf_counter() - t) * 1000)
            server.append(server_us / 1000)
            n += 1
        elapsed = time.perf_counter() - start
    return {"fps": len(latencies) / elapsed, "frames": len(latencies), "sent": len(latencies),
            "processed": len(latencies) + 3, "latency_ms_p50": percentile(latencies, 0.5),
            "latency_ms_p90": percentile(latencies, 0.9),
            "latency_ms_max": max(latencies), "server_ms_p50": percentile(server, 0.5)}


def flood(url: str, style: str, jpegs: list[bytes], seconds: float, every_ms: float) -> dict[str, Any]:
    with open_viewer(url, style) as ws:
        return _flood(ws, jpegs, seconds, every_ms)


def _flood(ws: ClientConnection, jpegs: list[bytes], seconds: float, every_ms: float) -> dict[str, Any]:
    ws.send(frame_message(0, jpegs[0]))
    receive_result(ws)  # warm
    sent_at: dict[int, float] = {}
    stop = threading.Event()

    def sender() -> None:
        n = 1
        while not stop.is_set():
            sent_at[n] = time.perf_counter()
            ws.send(frame_message(n, jpegs[n % len(jpegs)]))
            n += 1
            time.sleep(every_ms / 1000)

    thread = threading.Thread(target=sender, daemon=True)
    start = time.perf_counter()
    thread.start()
    latencies: list[float] = []
    dropped = 0
    try:
        while time.perf_counter() - start < seconds:
            number, _, dropped = receive_result(ws)
            latencies.append((time.perf_counter() - sent_at[number]) * 1000)
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        thread.join()
    sent = len(sent_at)
    return {"fps": len(latencies) / elapsed, "frames": len(latencies), "sent": sent, "dropped": dropped,
            "processed": len(latencies) + 1,
            "latency_ms_p50": percentile(latencies, 0.5), "latency_ms_p90": percentile(latencies, 0.9),
            "latency_ms_max": max(latencies) if latencies else float("nan")}


def two_viewers(url: str, style: str, jpegs: list[bytes], seconds: float) -> dict[str, Any]:
    results: list[dict[str, Any]] = [{}, {}]

    def run(i: int) -> None:
        results[i] = paced(url, style, jpegs, seconds)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    each = [r["fps"] for r in results]
    return {"fps": sum(each), "frames": sum(r["frames"] for r in results), "sent": sum(r["sent"] for r in results),
            "processed": sum(r["processed"] for r in results),
            "per_viewer_fps": each, "latency_ms_p50": statistics.mean(r["latency_ms_p50"] for r in results),
            "latency_ms_p90": max(r["latency_ms_p90"] for r in results),
            "latency_ms_max": max(r["latency_ms_max"] for r in results)}


def bare(stylizer: Stylizer, images: list[Image.Image], seconds: float) -> dict[str, Any]:
    stylizer(images[0])
    times, n = [], 0
    cpu = time.process_time()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        stylizer(images[n % len(images)])
        times.append((time.perf_counter() - t) * 1000)
        n += 1
    return {"fps": len(times) / (time.perf_counter() - start), "frames": len(times), "sent": len(times),
            "cpu_ms": (time.process_time() - cpu) * 1000 / len(times),
            "latency_ms_p50": percentile(times, 0.5), "latency_ms_p90": percentile(times, 0.9),
            "latency_ms_max": max(times)}


def server_cpu(proc: subprocess.Popen[bytes] | None) -> float:
    """CPU seconds (user + system, all threads) the server subprocess used so far; NaN with --url.

    On a shared machine wall-clock frames/s say little; CPU time per frame says what an idle one would do.
    """
    if proc is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "instyle", "serve", "--port", str(port), "--device", args.device,
           "--backend", args.backend, "--max-live", "4"]
    if args.model:
        cmd += ["-m", args.model]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"instyle serve exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc, f"ws://127.0.0.1:{port}/api/live"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("instyle serve did not start within 60 s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default="starry-night-fast", help="a shipped style (ignored with -m)")
    p.add_argument("-m", "--model", help="a .safetensors model instead (offered under its file stem)")
    p.add_argument("--sizes", nargs="*", default=["320x240", "640x480"], help="WxH frame sizes")
    p.add_argument("--seconds", type=float, default=8.0, help="per client and size, per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--flood-ms", type=float, default=5.0, help="the flooding client's gap between frames")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto")
    p.add_argument("--url", help="an already running server's ws://HOST:PORT/api/live (no subprocess)")
    p.add_argument("--out", default="benchmarks/results", help="folder for live-<device>.{md,json}")
    args = p.parse_args()
    style = Path(args.model).stem if args.model else args.style
    stylizer = Stylizer.load(args.model or args.style, device=args.device, backend=args.backend)
    load_before = os.getloadavg()
    proc, url = (None, args.url) if args.url else start_server(args)
    clients = ["bare Stylizer", "paced", "flood", "2 viewers"]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for _ in range(args.rounds):
            for size in args.sizes:
                w, h = (int(v) for v in size.lower().split("x"))
                images, jpegs = make_frames(w, h)
                for client in clients:
                    cpu = server_cpu(proc)
                    if client == "bare Stylizer":
                        r = bare(stylizer, images, args.seconds)
                    elif client == "paced":
                        r = paced(url, style, jpegs, args.seconds)
                    elif client == "flood":
                        r = flood(url, style, jpegs, args.seconds, args.flood_ms)
                    else:
                        r = two_viewers(url, style, jpegs, args.seconds)
                    if "processed" in r:  # the server's CPU time per stylized frame, threads and all
                        r["cpu_ms"] = (server_cpu(proc) - cpu) * 1000 / r.pop("processed")
                    runs.setdefault((size, client), []).append(r)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    load_after = os.getloadavg()
    rows = []
    for (size, client), rs in runs.items():
        row = {"size": size, "client": client, **{k: statistics.median(r[k] for r in rs)
                                                    for k in rs[0] if isinstance(rs[0][k], int | float)}}
        if "per_viewer_fps" in rs[0]:
            row["per_viewer_fps"] = [statistics.median(r["per_viewer_fps"][i] for r in rs) for i in range(2)]
        rows.append(row)
    device = stylizer.device.type
    header = (f"## Live mode, {device}: {machine_description()}, style {style}, {stylizer.runner.backend} "
              f"(backend {args.backend}), median of {args.rounds} round(s) x {args.seconds:g} s, "
              f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    lines = [header, "", "| frame | client | frames/s | vs bare | latency p50 ms | p90 ms | max ms | CPU ms/frame | "
             "sent | notes |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    bare_fps = {r["size"]: r["fps"] for r in rows if r["client"] == "bare Stylizer"}
    for r in rows:
        r["vs_bare"] = r["fps"] / bare_fps[r["size"]]
        notes = ""
        if r["client"] == "flood":
            notes = f"{r['sent'] - r['frames']:.0f} stale frames dropped"
        elif r["client"] == "2 viewers":
            notes = "each " + " / ".join(f"{v:.1f}" for v in r["per_viewer_fps"]) + " frames/s"
        elif r["client"] == "paced":
            notes = f"server {r['server_ms_p50']:.0f} ms"
        lines.append(f"| {r['size']} | {r['client']} | {r['fps']:.1f} | {r['vs_bare']:.2f}x | "
                     f"{r['latency_ms_p50']:.0f} | {r['latency_ms_p90']:.0f} | {r['latency_ms_max']:.0f} | "
                     f"{r.get('cpu_ms', float('nan')):.0f} | {r['sent']:.0f} | {notes} |")
    print_and_save("\n".join(lines), args.out, f"live-{device}.md")
    Path(args.out, f"live-{device}.json").write_text(json.dumps(
        {"machine": machine_description(), "style": style, "backend": stylizer.runner.backend,
         "load_average": [load_before[0], load_after[0]], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

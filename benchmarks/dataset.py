"""Images/s of ``instyle stylize-dataset`` with the local engine against the Ray engine, same folder, same run.

Each configuration is the real command line in a fresh process (``--force``, so every image is redone),
timed from launch to exit: Python and torch start-up, Ray's start-up or attach, actor start and model
load are all in the number, because that is what a user waits for. Rounds are interleaved (local, then
each Ray shape, repeated) and medians reported, so load from other processes hits every engine alike.
The ``attached`` rows run against a cluster started once with ``ray start --head`` (the cluster case:
start-up paid once, not per job). Every configuration's outputs are compared with the local engine's.

    python benchmarks/dataset.py                                  # 64 photos at 512 px, starry-night-fast
    python benchmarks/dataset.py --images 8 --size 64 --rounds 1 --configs local --out /tmp/x   # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from instyle.core.hardware import machine_description
from instyle.data.demo_photos import DEMO_PHOTOS

# name -> extra CLI arguments ("attached" configs run with RAY_ADDRESS set to a running cluster)
CONFIGS: dict[str, list[str]] = {
    "local": ["--engine", "local"],
    "local-1thread": ["--engine", "local"],
    "ray-own-2x1": ["--engine", "ray", "--actors", "2", "--cpus-per-actor", "1"],
    "ray-attached-2x1": ["--engine", "ray", "--actors", "2", "--cpus-per-actor", "1"],
    "ray-attached-1x2": ["--engine", "ray", "--actors", "1", "--cpus-per-actor", "2"],
}

# extra environment per config: one torch thread, to tell process parallelism from Ray itself
ENVS: dict[str, dict[str, str]] = {"local-1thread": {"OMP_NUM_THREADS": "1"}}


def make_photos(folder: Path, n: int, size: int) -> None:
    """``n`` square crops of the bundled demo photos (shifted, mirrored) in two sub-folders, as JPEGs."""
    sources = sorted(DEMO_PHOTOS.glob("*.jpg"))
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as im:
            photo = im.convert("RGB")
        side = min(photo.size)
        shift = (i // len(sources)) * 7 % max(1, max(photo.size) - side + 1)
        box = (shift, 0, shift + side, side) if photo.width > photo.height else (0, shift, side, shift + side)
        crop = photo.crop(box).resize((size, size), Image.Resampling.LANCZOS)
        if (i // len(sources)) % 2:
            crop = ImageOps.mirror(crop)
        dest = folder / f"part{i % 2}" / f"photo{i:03d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        crop.save(dest, quality=92)


def io_milliseconds(photos: Path, scratch: Path) -> float:
    """Median CPU-side cost per image outside the network, as an actor pays it: decode the source, encode
    the output (JPEG quality 95, as ``save_image`` writes it), hash the source and the output."""
    from instyle.core.files import sha256_file
    from instyle.data.images import load_image, save_image

    times = []
    for i, src in enumerate(sorted(photos.rglob("*.jpg"))):
        t = time.perf_counter()
        loaded = load_image(src)
        dest = scratch / f"io{i}.jpg"
        save_image(loaded.rgb, dest)
        sha256_file(src)
        sha256_file(dest)
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def run_once(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds


def outputs_of(out: Path) -> dict[str, str]:
    with open(out / "manifest.csv", newline="") as fh:
        return {r["output"]: r["output_sha256"] for r in csv.DictReader(fh) if r["status"] in ("ok", "skipped")}


def steady_rate(out: Path) -> float:
    """Images/s between the first and the last finished image (the manifest's ``finished`` times): the rate
    once every worker is up, without start-up and tear-down."""
    with open(out / "manifest.csv", newline="") as fh:
        done = sorted(float(r["finished"]) for r in csv.DictReader(fh) if r["status"] == "ok")
    return (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--style", default="starry-night-fast")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", default="auto")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--out", default="docs", help="folder for dataset-benchmark.md and .json")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    a = p.parse_args()

    work = Path(a.work or tempfile.mkdtemp(prefix="instyle-dataset-bench-"))
    photos = work / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    make_photos(photos, a.images, a.size)
    cli = [sys.executable, "-m", "instyle", "stylize-dataset", str(photos), "-s", a.style, "--backend", a.backend,
           "--quiet", "--force"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    attached = any(c.startswith("ray-attached") for c in a.configs)
    ray_bin = Path(sys.executable).with_name("ray")
    head_seconds: float | None = None
    if attached:
        t = time.perf_counter()
        subprocess.run([str(ray_bin), "start", "--head", "--num-cpus", str(os.cpu_count() or 1),
                        "--include-dashboard=false", "--disable-usage-stats"], check=True, capture_output=True,
                       env=env)
        head_seconds = time.perf_counter() - t
    times: dict[str, list[float]] = {c: [] for c in a.configs}
    steady: dict[str, list[float]] = {c: [] for c in a.configs}
    try:
        for _ in range(a.rounds):
            for name in a.configs:
                run_env = {**env, "RAY_ADDRESS": "auto"} if name.startswith("ray-attached") else dict(env)
                run_env.update(ENVS.get(name, {}))
                times[name].append(run_once([*cli, "-o", str(work / name), *CONFIGS[name]], run_env))
                steady[name].append(steady_rate(work / name))
    finally:
        if attached:
            subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env)
    io_ms = io_milliseconds(photos, work)
    reference = outputs_of(work / a.configs[0])
    rows: list[dict[str, Any]] = []
    base = statistics.median(times[a.configs[0]])
    for name in a.configs:
        med = statistics.median(times[name])
        same = outputs_of(work / name) == reference
        rate = statistics.median(steady[name])
        rows.append({"config": name, "median_s": round(med, 2), "runs_s": [round(t, 2) for t in times[name]],
                     "images_per_s": round(a.images / med, 2), "vs_first": round(base / med, 2),
                     "steady_images_per_s": round(rate, 2),
                     "overhead_s": round(med - a.images / rate, 1) if rate == rate else None, "same_outputs": same})
    load = os.getloadavg()
    lines = [
        f"Stylize-dataset engines: {a.images} photos at {a.size}x{a.size} px, `{a.style}`, backend {a.backend}, "
        f"median of {a.rounds} interleaved rounds, wall time of the whole command (start-up included).",
        f"Machine: {machine_description()}, {os.cpu_count()} CPUs; load average at the end "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (a shared machine: preliminary numbers).",
        "" if not attached else f"`ray start --head` took {head_seconds:.1f} s once, before the attached rows.",
        f"CPU-side work per image outside the network (decode, JPEG encode, two sha256), one thread: {io_ms:.1f} ms.",
        "",
        "Steady images/s: first to last finished image in the manifest (all workers up); overhead: the wall "
        "time the steady rate does not explain (interpreter, torch and Ray start-up, actors, model load).",
        "",
        f"| config | median s | images/s | vs {a.configs[0]} | steady images/s | overhead s | runs (s) | "
        f"same outputs as {a.configs[0]} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['config']} | {r['median_s']} | {r['images_per_s']} | {r['vs_first']}x | "
                     f"{r['steady_images_per_s']} | {r['overhead_s']} | {', '.join(map(str, r['runs_s']))} | "
                     f"{'yes' if r['same_outputs'] else 'NO'} |")
    text = "\n".join(lines)
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset-benchmark.md").write_text(text + "\n")
    (out / "dataset-benchmark.json").write_text(json.dumps(
        {"images": a.images, "size": a.size, "style": a.style, "backend": a.backend, "rounds": a.rounds,
         "machine": machine_description(), "ray_head_start_s": head_seconds, "io_ms_per_image": round(io_ms, 2),
         "rows": rows}, indent=1) + "\n")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

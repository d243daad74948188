"""``instyle stylize-dataset``: style rules, the manifest, verified resume, killed runs, and the Ray engine."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import write_tiny_model
from instyle.apps.cli import main
from instyle.core.errors import InstyleError
from instyle.core.files import sha256_file
from instyle.inference.dataset_job import (
    STATE_DIR,
    StyleRule,
    image_seed,
    load_records,
    plan_job,
    read_manifest_input,
    run_local,
)
from instyle.inference.stylizer import Stylizer

GOOD = ["a0.jpg", "a1.png", "sub/b0.jpg", "sub/b1.png", "sub/deep/c0.jpg", "sub/deep/c1.png", "d0.jpg", "d1.png"]


def _make_tree(root: Path) -> Path:
    """Eight small photos (two sizes, nested two levels) and one broken JPEG."""
    rng = np.random.default_rng(1)
    for i, rel in enumerate(GOOD):
        h, w = (40, 56) if i % 2 else (48, 48)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / rel)
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models2") / "other.safetensors", seed=1, title="other")


def _manifest(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="") as fh:
        return {r["output"]: r for r in csv.DictReader(fh)}


def _mtimes(out: Path) -> dict[str, int]:
    return {rel: (out / rel).stat().st_mtime_ns for rel in GOOD if (out / rel).exists()}


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def local_out(tree: Path, model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local engine's result over ``tree``: the reference the other tests compare with."""
    out = tmp_path_factory.mktemp("local") / "out"
    before = _tree_hashes(tree)
    rc = main(["stylize-dataset", str(tree), "-o", str(out), "-s", str(model_file), "--backend", "eager", "--quiet"])
    assert rc == 1  # one image failed
    assert _tree_hashes(tree) == before  # inputs untouched
    return out


def test_local_engine_writes_the_tree_and_lists_the_failure(local_out: Path, tree: Path, model_file: Path) -> None:
    rows = _manifest(local_out)
    assert sorted(rows) == sorted([*GOOD, "sub/broken.jpg"])
    bad = rows["sub/broken.jpg"]
    assert bad["status"] == "failed" and "broken.jpg" in bad["error"] and "not a readable image" in bad["error"]
    assert not (local_out / "sub" / "broken.jpg").exists()
    stylizer = Stylizer.load(model_file, device="cpu", backend="eager")
    for rel in GOOD:
        r = rows[rel]
        assert r["status"] == "ok" and r["error"] == ""
        assert r["output_sha256"] == sha256_file(local_out / rel) and int(r["size"]) == (local_out / rel).stat().st_size
        assert r["source_sha256"] == sha256_file(tree / rel) and r["style"] == str(model_file)
        assert float(r["strength"]) == 1.0 and r["backend"] == "eager"
    # the same pixels as the one-image Stylizer path (PNG is lossless: compare the decoded arrays)
    want = np.asarray(stylizer(Image.open(tree / "sub/b1.png").convert("RGB")))
    assert np.array_equal(np.asarray(Image.open(local_out / "sub/b1.png")), want)
    assert not list((local_out / STATE_DIR).glob("journal-*"))  # merged into the manifest


def test_rerun_skips_verified_outputs_and_redoes_tampered_ones(local_out: Path, tree: Path, model_file: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = tmp_path / "src"
    _make_tree(src)
    args = ["stylize-dataset", str(src), "-o", str(out), "-s", str(model_file), "--backend", "eager", "--quiet"]
    assert main(args) == 1
    first = _mtimes(out)
    assert main(args) == 1  # the broken image is retried, and fails again
    rows = _manifest(out)
    assert {rows[r]["status"] for r in GOOD} == {"skipped"} and rows["sub/broken.jpg"]["status"] == "failed"
    assert _mtimes(out) == first
    # tamper with one output (same size, other bytes), replace one source: only those two are redone
    tampered = out / "a1.png"
    data = bytearray(tampered.read_bytes())
    data[-20] ^= 0xFF
    tampered.write_bytes(bytes(data))
    time.sleep(0.01)
    Image.fromarray(np.full((48, 48, 3), 200, np.uint8)).save(src / "d0.jpg")
    assert main(args) == 1
    rows = _manifest(out)
    redone = {r for r in GOOD if rows[r]["status"] == "ok"}
    assert redone == {"a1.png", "d0.jpg"}
    assert {rows[r]["status"] for r in set(GOOD) - redone} == {"skipped"}
    assert (out / "a1.png").read_bytes() == (local_out / "a1.png").read_bytes()
    assert rows["d0.jpg"]["source_sha256"] == sha256_file(src / "d0.jpg")
    # a changed rule (another strength) is not "complete" either
    assert main([*args, "--strength", "0.5"]) == 1
    assert {r["status"] for k, r in _manifest(out).items() if k in GOOD} == {"ok"}


def test_seeded_random_rule_is_reproducible_and_order_free() -> None:
    rule = StyleRule(("a", "b", "c"), assign="random", seed=7, strength=(0.5, 1.0))
    keys = [f"img/{i:04d}.jpg" for i in range(300)]
    first = {k: rule.choose(k) for k in keys}
    again = {k: StyleRule(("a", "b", "c"), assign="random", seed=7, strength=(0.5, 1.0)).choose(k)
             for k in reversed(keys)}
    assert first == again
    assert {s for v in first.values() for s, _, _ in v} == {"a", "b", "c"}
    strengths = [st for v in first.values() for _, st, _ in v]
    assert all(0.5 <= st <= 1.0 for st in strengths) and max(strengths) - min(strengths) > 0.4
    other = StyleRule(("a", "b", "c"), assign="random", seed=8, strength=(0.5, 1.0))
    assert sum(other.choose(k)[0][0] != first[k][0][0] for k in keys) > 100
    assert first["img/0001.jpg"][0][2] == image_seed(7, "img/0001.jpg")
    assert StyleRule(("a", "b")).choose("x.jpg") == [("a", None, image_seed(0, "x.jpg")),
                                                   ("b", None, image_seed(0, "x.jpg"))]
    with pytest.raises(InstyleError):
        StyleRule(())


def test_rules_through_the_cli(tree: Path, model_file: Path, second_model: Path, tmp_path: Path) -> None:
    """Random per image: one mirrored tree, drawn strengths recorded; ``all`` with two styles nests by style."""
    base = ["stylize-dataset", str(tree), "-s", str(model_file), "-s", str(second_model), "--backend", "eager",
            "--quiet"]
    out = tmp_path / "random"
    assert main([*base, "-o", str(out), "--assign", "random", "--seed", "3", "--strength", "0.6:0.9"]) == 1
    rows = _manifest(out)
    rule = StyleRule((str(model_file), str(second_model)), assign="random", seed=3, strength=(0.6, 0.9))
    for rel in GOOD:
        ((style, strength, seed),) = rule.choose(rel)
        assert (rows[rel]["style"], float(rows[rel]["strength"]), int(rows[rel]["seed"])) == (style, strength, seed)
        assert (out / rel).is_file()
    nested = tmp_path / "all"
    assert main([*base, "-o", str(nested), "--format", "png"]) == 1
    assert {p.relative_to(nested).parts[0] for p in nested.rglob("*.png")} == {"tiny", "other"}
    assert (nested / "other" / "sub" / "deep" / "c0.png").is_file()


def test_manifest_inputs_csv_and_parquet(tree: Path, model_file: Path, local_out: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\n" + "".join(f"{rel},x\n" for rel in GOOD[:4]))
    (tmp_path / "a0.jpg").write_bytes((tree / "a0.jpg").read_bytes())
    (tmp_path / "sub").mkdir()
    for rel in GOOD[1:4]:
        (tmp_path / rel).write_bytes((tree / rel).read_bytes())
    out = tmp_path / "from-csv"
    assert main(["stylize-dataset", str(listing), "-o", str(out), "-s", str(model_file), "--backend", "eager",
                 "--quiet"]) == 0
    for rel in GOOD[:4]:
        assert (out / rel).read_bytes() == (local_out / rel).read_bytes()
    # paths relative to --root, a column of another name
    other = tmp_path / "other.csv"
    other.write_text("file\n" + "".join(f"{rel}\n" for rel in GOOD[4:]))
    srcs = read_manifest_input(str(other), column="file", root=str(tree))
    assert [s.key for s in srcs] == GOOD[4:] and all(s.size > 0 for s in srcs)
    assert main(["stylize-dataset", str(other), "-o", str(tmp_path / "x"), "-s", str(model_file)]) == 2  # no 'path'
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"path": [str(tree / rel) for rel in GOOD[:2]]})
    pq.write_table(table, tmp_path / "list.parquet")
    out_pq = tmp_path / "from-parquet"
    assert main(["stylize-dataset", (tmp_path / "list.parquet").as_uri(), "-o", str(out_pq), "-s", str(model_file),
                 "--root", tree.as_uri(), "--backend", "eager", "--manifest-format", "both", "--quiet"]) == 0
    for rel in GOOD[:2]:
        assert (out_pq / rel).read_bytes() == (local_out / rel).read_bytes()
    rows = pq.read_table(out_pq / "manifest.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["source"].startswith("file://")
    # a folder given as a URI is listed through pyarrow.fs, with the same keys as the local listing
    plan = plan_job(tree.as_uri(), str(tmp_path / "uri-out"), StyleRule((str(model_file),)))
    assert sorted(i["output"] for i in plan.items) == sorted([*GOOD, "sub/broken.jpg"])
    assert all(i["source"].startswith("file://") and i["source_size"] > 0 for i in plan.items)


def test_refuses_to_write_into_its_input(tree: Path, model_file: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    before = _tree_hashes(tree)
    assert main(["stylize-dataset", str(tree), "-o", str(tree / "styled"), "-s", str(model_file)]) == 2
    assert "must not be inside the input folder" in capsys.readouterr().err
    # through a manifest, an output that *is* an input is recorded as failed, the input kept
    listing = tmp_path / "m.csv"
    listing.write_text(f"path\n{tree / 'a1.png'}\n")
    with pytest.raises(InstyleError):
        plan_job(str(listing), str(tree / "a1.png"), StyleRule((str(model_file),)))  # a file, not a folder
    plan = plan_job(str(listing), str(tree), StyleRule((str(model_file),)), root=str(tree))
    assert "refusing to overwrite an input" in plan.items[0]["error"]
    report = run_local(plan, progress=False)
    assert report.failed == 1 and _tree_hashes(tree) == {**before, "manifest.csv": sha256_file(tree / "manifest.csv")}
    (tree / "manifest.csv").unlink()
    for j in (tree / STATE_DIR).glob("*"):
        j.unlink()
    (tree / STATE_DIR).rmdir()


@pytest.mark.slow
def test_killed_driver_resumes_to_the_same_result(model_file: Path, local_out: Path, tmp_path: Path) -> None:
    """SIGKILL the whole local job mid-way: no corrupt manifest, and the re-run only does what was left."""
    src = _make_tree(tmp_path / "src")
    (src / "more").mkdir()
    for i in range(16):  # more images, so the kill lands mid-job
        pixels = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(src / "more" / f"m{i:02d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "instyle", "stylize-dataset", str(src), "-o", str(out), "-s", str(model_file),
           "--backend", "eager", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = sum(len(j.read_text().splitlines()) for j in (out / STATE_DIR).glob("journal-*.jsonl")) \
            if (out / STATE_DIR).is_dir() else 0
        if done >= 4:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.csv").exists()  # never half-written: it only appears when merged
    recorded = {o: r for o, r in load_records(out).items() if r["status"] == "ok"}
    assert len(recorded) >= 3
    before = {o: (out / o).stat().st_mtime_ns for o in recorded}
    rc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rc.returncode == 1 and "1 failed" in rc.stdout
    rows = _manifest(out)
    assert {rows[o]["status"] for o in recorded} == {"skipped"}
    assert {o: (out / o).stat().st_mtime_ns for o in recorded} == before
    assert sum(r["status"] == "ok" for r in rows.values()) == len(rows) - 1 - len(recorded)
    for rel in GOOD:
        assert (out / rel).read_bytes() == (local_out / rel).read_bytes()


# ----------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    """One local two-CPU Ray cluster for every Ray test (start-up is the slow part on two cores)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own DataContext fields
def test_ray_engine_matches_local_and_survives_a_killed_worker(ray_cluster: Any, tree: Path, model_file: Path,
                                                               local_out: Path, tmp_path: Path) -> None:
    from instyle.inference import ray_engine

    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    rule = StyleRule((str(model_file),))
    out = tmp_path / "ray"
    plan = plan_job(str(tree), str(out), rule, backend="eager")
    report = ray_engine.run_ray(plan, progress=False)
    assert (report.ok, report.failed, report.skipped) == (len(GOOD), 1, 0)
    rows = _manifest(out)
    assert rows["sub/broken.jpg"]["status"] == "failed" and "not a readable image" in rows["sub/broken.jpg"]["error"]
    for rel in GOOD:
        assert (out / rel).read_bytes() == (local_out / rel).read_bytes(), rel

    # a worker SIGKILLs itself on its third batch: Ray restarts it and retries that batch only
    killed = tmp_path / "killed"
    marker = tmp_path / "kill-marker.json"
    plan = plan_job(str(tree), str(killed), rule, backend="eager")
    report = ray_engine.run_ray(plan, progress=False, udf=_killer(marker, killed))
    assert marker.is_file(), "the worker was never killed"
    done_before_kill = json.loads(marker.read_text())
    assert done_before_kill, "nothing was finished before the kill"
    assert (report.ok, report.failed) == (len(GOOD), 1)
    # Within the killed run Ray may retry more than the batch that died (tasks queued on the dead actor,
    # results not yet journaled): such images are redone with the same bytes, checked below. What must
    # hold is that nothing complete is redone by the next run.
    assert len((killed / "manifest.csv").read_text().splitlines()) == 1 + len(GOOD) + 1  # one row per image
    after_first = _mtimes(killed)
    assert set(done_before_kill) <= set(after_first)
    # the second run, through the CLI on the same cluster: nothing redone
    assert main(["stylize-dataset", str(tree), "-o", str(killed), "-s", str(model_file), "--backend", "eager",
                 "--engine", "ray", "--quiet"]) == 1
    rows = _manifest(killed)
    assert {rows[r]["status"] for r in GOOD} == {"skipped"} and rows["sub/broken.jpg"]["status"] == "failed"
    assert _unchanged(killed, after_first)
    for rel in GOOD:
        assert (killed / rel).read_bytes() == (local_out / rel).read_bytes(), rel


def _unchanged(out: Path, mtimes: dict[str, int]) -> bool:
    now = _mtimes(out)
    return all(now.get(rel) == t for rel, t in mtimes.items())


def _killer(marker: Path, out: Path) -> type:
    from instyle.inference.ray_engine import StylizeBatch

    class KillOnThirdBatch(StylizeBatch):
        """Records which outputs exist, then SIGKILLs its own process once (the marker guards re-runs)."""

        calls = 0

        def __call__(self, batch: Any) -> Any:
            KillOnThirdBatch.calls += 1
            if KillOnThirdBatch.calls == 3 and not marker.exists():
                marker.write_text(json.dumps(_mtimes(out)))
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__call__(batch)

    return KillOnThirdBatch


@pytest.mark.slow
def test_benchmark_script_runs_and_saves_its_table(tmp_path: Path) -> None:
    """benchmarks/dataset.py end to end at toy size (local engine only), so the lead's rerun cannot fail on it."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "dataset.py"), "--images", "3", "--size", "40",
                           "--rounds", "1", "--configs", "local", "--backend", "eager", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "dataset-benchmark.json").read_text())["rows"]
    assert [r["config"] for r in rows] == ["local"] and rows[0]["images_per_s"] > 0 and rows[0]["same_outputs"]
    assert "| local |" in (tmp_path / "dataset-benchmark.md").read_text()

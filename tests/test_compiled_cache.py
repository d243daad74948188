"""The AOT-compiled cache behind ``auto`` (#23): reused across processes, invalidated by new weights,
never trusted when damaged, and as accurate as fp32 eager at odd sizes.

One package (the shipped ``starry-night-fast``, johnson-half, fp32) is compiled once for the whole
module (about a minute on 2 cores); every other test reuses it or replaces the compiler with a copy
of it, so that reuse is asserted on ``compiled.build_count`` and on the loader's calls, never on timing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tests.test_faststart import fresh_stylize

from instyle.core.files import sha256_file
from instyle.inference import backends, compiled
from instyle.inference.backends import MIN_PSNR, check_psnr, psnr, sample_image
from instyle.inference.stylizer import Stylizer
from instyle.models.modelfile import load_model, save_model
from instyle.zoo import resolve_model

pytestmark = pytest.mark.slow
REPO_SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def aot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A private cache holding one compiled package, and the model file it was built from."""
    root = tmp_path_factory.mktemp("instyle-cache")
    models = tmp_path_factory.mktemp("aot-models")
    generator, card = load_model(resolve_model("starry-night-fast"))
    model = models / "snf.safetensors"
    save_model(generator, card, model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTYLE_CACHE", str(root))
        mp.setenv("INSTYLE_AOT", "1")
        mp.setattr(compiled, "has_amx", lambda: False)  # auto's compiled candidate is the fp32 package built here
        mp.setattr(backends, "RACE_SIZE", (48, 64))  # auto's one-off timing of its candidates, kept tiny
        before = compiled.build_count
        stylizer = Stylizer.load(model, device="cpu", backend="aot-fp32")
        stylizer.runner  # noqa: B018  (compiles)
        assert compiled.build_count == before + 1
        (package,) = (root / "compiled").glob("*.pt2")
        yield SimpleNamespace(root=root, model=model, stylizer=stylizer, package=package,
                              sha=sha256_file(package))


def _run_fresh_process(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(REPO_SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True,
                          timeout=300)


def test_fresh_process_loads_without_compiling(aot: SimpleNamespace) -> None:
    result = _run_fresh_process(f"""
        import torch
        from instyle.inference import compiled
        from instyle.inference.stylizer import Stylizer
        s = Stylizer.load({str(aot.model)!r}, device="cpu", backend="aot-fp32")
        y = s.stylize_tensor(torch.rand(3, 37, 53))
        print("builds", compiled.build_count, tuple(y.shape))
    """, {"INSTYLE_CACHE": str(aot.root), "INSTYLE_AOT": "1"})
    assert result.returncode == 0, result.stderr
    assert "builds 0 (3, 37, 53)" in result.stdout
    assert "compiling" not in result.stderr


def test_fresh_stylizer_reuses_package(aot: SimpleNamespace) -> None:
    before = compiled.build_count
    runner = Stylizer.load(aot.model, device="cpu", backend="aot-fp32").runner
    assert runner.backend == "aot-fp32"
    runner(torch.rand(1, 3, 24, 40))
    assert compiled.build_count == before
    assert sha256_file(aot.package) == aot.sha


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 5, 7), (1, 3, 17, 31), (2, 3, 33, 18), (1, 3, 75, 113),
                                   (3, 3, 64, 64)])
def test_odd_sizes_match_fp32_eager(aot: SimpleNamespace, shape: tuple[int, ...]) -> None:
    runner, ref = aot.stylizer.runner, aot.stylizer.module
    x = torch.cat([sample_image(shape[-2:], seed=i) for i in range(shape[0])])
    with torch.inference_mode():
        out, want = runner(x), ref(x)
    assert out.shape == want.shape and out.dtype == torch.float32
    assert psnr(out, want) >= MIN_PSNR


def _perturbed_copy(model: Path, out: Path) -> Path:
    generator, card = load_model(model)
    with torch.no_grad():
        next(generator.parameters()).mul_(1.01)
    save_model(generator, card, out)
    return out


def test_changed_model_file_misses_the_cache(aot: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[Path] = []

    def refuse(module: torch.nn.Module, dtype: torch.dtype, device: torch.device, path: Path) -> None:
        calls.append(path)
        raise RuntimeError("no compiler in this test\nsecond line")

    monkeypatch.setattr(compiled, "build_package", refuse)
    monkeypatch.setenv("INSTYLE_CACHE", str(tmp_path / "cache"))
    changed = _perturbed_copy(aot.model, tmp_path / "changed.safetensors")
    with pytest.raises(backends.InstyleError, match=r"^compiling .+ failed \(RuntimeError: no compiler in this test\)"):
        Stylizer.load(changed, device="cpu", backend="aot-fp32").runner  # noqa: B018
    assert len(calls) == 1
    # auto on the changed file: the package misses, compilation fails, the next candidate runs, one line each.
    capsys.readouterr()
    runner = Stylizer.load(changed, device="cpu").runner
    err = capsys.readouterr().err
    assert runner.backend in backends.auto_candidates(torch.device("cpu"))[1:]
    assert "aot-fp32 unavailable here (compiling " in err and "Traceback" not in err
    assert len(calls) == 2


@pytest.mark.parametrize("damage", ["artefact-bytes", "sidecar-hash", "sidecar-garbage", "artefact-missing"])
def test_damaged_entry_is_rebuilt_and_never_loaded(aot: SimpleNamespace, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(aot.root, cache)
    monkeypatch.setenv("INSTYLE_CACHE", str(cache))
    package = cache / "compiled" / aot.package.name
    sidecar = package.with_suffix(".json")
    if damage == "artefact-bytes":
        data = bytearray(package.read_bytes())
        data[len(data) // 2] ^= 0xFF
        package.write_bytes(bytes(data))
    elif damage == "sidecar-hash":
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "sha256": "0" * 64}))
    elif damage == "sidecar-garbage":
        sidecar.write_text("{not json")
    else:
        package.unlink()
    built: list[Path] = []
    loaded: list[str] = []
    real_load = compiled._load_package

    def rebuild(module: torch.nn.Module, dtype: torch.dtype, device: torch.device, path: Path) -> None:
        built.append(path)
        shutil.copyfile(aot.package, path)  # what the compiler would make, without its minute

    def spy(path: Path, device: torch.device) -> object:
        loaded.append(sha256_file(path))
        return real_load(path, device)

    monkeypatch.setattr(compiled, "build_package", rebuild)
    monkeypatch.setattr(compiled, "_load_package", spy)
    monkeypatch.setattr(compiled, "_LOADED", {})
    runner = Stylizer.load(aot.model, device="cpu", backend="aot-fp32").runner
    assert len(built) == 1 and loaded == [aot.sha]
    assert json.loads(sidecar.read_text())["sha256"] == aot.sha == sha256_file(package)
    assert check_psnr(runner, aot.stylizer.module, (29, 41)) >= MIN_PSNR


def test_auto_records_its_pick_and_skips_validation_next_time(aot: SimpleNamespace, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(aot.root, cache)
    monkeypatch.setenv("INSTYLE_CACHE", str(cache))
    checks: list[str] = []
    real_check = backends.check_psnr

    def counting(runner: backends.Runner, *args: object, **kw: object) -> float:
        checks.append(runner.backend)
        return real_check(runner, *args, **kw)

    monkeypatch.setattr(backends, "check_psnr", counting)
    candidates = backends.auto_candidates(torch.device("cpu"))
    builds = compiled.build_count
    first = Stylizer.load(aot.model, device="cpu").runner
    assert candidates[0] == "aot-fp32" and compiled.build_count == builds  # the package is reused
    assert checks == [c for c in candidates if c != "eager" for _ in backends.CHECK_SIZES]
    (record,) = (cache / "compiled" / "validated").glob("*.json")
    body = json.loads(record.read_text())
    assert body["backend"] == first.backend and set(body["ms"]) == set(candidates)
    assert body["psnr"] is None if first.backend == "eager" else body["psnr"] >= MIN_PSNR
    checks.clear()
    assert Stylizer.load(aot.model, device="cpu").runner.backend == first.backend
    assert checks == []  # the recorded pick, no revalidation
    # A tampered record is ignored and validation runs again.
    other = next(c for c in candidates if c != first.backend)
    record.write_text(json.dumps({**body, "backend": other}))
    Stylizer.load(aot.model, device="cpu").runner  # noqa: B018
    assert len(checks) == len(backends.CHECK_SIZES) * (len(candidates) - 1)


def test_changed_weights_revalidate(aot: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTYLE_CACHE", str(tmp_path / "cache"))
    module = aot.stylizer.module
    cpu = torch.device("cpu")
    parts = backends._validation_parts(module, cpu, ["x", "eager"], MIN_PSNR)
    compiled.record_choice(parts, "eager", float("inf"))
    assert compiled.cached_choice(parts) is not None
    changed = Stylizer.load(_perturbed_copy(aot.model, tmp_path / "c.safetensors"), device="cpu").module
    assert compiled.cached_choice(backends._validation_parts(changed, cpu, ["x", "eager"], MIN_PSNR)) is None
    monkeypatch.setattr(torch, "__version__", "0.0-other")
    assert compiled.cached_choice(backends._validation_parts(module, cpu, ["x", "eager"], MIN_PSNR)) is None


def test_concurrent_first_runs_build_once(aot: SimpleNamespace, tmp_path: Path) -> None:
    """Two processes meeting an empty cache: one builds under the lock, the other waits and loads it."""
    code = f"""
        import shutil, time
        from instyle.inference import compiled
        from instyle.inference.stylizer import Stylizer
        def slow_copy(module, dtype, device, path):
            time.sleep(4)
            shutil.copyfile({str(aot.package)!r}, path)
        compiled.build_package = slow_copy
        s = Stylizer.load({str(aot.model)!r}, device="cpu", backend="aot-fp32")
        s.runner
        print("builds", compiled.build_count)
    """
    env = {**os.environ, "INSTYLE_CACHE": str(tmp_path / "cache"), "INSTYLE_AOT": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_SRC), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert sorted(o.split()[-1] for o, _ in outs) == ["0", "1"]
    (package,) = (tmp_path / "cache" / "compiled").glob("*.pt2")
    assert sha256_file(package) == aot.sha


def test_compile_switches_stay_scoped() -> None:
    """#15: building a compiled runner flips no process-wide inductor or dynamo setting."""
    import torch._dynamo
    import torch._inductor.config

    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    freezing, limit = torch._inductor.config.freezing, getattr(cfg, name)
    backends.build_runner(torch.nn.Conv2d(3, 3, 1), "compile", "cpu")
    with backends.compile_scope(limit + 100):
        assert getattr(cfg, name) == limit + 100 and torch._inductor.config.freezing
    assert (torch._inductor.config.freezing, getattr(cfg, name)) == (freezing, limit)


def test_the_parallel_reduction_rule_is_scoped_to_one_build() -> None:
    from torch._inductor.codegen import cpp

    before = cpp.LoopNest.max_parallel_depth
    with compiled._parallel_symbolic_reductions():
        assert cpp.LoopNest.max_parallel_depth is not before  # in force while a package compiles
    assert cpp.LoopNest.max_parallel_depth is before
    with pytest.raises(RuntimeError), compiled._parallel_symbolic_reductions():
        raise RuntimeError("a failed compilation")
    assert cpp.LoopNest.max_parallel_depth is before


def test_corrupt_onnx_cache_is_exported_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ONNX graph ``auto`` may pick (ONNX Runtime) is cached too, and checked the same way."""
    pytest.importorskip("onnx")
    from instyle.inference import export
    from instyle.models import create_model
    from instyle.models.clamped import ClampedGenerator

    monkeypatch.setenv("INSTYLE_CACHE", str(tmp_path))
    torch.manual_seed(0)
    module = ClampedGenerator(create_model("johnson-half")).eval()
    backends.cached_onnx(module)
    (graph,) = (tmp_path / "onnx").glob("*.onnx")
    graph.write_bytes(b"not an onnx graph")
    exports: list[int] = []
    real = export.onnx_bytes

    def counting(*args: object, **kw: object) -> tuple[bytes, int]:
        exports.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(export, "onnx_bytes", counting)
    data, side = backends.cached_onnx(module)
    assert exports == [1] and data != b"not an onnx graph" and graph.read_bytes() == data and side > 0
    assert backends.cached_onnx(module) == (data, side) and exports == [1]  # intact now: reused


def test_a_plain_stylize_after_the_first_skips_torch_and_writes_the_same_bytes(
        aot: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from instyle.apps.cli import main
    from instyle.inference import faststart

    cache = tmp_path / "cache"
    shutil.copytree(aot.root, cache)
    monkeypatch.setenv("INSTYLE_CACHE", str(cache))
    monkeypatch.setattr(backends, "auto_candidates", lambda device: ["aot-fp32"])  # the package built here
    photo, model = tmp_path / "photo.png", tmp_path / "model.safetensors"
    shutil.copyfile(aot.model, model)
    Image.fromarray((sample_image((70, 93))[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(photo)
    assert main(["stylize", str(photo), "-m", str(model), "-o", str(tmp_path / "torch.png")]) == 0
    (record,) = (cache / "compiled" / "faststart").glob("*.json")
    reference = (tmp_path / "torch.png").read_bytes()

    # threads as where the record was written: the same bytes
    env = {"INSTYLE_CACHE": str(cache), "INSTYLE_AOT": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    assert fresh_stylize(env, str(photo), "-m", str(model), "-o", str(tmp_path / "fast.png")) == (0, False)
    assert (tmp_path / "fast.png").read_bytes() == reference  # byte for byte the torch path's file

    # any flag: the normal path
    assert fresh_stylize(env, str(photo), "-m", str(model), "-o", str(tmp_path / "f.png"), "--backend", "eager")[1]
    assert faststart._load_record(model) is not None
    library = Path(json.loads(record.read_text())["library"])
    intact = library.read_bytes()
    library.write_bytes(intact + b"x")  # a damaged library is never loaded
    assert faststart._load_record(model) is None
    library.write_bytes(intact)
    _perturbed_copy(aot.model, model)  # the model file changed under its record
    assert faststart._load_record(model) is None
    shutil.copyfile(aot.model, model)
    assert faststart._load_record(model) is not None
    body = json.loads(record.read_text())
    record.write_text(json.dumps({**body, "multiple": 8}))  # an edited record fails its checksum
    assert faststart._load_record(model) is None

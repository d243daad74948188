"""Stylizing a whole dataset: a plan, per-image style rules, a manifest, and resume that checks.

A dataset job is planned once on the driver (which images, which style and strength each gets,
where each output goes), then its items are run by an engine: ``run_local`` here (one process,
a progress bar) or ``instyle.inference.ray_engine`` (Ray Data actors). Both run the same
``process_items`` on each batch, so they write the same files.

Nothing is trusted because it merely exists: a re-run skips an output only when the manifest
recorded it as complete for the same source (size and mtime unchanged), style, strength, seed
and model, *and* the file on disk still hashes to the recorded sha256. Every finished image is
appended to a per-process journal (one JSON line, fsynced) before the engine moves on, and the
manifest itself is only ever replaced atomically after merging the journals; a killed worker or
driver loses at most the images in flight, and the next run picks up the rest.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import random
import socket
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from tqdm import tqdm

from instyle.core.errors import InstyleError
from instyle.core.files import atomic_path, atomic_write_text, sha256_file
from instyle.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    SAVE_FORMATS,
    list_images,
    load_image,
    pil_to_tensor,
    save_image,
    tensor_to_pil,
)
from instyle.inference.controls import check_scale, check_strength
from instyle.inference.stylizer import Stylizer
from instyle.models.modelfile import read_card
from instyle.zoo import ZOO_DIR, resolve_model

ASSIGN_MODES = ("all", "random")
MANIFEST_FORMATS = ("csv", "parquet", "both")
STATE_DIR = ".instyle-dataset"  # hidden: list_images never mistakes it for photos
MANIFEST_STEM = "manifest"

# The manifest's columns and their types, in file order. ``output`` is relative to the output
# folder (the manifest travels with it); ``size`` is the output's size in bytes.
FIELDS: dict[str, type] = {
    "source": str, "output": str, "style": str, "strength": float, "seed": int, "status": str, "error": str,
    "output_sha256": str, "size": int, "width": int, "height": int, "scale": float, "preserve_color": int,
    "source_size": int, "source_mtime_ns": int, "source_sha256": str, "model_sha256": str, "backend": str,
    "worker": str, "seconds": float, "finished": float,
}
# What must be equal between a recorded output and today's plan for the output to be reused.
PLAN_KEYS = ("source", "style", "strength", "seed", "scale", "preserve_color", "source_size", "source_mtime_ns",
             "model_sha256")


# ----------------------------------------------------------------------------- style rules


def parse_strength(text: str | None) -> float | tuple[float, float] | None:
    """``None`` (the style's own), ``0.8``, or a range ``0.5:1.0`` drawn per image."""
    if text is None:
        return None
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise InstyleError(f"--strength: expected a number or LOW:HIGH, got {text!r}") from None
    if len(parts) not in (1, 2):
        raise InstyleError(f"--strength: expected a number or LOW:HIGH, got {text!r}")
    for p in parts:
        try:
            check_strength(p)
        except ValueError as exc:
            raise InstyleError(f"--{exc}") from None
    if len(parts) == 2:
        if parts[0] > parts[1]:
            raise InstyleError(f"--strength: the range {text!r} is empty (LOW must not exceed HIGH)")
        return parts[0], parts[1]
    return parts[0]


def image_seed(job_seed: int, key: str) -> int:
    """A per-image seed from the job's seed and the image's relative path: the same image gets the
    same draw whatever the listing order, the number of workers or which subset is run."""
    digest = hashlib.sha256(f"{job_seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class StyleRule:
    """Which style(s) and strength each image gets.

    ``all``: every image in every style (one style: the mirrored tree; several: ``OUT/STYLE/...``).
    ``random``: one style per image drawn from ``styles`` with the image's seed (one mirrored tree).
    ``strength``: ``None`` for each style's tuned value, a number, or a (low, high) range drawn per image.
    """

    styles: tuple[str, ...]
    assign: str = "all"
    seed: int = 0
    strength: float | tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.styles:
            raise InstyleError("give at least one --style")
        if self.assign not in ASSIGN_MODES:
            raise InstyleError(f"unknown --assign {self.assign!r}; choose one of {', '.join(ASSIGN_MODES)}")
        if len(set(self.styles)) != len(self.styles):
            raise InstyleError("the same --style is given twice")

    def choose(self, key: str) -> list[tuple[str, float | None, int]]:
        """(style, strength or None for the style's default, per-image seed) for one image."""
        seed = image_seed(self.seed, key)
        rng = random.Random(seed)
        styles = [rng.choice(self.styles)] if self.assign == "random" else list(self.styles)
        out = []
        for style in styles:
            strength = self.strength
            if isinstance(strength, tuple):
                lo, hi = strength
                strength = round(lo + (hi - lo) * rng.random(), 4)
            out.append((style, strength, seed))
        return out

    @property
    def nests(self) -> bool:
        """Whether outputs go into one sub-folder per style."""
        return self.assign == "all" and len(self.styles) > 1


@dataclass(frozen=True)
class StyleInfo:
    """A resolved style: where its model is, what it hashes to, and its card's tuned controls."""

    name: str
    path: str
    sha256: str
    strength: float
    scale: float

    @property
    def folder(self) -> str:
        """Sub-folder name for ``--assign all`` with several styles."""
        return self.name if (ZOO_DIR / f"{self.name}.safetensors").is_file() else Path(self.path).stem


def resolve_style(name: str) -> StyleInfo:
    path = resolve_model(name)
    defaults = read_card(path).defaults
    return StyleInfo(name, str(path), sha256_file(path), defaults.strength, defaults.scale)


# ----------------------------------------------------------------------------- inputs


def is_uri(path: str) -> bool:
    return "://" in str(path)


_FILESYSTEMS: dict[str, Any] = {}  # scheme://authority -> pyarrow filesystem: one S3/GCS client per process


def _filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for a URI such as ``s3://bucket/key`` or ``file:///data``."""
    try:
        from pyarrow import fs as pafs
    except ImportError:
        raise InstyleError(f"{uri}: reading from a URI needs pyarrow (pip install 'instyle[ray]')") from None
    scheme, rest = uri.split("://", 1)
    key = f"{scheme}://{rest.split('/', 1)[0]}"
    try:
        if key not in _FILESYSTEMS:
            _FILESYSTEMS[key] = pafs.FileSystem.from_uri(uri)[0]
        if scheme in ("file", "s3", "gs", "gcs"):
            return _FILESYSTEMS[key], _path_of(scheme, rest)
        return _FILESYSTEMS[key], pafs.FileSystem.from_uri(uri)[1]
    except Exception as exc:
        raise InstyleError(f"{uri}: cannot open this filesystem ({' '.join(str(exc).split())[:200]})") from None


def _path_of(scheme: str, rest: str) -> str:
    """The path pyarrow uses for ``file://`` (absolute) and object-store (bucket/key) URIs, without a new client."""
    if scheme == "file":
        return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return rest.split("?", 1)[0]


@dataclass
class Source:
    """One input image: as written by the user (path or URI), its key (relative path) and fingerprint."""

    source: str
    key: str
    size: int = -1
    mtime_ns: int = -1
    error: str = ""


def _stat_local(path: Path) -> tuple[int, int, str]:
    try:
        st = path.stat()
    except OSError as exc:
        return -1, -1, f"{path}: {exc.strerror or exc}"
    return st.st_size, st.st_mtime_ns, ""


def list_folder(root: str) -> list[Source]:
    """Every image under a local folder or a pyarrow-readable URI prefix, keyed by relative path."""
    if is_uri(root):
        from pyarrow import fs as pafs

        fs, base = _filesystem(root)
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
        prefix = root.rstrip("/")
        out = []
        for info in infos:
            rel = PurePosixPath(info.path).relative_to(PurePosixPath(base))
            if info.type != pafs.FileType.File or rel.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if any(p.startswith(".") for p in rel.parts):
                continue
            mtime = info.mtime_ns if info.mtime_ns is not None else -1
            out.append(Source(f"{prefix}/{rel.as_posix()}", rel.as_posix(), info.size, mtime))
        return sorted(out, key=lambda s: s.key)
    base = Path(root).resolve()  # absolute: Ray workers do not share the driver's working directory
    out = []
    for f in list_images([base]):
        size, mtime, err = _stat_local(f)
        out.append(Source(str(f), f.relative_to(base).as_posix(), size, mtime, err))
    return out


def _read_table(manifest: str) -> Iterator[dict[str, Any]]:
    """Rows of a CSV (stdlib, no pyarrow needed) or Parquet (pyarrow) file, local or a URI."""
    suffix = PurePosixPath(manifest.split("?")[0]).suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow.dataset as pads
        except ImportError:
            raise InstyleError(f"{manifest}: reading Parquet needs pyarrow (pip install 'instyle[ray]')") from None
        try:
            if is_uri(manifest):
                fs, path = _filesystem(manifest)
                table = pads.dataset(path, filesystem=fs, format="parquet").to_table()
            else:
                table = pads.dataset(manifest, format="parquet").to_table()
        except InstyleError:
            raise
        except Exception as exc:
            raise InstyleError(f"{manifest}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})"
                               ) from None
        yield from table.to_pylist()
        return
    if suffix != ".csv":
        raise InstyleError(f"{manifest}: a manifest must be a .csv or .parquet file")
    if is_uri(manifest):
        fs, path = _filesystem(manifest)
        with fs.open_input_stream(path) as fh:
            text = fh.read().decode("utf-8-sig")
    else:
        try:
            text = Path(manifest).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InstyleError(f"{manifest}: cannot read this CSV ({exc})") from None
    yield from csv.DictReader(io.StringIO(text))


def read_manifest_input(manifest: str, column: str = "path", root: str | None = None) -> list[Source]:
    """The images a CSV/Parquet manifest lists in ``column``; relative paths are taken from ``root``
    (default: the manifest's folder), and each image's key is its path relative to ``root``."""
    rows = list(_read_table(manifest))
    if not rows:
        raise InstyleError(f"{manifest}: the manifest lists no images")
    if column not in rows[0]:
        raise InstyleError(f"{manifest}: no column {column!r} (columns: {', '.join(map(str, rows[0]))})")
    if root is None:
        root = manifest.rsplit("/", 1)[0] if is_uri(manifest) else str(Path(manifest).resolve().parent)
    remote = is_uri(root)
    out: list[Source] = []
    for i, row in enumerate(rows, start=2 if manifest.lower().endswith(".csv") else 1):
        value = str(row.get(column) or "").strip()
        if not value:
            raise InstyleError(f"{manifest}: row {i} has an empty {column!r}")
        if is_uri(value) or remote:
            if is_uri(value):
                full = value
            elif value.startswith("/"):  # an absolute path on the root's filesystem
                scheme, rest = root.split("://", 1)
                full = f"{scheme}://{rest.split('/', 1)[0]}{value}"
            else:
                full = f"{root.rstrip('/')}/{value}"
            prefix = root.rstrip("/") + "/"
            key = full[len(prefix):] if full.startswith(prefix) else full.split("://", 1)[1].lstrip("/")
            out.append(Source(full, key))
            continue
        path = (Path(value) if Path(value).is_absolute() else Path(root) / value).resolve()
        try:
            key = path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            raise InstyleError(f"{manifest}: {value} is outside the root folder {root} (set --root)") from None
        size, mtime, err = _stat_local(path)
        out.append(Source(str(path), key, size, mtime, err))
    _stat_remote([s for s in out if is_uri(s.source)])
    return out


def _stat_remote(sources: list[Source]) -> None:
    """Size and mtime of URI sources, one batched call per filesystem."""
    by_fs: dict[str, list[Source]] = defaultdict(list)
    for s in sources:
        by_fs[s.source.split("://", 1)[0] + "://" + s.source.split("://", 1)[1].split("/", 1)[0]].append(s)
    for group in by_fs.values():
        fs, _ = _filesystem(group[0].source)
        infos = fs.get_file_info([_filesystem(s.source)[1] for s in group])
        for s, info in zip(group, infos, strict=True):
            if info.type.name != "File":
                s.error = f"{s.source}: file not found"
            else:
                s.size = info.size
                s.mtime_ns = info.mtime_ns if info.mtime_ns is not None else -1


# ----------------------------------------------------------------------------- the plan


@dataclass
class JobSpec:
    """Everything a worker needs to run items: plain data, so it pickles to Ray actors."""

    output: str
    styles: dict[str, StyleInfo]
    device: str = "auto"
    backend: str = "auto"
    tile: int | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    threads: int | None = None  # torch threads per process (Ray actors: their CPU share)


@dataclass
class Plan:
    spec: JobSpec
    items: list[dict[str, Any]]  # one dict per output: the plan's columns + ``expect_sha256``
    manifest_format: str = "csv"
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)


def _output_name(key: str, suffix: str | None) -> str:
    rel = PurePosixPath(key)
    out = rel.with_suffix(suffix) if suffix else rel
    return out.as_posix() if out.suffix.lower() in SAVE_FORMATS else out.with_suffix(".png").as_posix()


def plan_job(inputs: str, output: str, rule: StyleRule, *, manifest_column: str = "path", root: str | None = None,
             suffix: str | None = None, scale: float | None = None, preserve_color: bool = False,
             device: str = "auto", backend: str = "auto", tile: int | None = None,
             max_pixels: int | None = DEFAULT_MAX_PIXELS, manifest_format: str = "csv",
             force: bool = False) -> Plan:
    """List the images, assign styles, and mark which outputs are already complete (to be verified)."""
    if is_uri(output):
        raise InstyleError(f"{output}: the output must be a local or mounted shared folder, not a URI")
    if manifest_format not in MANIFEST_FORMATS:
        raise InstyleError(f"unknown manifest format {manifest_format!r}; choose one of {', '.join(MANIFEST_FORMATS)}")
    if scale is not None:
        try:
            check_scale(scale)
        except ValueError as exc:
            raise InstyleError(f"--{exc}") from None
    if suffix is not None:
        suffix = "." + suffix.lstrip(".").lower()
        if suffix not in SAVE_FORMATS:
            raise InstyleError(f"--format {suffix[1:]!r}: choose one of {', '.join(s[1:] for s in SAVE_FORMATS)}")
    out_root = Path(output)
    if out_root.exists() and not out_root.is_dir():
        raise InstyleError(f"{output}: the output must be a folder")
    is_folder = (is_uri(inputs) and not PurePosixPath(inputs).suffix) or Path(inputs).is_dir()
    if is_folder:
        if not is_uri(inputs):
            src_root, dst_root = Path(inputs).resolve(), out_root.resolve()
            if dst_root == src_root or src_root in dst_root.parents:
                raise InstyleError(f"{output}: the output folder must not be inside the input folder {inputs}")
        sources = list_folder(inputs)
    elif is_uri(inputs) or Path(inputs).is_file():
        sources = read_manifest_input(inputs, manifest_column, root)
    else:
        raise InstyleError(f"{inputs}: no such folder or manifest")
    if not sources:
        raise InstyleError(f"{inputs}: no images found")
    styles = {name: resolve_style(name) for name in rule.styles}
    resolved_scale = scale  # None: each style's tuned stroke size

    previous = {} if force else load_records(out_root)
    guard = _input_guard(sources)
    items: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for src in sources:
        for style_name, strength, seed in rule.choose(src.key):
            info = styles[style_name]
            rel = _output_name(src.key, suffix)
            if rule.nests:
                rel = f"{info.folder}/{rel}"
            if rel in seen:
                raise InstyleError(f"{seen[rel]} and {src.source} would both be written to {rel}; use --format "
                                   "or rename one")
            seen[rel] = src.source
            item = {
                "source": src.source, "output": rel, "style": style_name,
                "strength": info.strength if strength is None else float(strength), "seed": seed,
                "scale": info.scale if resolved_scale is None else float(resolved_scale),
                "preserve_color": int(preserve_color), "source_size": src.size, "source_mtime_ns": src.mtime_ns,
                "model_sha256": info.sha256, "error": src.error, "expect_sha256": "", "expect_size": -1,
                "source_sha256": "", "width": -1, "height": -1,
            }
            dst = out_root / rel
            if not item["error"] and _is_input(dst, guard):
                item["error"] = f"{dst}: refusing to overwrite an input image ({dst}); choose another output folder"
            prev = previous.get(rel)
            if prev and prev["status"] in ("ok", "skipped") and all(prev[k] == item[k] for k in PLAN_KEYS) \
                    and item["source_size"] >= 0:
                item["expect_sha256"], item["expect_size"] = prev["output_sha256"], prev["size"]
                item.update(source_sha256=prev["source_sha256"], width=prev["width"], height=prev["height"])
            items.append(item)
    spec = JobSpec(str(out_root.resolve()), styles, device=device, backend=backend, tile=tile, max_pixels=max_pixels)
    return Plan(spec, items, manifest_format, previous)


def _input_guard(sources: Iterable[Source]) -> tuple[set[str], set[tuple[int, int]]]:
    """Resolved paths and (device, inode) pairs of the local inputs: a set lookup per output instead of
    comparing each output with every input (a million-image job would be quadratic)."""
    paths: set[str] = set()
    inodes: set[tuple[int, int]] = set()
    for s in sources:
        if is_uri(s.source):
            continue
        p = Path(s.source)
        paths.add(str(p.resolve()))
        with contextlib.suppress(OSError):
            st = p.stat()
            inodes.add((st.st_dev, st.st_ino))
    return paths, inodes


def _is_input(dst: Path, guard: tuple[set[str], set[tuple[int, int]]]) -> bool:
    paths, inodes = guard
    if str(dst.resolve()) in paths:
        return True
    try:
        st = dst.stat()
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in inodes


# ----------------------------------------------------------------------------- journal and manifest


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    """A manifest row with every column present and of its type (CSV gives strings)."""
    out: dict[str, Any] = {}
    for name, kind in FIELDS.items():
        value = row.get(name)
        if value is None or value == "":
            out[name] = "" if kind is str else (-1 if kind is int else float("nan"))
            continue
        try:
            out[name] = _as_int(value) if kind is int else kind(value)
        except (TypeError, ValueError, OverflowError):
            out[name] = "" if kind is str else -1
    return out


def _as_int(value: Any) -> int:
    """int from an int, a float or a CSV string; exact for nanosecond mtimes (no detour through float)."""
    try:
        return int(value)
    except ValueError:
        return int(float(value))


class Journal:
    """An append-only JSON-lines file for one process: each record is fsynced before the next batch,
    and a reader drops a torn last line, so a killed process never leaves a bad record behind."""

    def __init__(self, out_root: str | Path, tag: str = "local"):
        folder = Path(out_root) / STATE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"journal-{tag}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the process's life)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            self._fh.write(json.dumps({k: r.get(k) for k in FIELDS}, allow_nan=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def _journal_records(out_root: Path) -> Iterator[dict[str, Any]]:
    for path in sorted((out_root / STATE_DIR).glob("journal-*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                yield _typed(json.loads(line))
            except (json.JSONDecodeError, AttributeError):
                continue  # the torn last line of a killed writer


def _manifest_records(out_root: Path) -> Iterator[dict[str, Any]]:
    csv_path = out_root / f"{MANIFEST_STEM}.csv"
    pq_path = out_root / f"{MANIFEST_STEM}.parquet"
    if csv_path.is_file():
        with open(csv_path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                yield _typed(row)
    elif pq_path.is_file():
        import pyarrow.parquet as pq

        for row in pq.read_table(pq_path).to_pylist():
            yield _typed(row)


def load_records(out_root: str | Path) -> dict[str, dict[str, Any]]:
    """The latest record per output from the manifest and any journals left by a killed run."""
    latest: dict[str, dict[str, Any]] = {}
    for r in [*_manifest_records(Path(out_root)), *_journal_records(Path(out_root))]:
        old = latest.get(r["output"])
        if old is None or not r["finished"] < old["finished"]:
            latest[r["output"]] = r
    return latest


def write_manifest(out_root: str | Path, rows: list[dict[str, Any]], fmt: str = "csv") -> list[Path]:
    """Replace the manifest atomically (CSV and/or Parquet), then drop the journals it now contains."""
    root = Path(out_root)
    rows = sorted((_typed(r) for r in rows), key=lambda r: r["output"])
    written = []
    if fmt in ("csv", "both"):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(FIELDS), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and v != v else v) for k, v in r.items()})
        atomic_write_text(root / f"{MANIFEST_STEM}.csv", buf.getvalue())
        written.append(root / f"{MANIFEST_STEM}.csv")
    if fmt in ("parquet", "both"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise InstyleError("a Parquet manifest needs pyarrow (pip install 'instyle[ray]')") from None
        types = {str: pa.string(), int: pa.int64(), float: pa.float64()}
        schema = pa.schema([(k, types[t]) for k, t in FIELDS.items()])
        table = pa.Table.from_pylist(rows, schema=schema)
        with atomic_path(root / f"{MANIFEST_STEM}.parquet") as tmp:
            pq.write_table(table, tmp)
        written.append(root / f"{MANIFEST_STEM}.parquet")
    for stale in {"csv", "parquet"} - {f.suffix[1:] for f in written}:  # a manifest of another format is old
        with contextlib.suppress(OSError):
            (root / f"{MANIFEST_STEM}.{stale}").unlink()
    for journal in (root / STATE_DIR).glob("journal-*.jsonl"):
        with contextlib.suppress(OSError):
            journal.unlink()
    return written


# ----------------------------------------------------------------------------- running items


class StylizerCache:
    """Each style's model loaded once per process (a Ray actor keeps it for its whole life)."""

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self._loaded: dict[str, Stylizer] = {}
        if spec.threads:
            torch.set_num_threads(spec.threads)

    def get(self, style: str) -> Stylizer:
        if style not in self._loaded:
            self._loaded[style] = Stylizer.load(self.spec.styles[style].path, device=self.spec.device,
                                                backend=self.spec.backend, tile=self.spec.tile)
        return self._loaded[style]


def _error_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return text if isinstance(exc, InstyleError) else f"{type(exc).__name__}: {text}"


def _read_source(item: dict[str, Any], max_pixels: int | None) -> tuple[Any, str]:
    """Decode one input (a local path, or a URI fetched through pyarrow into a temporary file)."""
    src = item["source"]
    if not is_uri(src):
        return load_image(src, max_pixels=max_pixels), sha256_file(src)
    fs, path = _filesystem(src)
    with tempfile.TemporaryDirectory(prefix="instyle-src-") as tmp:
        local = Path(tmp) / PurePosixPath(path).name
        with fs.open_input_stream(path) as fh:
            local.write_bytes(fh.read())
        return load_image(local, max_pixels=max_pixels), sha256_file(local)


def _complete(out_root: Path, item: dict[str, Any]) -> bool:
    """The recorded output is still on disk, byte for byte (size first, then sha256)."""
    if not item.get("expect_sha256"):
        return False
    dst = out_root / item["output"]
    try:
        if dst.stat().st_size != item["expect_size"]:
            return False
    except OSError:
        return False
    return sha256_file(dst) == item["expect_sha256"]


def process_items(items: Sequence[dict[str, Any]], cache: StylizerCache, journal: Journal | None = None,
                  worker: str = "local") -> list[dict[str, Any]]:
    """Run one batch: verify-and-skip complete outputs, stylize the rest (same-size images with the same
    style and controls in one forward pass), write each output atomically, journal every record.

    A bad image becomes a ``failed`` record with its error; it never stops the batch.
    """
    spec = cache.spec
    out_root = Path(spec.output)
    records: list[dict[str, Any]] = []
    todo: list[tuple[dict[str, Any], Any, str, float]] = []

    def record(item: dict[str, Any], status: str, error: str = "", **extra: Any) -> None:
        r = {k: item.get(k) for k in FIELDS if k in item}
        r.update(status=status, error=error, worker=worker, finished=time.time(), **extra)
        records.append(_typed(r))

    for item in items:
        t0 = time.perf_counter()
        if item.get("error"):
            record(item, "failed", item["error"])
            continue
        if _complete(out_root, item):
            record(item, "skipped", output_sha256=item["expect_sha256"], size=item["expect_size"],
                   seconds=time.perf_counter() - t0)
            continue
        try:
            loaded, src_sha = _read_source(item, spec.max_pixels)
        except Exception as exc:
            record(item, "failed", _error_text(exc), seconds=time.perf_counter() - t0)
            continue
        todo.append((item, loaded, src_sha, t0))

    groups: dict[tuple[Any, ...], list[tuple[dict[str, Any], Any, str, float]]] = defaultdict(list)
    for entry in todo:
        it, loaded = entry[0], entry[1]
        groups[(it["style"], it["strength"], it["scale"], it["preserve_color"], loaded.size)].append(entry)
    for (style, strength, scale, preserve, _), members in groups.items():
        try:
            stylizer = cache.get(style)
            x = torch.stack([pil_to_tensor(m[1].rgb) for m in members])
            y = stylizer.stylize_tensor(x, strength=strength, preserve_colors=bool(preserve), scale=scale)
            backend = stylizer.runner.backend
        except Exception as exc:
            for it, _, _, t0 in members:
                record(it, "failed", _error_text(exc), seconds=time.perf_counter() - t0)
            continue
        for (it, loaded, src_sha, t0), yi in zip(members, y, strict=True):
            dst = out_root / it["output"]
            try:
                save_image(tensor_to_pil(yi), dst, alpha=loaded.alpha)
                record(it, "ok", output_sha256=sha256_file(dst), size=dst.stat().st_size, width=loaded.size[0],
                       height=loaded.size[1], source_sha256=src_sha, backend=backend,
                       seconds=time.perf_counter() - t0)
            except Exception as exc:
                record(it, "failed", _error_text(exc), source_sha256=src_sha, seconds=time.perf_counter() - t0)
    if journal is not None:
        journal.write(records)
    return records


def batches(items: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


# ----------------------------------------------------------------------------- results


@dataclass
class JobReport:
    """What a run did, counted from the manifest it wrote."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0  # planned but not reached (an interrupted run)
    seconds: float = 0.0
    manifest: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.skipped + self.failed + self.pending


def finish(plan: Plan, seconds: float) -> JobReport:
    """Merge the journals into the manifest (atomically) and count the outcome of every planned output."""
    out_root = Path(plan.spec.output)
    latest = load_records(out_root)
    rows = []
    report = JobReport(seconds=seconds)
    for item in plan.items:
        r = latest.get(item["output"])
        if r is None or any(r[k] != item[k] for k in PLAN_KEYS):
            report.pending += 1
            continue
        rows.append(r)
        if r["status"] == "failed":
            report.failed += 1
            report.failures.append((r["source"], r["error"]))
        elif r["status"] == "skipped":
            report.skipped += 1
        else:
            report.ok += 1
    report.manifest = write_manifest(out_root, rows, plan.manifest_format)
    return report


def run_local(plan: Plan, *, batch: int = 1, progress: bool = True,
              on_batch: Callable[[list[dict[str, Any]]], None] | None = None) -> JobReport:
    """One process, the ``Stylizer`` path, a progress bar; the journal makes a killed run resumable."""
    if batch < 1:
        raise InstyleError(f"--batch must be at least 1, got {batch}")
    t0 = time.perf_counter()
    cache = StylizerCache(plan.spec)
    journal = Journal(plan.spec.output, "local")
    try:
        with tqdm(total=len(plan.items), unit="img", disable=not progress) as bar:
            for chunk in batches(plan.items, batch):
                records = process_items(chunk, cache, journal)
                bar.update(len(chunk))
                if on_batch:
                    on_batch(records)
    except KeyboardInterrupt:
        journal.close()
        finish(plan, time.perf_counter() - t0)  # Ctrl-C: the manifest shows what is done; a re-run resumes
        raise
    finally:
        journal.close()
    return finish(plan, time.perf_counter() - t0)


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_dict(d: dict[str, Any]) -> JobSpec:
    styles = {k: StyleInfo(**v) for k, v in d["styles"].items()}
    return JobSpec(**{**d, "styles": styles})

"""Files that are never half-written: atomic replacement, hashing, and the cache folder.

Atomic writes matter because a killed training run or a full disk must never leave a
half-written model, checkpoint or output image where a good one used to be.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from instyle.core.errors import InstyleError


def cache_dir() -> Path:
    """``$INSTYLE_CACHE`` or ``~/.cache/instyle``: downloaded weights and data live here, never in the repo."""
    root = os.environ.get("INSTYLE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "instyle"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The temporary file keeps the destination's suffix so libraries that pick a format from
    the file name (Pillow, safetensors, PyAV) still work.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    # mkstemp makes 0600 files; outputs should get the usual permissions (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def refuse_overwriting(outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]], *,
                       what: str = "an input", error: type[InstyleError] = InstyleError) -> None:
    """One ``error`` line if any output path is one of the inputs: results never replace originals.

    Compared by resolved path and by (device, inode), so symlinks, hard links, bind mounts and
    case-insensitive file systems are caught too; one pass over each list, so a 10 000-image folder
    is checked at once."""
    resolved: dict[str, Path] = {}
    ids: dict[tuple[int, int], Path] = {}
    for src in map(Path, inputs):
        resolved.setdefault(str(src.resolve()), src)
        fid = _file_id(src)
        if fid is not None:
            ids.setdefault(fid, src)
    for out in map(Path, outputs):
        fid = _file_id(out)
        src = resolved.get(str(out.resolve())) or (ids.get(fid) if fid is not None else None)
        if src is not None:
            raise error(f"{out}: refusing to overwrite {what} ({src}); choose another output path")


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Refuse, with one line, an output that cannot be written: an existing folder, or a folder
    where no file can be created (read-only, permission denied). Checked by creating and removing
    a temporary file, because permission bits lie (root, read-only mounts, ACLs)."""
    dest = Path(path)
    if dest.is_dir():
        raise InstyleError(f"{dest}: is a folder; give the name of the file to write")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InstyleError(f"{dest}: cannot write to {dest.parent} ({reason.lower()})") from None
    return dest


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""Which file each input image is written to, decided before any work (torch-free: the
fast start path plans its one output with the same rules as ``stylize_paths``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from instyle.core.errors import InstyleError
from instyle.data.images import IMAGE_EXTENSIONS, SAVE_FORMATS, ensure_none_is_input, list_images


def plan_outputs(inputs: Sequence[str | Path], output: str | Path, suffix: str | None = None
                 ) -> list[tuple[Path, Path]]:
    """Pair each input image with its output path, or refuse the whole plan with one line.

    One input file and an output with an image extension: that file. Otherwise ``output`` is a
    folder: files named directly keep their names, images found in a folder keep their path
    relative to it (sub-folders are mirrored), with ``suffix`` as the extension if given. Images
    already inside the output folder are not inputs (so a rerun does not stylize its own results).
    Refused before any work: two inputs that would write the same file (``d1/x.png d2/x.png``, or
    ``x.png x.jpg --format jpg``) and an output that is one of the inputs.
    """
    out = Path(output)
    single_file = len(inputs) == 1 and not Path(inputs[0]).is_dir() and out.suffix.lower() in IMAGE_EXTENSIONS
    if single_file:
        pairs = [(Path(inputs[0]), out)]
    else:
        if out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir():
            raise InstyleError(f"{out}: several inputs need an output folder, not a file name")
        if out.exists() and not out.is_dir():
            raise InstyleError(f"{out}: is a file; the output for these inputs must be a folder")
        pairs = []
        for item in inputs:
            src = Path(item)
            if src.is_dir():
                for f in list_images([src]):
                    if _strictly_inside(f, out, src):
                        continue
                    pairs.append((f, (out / f.relative_to(src)).with_suffix(suffix or f.suffix)))
            else:
                pairs.append((src, out / (src.stem + (suffix or src.suffix))))
        # inputs in formats we read but don't write (GIF, PPM…) come out as PNG
        pairs = [(s, d if d.suffix.lower() in SAVE_FORMATS else d.with_suffix(".png")) for s, d in pairs]
    pairs = _dedupe(pairs)
    if not pairs:  # exit 0 after doing nothing would read as success
        raise InstyleError(f"no images found in {', '.join(map(str, inputs))}")
    _refuse_clashes(pairs, suffix)
    ensure_none_is_input([d for _, d in pairs], [s for s, _ in pairs])
    return pairs


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def _strictly_inside(f: Path, out: Path, src: Path) -> bool:
    """``f`` lies in the output folder, and that folder is inside (not equal to) the input folder."""
    o, s, p = _key(out), _key(src), _key(f)
    return o != s and o.startswith(s + os.sep) and p.startswith(o + os.sep)


def _dedupe(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """The same file reached twice (``dir dir/x.png``, or a folder given twice) is done once."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for s, d in pairs:
        k = (os.path.realpath(s), _key(d))
        if k not in seen:
            seen.add(k)
            kept.append((s, d))
    return kept


def _refuse_clashes(pairs: list[tuple[Path, Path]], suffix: str | None) -> None:
    by_dst: dict[str, list[tuple[Path, Path]]] = {}
    for s, d in pairs:
        by_dst.setdefault(_key(d), []).append((s, d))
    clashes = [group for group in by_dst.values() if len(group) > 1]
    if not clashes:
        return
    first = clashes[0]
    names = " and ".join(str(s) for s, _ in first[:2]) + (f" (+{len(first) - 2} more)" if len(first) > 2 else "")
    more = f"; {len(clashes) - 1} more output names clash too" if len(clashes) > 1 else ""
    hint = "give them different names or separate output folders"
    if suffix or any(s.suffix.lower() != d.suffix.lower() for s, d in first):
        hint = "they differ only in extension: drop --format, rename one, or use separate output folders"
    raise InstyleError(f"{first[0][1]}: {names} would both be written here{more}; nothing was stylized ({hint})")

"""The hostile-input suite's shared checks: run a command, then demand one clean line and no lost file.

Every case builds its inputs at run time (tiny files, nothing committed) and asserts three things:
the exit code, a single error line without a traceback, and that no file it should not touch changed.
The CLI runs in-process (``instyle.apps.cli.main``) so the suite stays fast; an exception other than
``InstyleError`` escapes ``main`` and fails the case, which is exactly what a traceback would be.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from instyle.apps.cli import main


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip() and not ln.startswith(("note:", "warning:"))]


def snapshot(paths: Iterable[Path]) -> dict[Path, str | None]:
    """sha256 of every file under ``paths`` (None for a path that does not exist)."""
    state: dict[Path, str | None] = {}
    for p in map(Path, paths):
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            state[f] = hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else None
    return state


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``cli(*argv)`` -> Outcome; the cache points into the test's folder, sharing only the VGG16
    weights that ``make test`` prepared (tests never download them)."""
    from instyle.core.files import cache_dir

    weights = cache_dir() / "weights"
    cache = tmp_path / "cache"
    cache.mkdir()
    if weights.is_dir():
        (cache / "weights").symlink_to(weights, target_is_directory=True)
    monkeypatch.setenv("INSTYLE_CACHE", str(cache))

    def run(*argv: str | Path) -> Outcome:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def assert_refused(outcome: Outcome, *, says: str | None = None, unchanged: dict[Path, str | None] | None = None,
                   code: int | None = None) -> None:
    """Non-zero exit, exactly one error line (containing ``says``), no traceback, files as they were."""
    assert outcome.code != 0 if code is None else outcome.code == code, outcome
    assert "Traceback" not in outcome.err + outcome.out, outcome.err
    lines = outcome.error_lines()
    assert len(lines) == 1, f"expected one error line, got {lines!r}"
    if says is not None:
        assert says.lower() in lines[0].lower(), lines[0]
    if unchanged is not None:
        assert snapshot(unchanged) == unchanged, "a file that should not change was changed or removed"

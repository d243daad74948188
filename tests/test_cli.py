"""CLI errors: one line, no traceback, a non-zero exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from instyle.apps.cli import main


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["stylize", "nope.jpg", "-m", "x.safetensors", "-o", "out"], "no such file"),
        (["stylize", "{photo}", "-s", "no-such-style", "-o", "{tmp}/o.jpg"], "unknown style"),
        (["stylize", "{photo}", "-m", "{photo}", "-o", "{tmp}/o.jpg"], "not a safetensors"),
        (["train", "--style", "{tmp}/missing.png", "--content", "{tmp}", "-o", "{tmp}/m.safetensors"],
         "not found"),
    ],
)
def test_cli_errors_are_one_line(argv, needle, tmp_path: Path, capsys, style_image) -> None:
    args = [a.format(photo=style_image, tmp=tmp_path) for a in argv]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_arguments_exit_with_usage(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--style", "x", "-o", "m.safetensors", "--norm", "group"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_styles_lists_without_error(capsys) -> None:
    assert main(["styles"]) == 0
    assert capsys.readouterr().out.strip()

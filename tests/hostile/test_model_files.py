"""Hostile model files: garbage, truncation, pickles, forged cards and broken weights.

Each file is built here, at run time. Every command that loads a model (``stylize -m``, ``export``,
``evaluate``, ``train --init``) must refuse it in one line before allocating what the file asks for,
never execute anything, and leave the model file and the would-be output alone.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from instyle.core.errors import InstyleError
from instyle.models import create_model
from instyle.models.modelfile import load_model, read_card

from .conftest import assert_refused, snapshot

CARD = {"format": "instyle-model/1", "arch": "johnson-half", "norm": "instance", "arch_kwargs": {},
        "style": {"title": "test"}}


def _state(arch: str = "johnson-half") -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in create_model(arch).state_dict().items()}


def _with_card(path: Path, card: Any, state: dict[str, torch.Tensor] | None = None) -> Path:
    text = card if isinstance(card, str) else json.dumps(card)
    save_file(state if state is not None else _state(), str(path), metadata={"instyle_card": text})
    return path


class _Marker:
    """Unpickling this writes a file: proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "pwned"))


def _build(kind: str, d: Path) -> Path:
    good = d / "good.safetensors"
    _with_card(good, CARD)
    path = d / "bad.safetensors"
    if kind == "random-bytes":
        path.write_bytes(bytes(range(256)) * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "huge-header":
        path.write_bytes(struct.pack("<Q", 1 << 40) + b"{" + b" " * 64)
    elif kind == "header-not-json":
        body = b"this is not json at all!"
        path.write_bytes(struct.pack("<Q", len(body)) + body)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": _Marker(d / "marker.txt")}))
    elif kind == "torch-save":
        torch.save({"x": _Marker(d / "marker.txt")}, path)
    elif kind == "no-card":
        save_file(_state(), str(path))
    elif kind == "card-bad-json":
        _with_card(path, '{"arch": "johnson-half", ')
    elif kind == "card-list":
        _with_card(path, [1, 2, 3])
    elif kind == "card-no-arch":
        _with_card(path, {k: v for k, v in CARD.items() if k != "arch"})
    elif kind == "card-unknown-arch":
        _with_card(path, {**CARD, "arch": "resnet9000"})
    elif kind == "card-unknown-norm":
        _with_card(path, {**CARD, "norm": "layer"})
    elif kind == "card-wrong-format":
        _with_card(path, {**CARD, "format": "someone-else/9"})
    elif kind.startswith("card-arch-kwargs-"):
        kwargs = {"n-res-1000": {"n_res": 1000}, "n-res-100000": {"n_res": 100000}, "n-res-negative": {"n_res": -1},
                  "n-res-string": {"n_res": "5"}, "unknown-key": {"width": 64}, "styles-huge": {"styles": 10**9},
                  "list": [1]}[kind.removeprefix("card-arch-kwargs-")]
        _with_card(path, {**CARD, "arch_kwargs": kwargs})
    elif kind.startswith("card-defaults-"):
        defaults = {"strength-5": {"strength": 5}, "scale-string": {"scale": "big"},
                    "scale-nan": {"scale": float("nan")}, "list": [1.0]}[kind.removeprefix("card-defaults-")]
        _with_card(path, json.dumps({**CARD, "defaults": defaults}))
    elif kind == "card-styles-not-a-list":
        _with_card(path, {**CARD, "styles": "all of them"})
    elif kind == "nan-weights":
        state = _state()
        next(v for k, v in state.items() if v.is_floating_point()).view(-1)[3] = float("nan")
        _with_card(path, CARD, state)
    elif kind == "inf-weights":
        state = _state()
        state[sorted(k for k in state if k.endswith("weight"))[-1]].view(-1)[0] = float("inf")
        _with_card(path, CARD, state)
    elif kind == "shape-mismatch":
        _with_card(path, {**CARD, "arch": "johnson"}, _state("johnson-half"))
    elif kind == "missing-tensor":
        state = _state()
        state.pop(sorted(state)[0])
        _with_card(path, CARD, state)
    elif kind == "extra-tensor":
        _with_card(path, CARD, {**_state(), "evil.extra": torch.zeros(3)})
    else:
        raise AssertionError(kind)
    good.unlink()
    return path


KINDS = {  # kind -> a word the one-line error must contain
    "random-bytes": "not a safetensors", "empty": "not a safetensors", "truncated": "not a safetensors",
    "huge-header": "not a safetensors", "header-not-json": "not a safetensors", "pickle": "not a safetensors",
    "torch-save": "not a safetensors", "no-card": "without an instyle model card", "card-bad-json": "not JSON",
    "card-list": "expected a JSON object", "card-no-arch": "no architecture",
    "card-unknown-arch": "unknown architecture",
    "card-unknown-norm": "unknown norm", "card-wrong-format": "unsupported model format",
    "card-arch-kwargs-n-res-1000": "n_res must be an integer in [1, 16]",
    "card-arch-kwargs-n-res-100000": "n_res must be an integer in [1, 16]",
    "card-arch-kwargs-n-res-negative": "n_res", "card-arch-kwargs-n-res-string": "n_res",
    "card-arch-kwargs-unknown-key": "takes no hyper-parameter 'width'", "card-arch-kwargs-styles-huge": "styles",
    "card-arch-kwargs-list": "arch_kwargs must be an object", "card-defaults-strength-5": "defaults.strength",
    "card-defaults-scale-string": "defaults.scale", "card-defaults-scale-nan": "defaults.scale",
    "card-defaults-list": "defaults must be an object", "card-styles-not-a-list": "style(s)",
    "nan-weights": "not finite", "inf-weights": "not finite", "shape-mismatch": "has shape",
    "missing-tensor": "missing", "extra-tensor": "unexpected evil.extra",
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_stylize_refuses_a_hostile_model_file(cli, tmp_path, kind):
    model = _build(kind, tmp_path)
    Image.new("RGB", (40, 32), "orange").save(tmp_path / "photo.png")
    before = snapshot([tmp_path])
    outcome = cli("stylize", tmp_path / "photo.png", "-m", model, "-o", tmp_path / "out.png", "--backend", "eager")
    assert_refused(outcome, says=KINDS[kind], unchanged=before)
    assert not (tmp_path / "marker.txt").exists(), "a pickle was executed"


@pytest.mark.parametrize("kind", ["pickle", "card-arch-kwargs-n-res-100000", "nan-weights", "shape-mismatch"])
def test_export_and_evaluate_refuse_it_too(cli, tmp_path, kind):
    model = _build(kind, tmp_path)
    before = snapshot([tmp_path])
    assert_refused(cli("export", "-m", model, "-o", tmp_path / "m.onnx"), says=KINDS[kind], unchanged=before)
    assert_refused(cli("evaluate", model, "--photos", tmp_path), unchanged=before)
    assert not (tmp_path / "marker.txt").exists()


def test_a_forged_card_is_refused_before_the_network_is_built(tmp_path, monkeypatch):
    """Item 8 of #16: 100 000 residual blocks were allocated (5.6 GB) before the load failed."""
    model = _build("card-arch-kwargs-n-res-100000", tmp_path)
    built = []
    monkeypatch.setattr("instyle.models.modelfile.create_model", lambda *a, **kw: built.append(kw))
    with pytest.raises(InstyleError, match=r"n_res must be an integer in \[1, 16\], got 100000"):
        load_model(model)
    assert built == []


def test_every_shipped_card_passes_the_same_checks():
    from instyle.zoo import ZOO_DIR, list_styles

    assert len(list_styles()) >= 11
    for path in sorted(ZOO_DIR.glob("*.safetensors")):
        assert read_card(path).title

"""Every module of gemvec sits in a layer of the import-linter contract, so none escapes its check."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import pytest

import gemvec

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_every_top_level_module_is_in_a_layer() -> None:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    placed = {name.strip() for layer in layers for name in re.split(r"[|:]", layer)}
    modules = {f"gemvec.{m.name}" for m in pkgutil.iter_modules(gemvec.__path__)}
    assert modules - placed == set(), "add these to [tool.importlinter]'s layers in pyproject.toml"

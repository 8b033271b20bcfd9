"""``gemvec collections`` and ``index`` as a user meets them after faults (#21: items 3, 9 and 14)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_store import write_docs
from typer.testing import CliRunner

from gemvec.cli.app import app
from gemvec.cli.options import strict_json


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GEMVEC_HOME", str(tmp_path / "home"))
    write_docs(tmp_path / "docs", 5)
    return tmp_path


def gemvec(*args: str):
    return CliRunner().invoke(app, list(args))


def test_list_shows_every_collection_even_past_a_damaged_one(home: Path, tiny_model_dir: Path) -> None:
    for name in ("a", "b", "c"):
        assert gemvec("index", str(home / "docs"), "-c", name, "-m", str(tiny_model_dir)).exit_code == 0
    (home / "home" / "collections" / "b" / "gemvec.sqlite").write_bytes(b"not a database at all" * 200)
    result = gemvec("collections", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert "error" in rows[1] and "repair" in rows[1]["error"] and rows[2]["documents"] == 5


def test_a_failed_first_index_leaves_no_empty_collection(home: Path, tiny_model_dir: Path) -> None:
    result = gemvec("index", str(home / "missing"), "-c", "new", "-m", str(tiny_model_dir))
    assert result.exit_code == 2 and "does not exist" in result.output
    assert gemvec("collections", "list").stdout.strip() == ""


def test_check_and_repair_commands(home: Path, tiny_model_dir: Path) -> None:
    assert gemvec("index", str(home / "docs"), "-c", "notes", "-m", str(tiny_model_dir)).exit_code == 0
    result = gemvec("collections", "check", "-c", "notes", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True
    with open(home / "home" / "collections" / "notes" / "gemvec.sqlite", "r+b") as f:
        f.write(b"\0" * 100)
    result = gemvec("collections", "check", "-c", "notes")
    assert result.exit_code == 1 and "problem:" in result.stdout
    result = gemvec("collections", "repair", "-c", "notes")
    assert result.exit_code == 0 and "kept 5 documents" in result.stdout, result.output
    assert gemvec("collections", "check", "-c", "notes").exit_code == 0
    hits = gemvec("search", "Document 3", "-c", "notes", "--mode", "keyword", "--json").stdout.splitlines()
    assert json.loads(hits[0])["path"].endswith("doc003.txt")


def test_binary_and_invalid_utf8_files_are_skipped_with_a_reason_and_a_nonzero_exit(
    home: Path, tiny_model_dir: Path
) -> None:
    (home / "docs" / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (home / "docs" / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    result = gemvec("index", str(home / "docs"), "-c", "mixed", "-m", str(tiny_model_dir))
    assert result.exit_code == 1
    assert "image.txt" in result.output and "binary" in result.output
    assert "latin1.txt" in result.output and "not valid UTF-8" in result.output
    assert "5 added" in result.output
    hits = gemvec("search", "Caf", "-c", "mixed", "--mode", "keyword", "--json").stdout
    assert "\ufffd" not in hits


def test_json_output_never_holds_nan() -> None:
    cleaned = strict_json({"score": math.nan, "hits": [1.0, math.inf, {"x": -math.inf}]})
    assert cleaned == {"score": None, "hits": [1.0, None, {"x": None}]}
    json.dumps(cleaned, allow_nan=False)

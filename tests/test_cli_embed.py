"""`gemvec embed` end to end, as a user runs it: a real subprocess on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gemvec import Embedder
from gemvec.cli.embed import parse_lines
from gemvec.errors import InputError


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gemvec", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.startswith("gemvec ")
    help_text = run_cli("--help").stdout
    assert "embed" in help_text
    # Rich renders the help: an extra's name in brackets must survive as text, not vanish as markup
    embed_help = subprocess.run(
        [sys.executable, "-m", "gemvec", "embed", "--help"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "300"},
    ).stdout  # fmt: skip
    assert "(gemvec[ray])" in embed_help


def test_arguments_to_json_lines(tiny_model_dir: Path, tiny_embedder: Embedder) -> None:
    result = run_cli("embed", "first text", "second text", "--model", str(tiny_model_dir), "--task", "query")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["id"] for row in rows] == [0, 1]
    expected = tiny_embedder.encode_query(["first text", "second text"])
    np.testing.assert_allclose([row["embedding"] for row in rows], expected, atol=1e-6)


def test_stdin_json_lines_with_ids_and_titles(tiny_model_dir: Path, tiny_embedder: Embedder) -> None:
    lines = [{"id": "a", "text": "Mars is red.", "title": "Planets"}, {"id": "b", "text": "Venus is hot."}]
    stdin = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    result = run_cli("embed", "-", "-m", str(tiny_model_dir), stdin=stdin)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["id"] for row in rows] == ["a", "b"]
    expected = tiny_embedder.encode_document(["Mars is red.", "Venus is hot."], titles=["Planets", None])
    np.testing.assert_allclose([row["embedding"] for row in rows], expected, atol=1e-6)


def test_file_input_to_npy_with_dim(tiny_model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "texts.txt"
    source.write_text("one\n\ntwo\nthree\n", encoding="utf-8")
    out = tmp_path / "vectors.npy"
    result = run_cli("embed", "-i", str(source), "-m", str(tiny_model_dir), "--dim", "32", "-o", str(out))
    assert result.returncode == 0, result.stderr
    vectors = np.load(out)
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    lines = tmp_path / "vectors.jsonl"
    result = run_cli("embed", "-i", str(source), "-m", str(tiny_model_dir), "--dim", "32", "-o", str(lines))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in lines.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == [0, 1, 2]
    np.testing.assert_allclose([row["embedding"] for row in rows], vectors, atol=1e-6)


def test_parse_lines_sniffs_the_format_and_numbers_the_texts() -> None:
    items = parse_lines("one\r\n\r\ntwo\rthree\n", "t.txt", start_id=5)
    assert [(item.id, item.text) for item in items] == [(5, "one"), (6, "two"), (7, "three")]
    items = parse_lines('\n{"text": "a", "title": "T"}\n{"id": "x", "text": "b"}\n', "t.jsonl")
    assert [(item.id, item.text, item.title) for item in items] == [(0, "a", "T"), ("x", "b", None)]
    with pytest.raises(InputError, match='t.jsonl:2: each JSON line needs a string "text"'):
        parse_lines('{"text": "a"}\n{"text": 3}\n', "t.jsonl")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("embed",), None, "No texts given"),
        (("embed", "x", "--precision", "float16"), None, "float16 is not supported"),
        (("embed", "x", "--task", "poetry"), None, "Unknown task"),
        (("embed", "x", "--dim", "9999"), None, "dim must be"),
        (("embed", "-i", "missing.txt"), None, "does not exist"),
        (("embed", "-"), '{"text": "ok"}\n{"txt": "bad"}\n', "<stdin>:2"),
        (("embed", "x", "-o", "out.csv"), None, "must end in .npy or .jsonl"),
    ],
)
def test_errors_are_one_clear_line(tiny_model_dir: Path, args, stdin, message: str) -> None:
    result = run_cli(*args, "-m", str(tiny_model_dir), stdin=stdin)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_model_folder(tmp_path: Path) -> None:
    result = run_cli("embed", "x", "-m", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "does not exist" in result.stderr

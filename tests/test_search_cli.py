"""The collection CLI end to end: index, search --json, sync, collections list/info/delete, ask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gemvec.cli.app import app
from gemvec.cli.collection_cmds import parse_filters
from gemvec.errors import InputError


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GEMVEC_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # collections given as relative paths ("./local") land here
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fleming.md").write_text("# Penicillin\n\nAlexander Fleming discovered penicillin in 1928.")
    (docs / "eiffel.txt").write_text("The Eiffel Tower in Paris was completed in 1889.")
    (docs / "rows.csv").write_text("id,body,lang\nr1,Marie Curie won two Nobel prizes.,en\n")
    return tmp_path


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_index_search_info_delete(home: Path, tiny_model_dir: Path) -> None:
    model = str(tiny_model_dir)
    CliRunner().invoke(app, ["index", str(home / "docs"), "-c", "demo", "-m", model, "--text-field", "body"])
    lines = run(
        "search", "penicillin Fleming", "-c", "demo", "-m", model, "--mode", "keyword", "--json"
    ).splitlines()
    hit = json.loads(lines[0])
    assert {"score", "text", "path", "title", "chunk"} <= set(hit)
    assert hit["path"].endswith("fleming.md") and hit["title"] == "Penicillin" and hit["chunk"] == 0
    filtered = run("search", "Nobel", "-c", "demo", "-m", model, "-f", "lang=en", "--json", "-k", "3")
    assert [json.loads(x)["metadata"]["id"] for x in filtered.splitlines()] == ["r1"]
    assert "Fleming" in run("search", "Fleming", "-c", "demo", "-m", model, "-k", "1")
    info = json.loads(run("collections", "info", "-c", "demo", "--json"))
    assert (info["documents"], info["chunks"], info["dim"], info["precision"], info["index"]) == (
        3,
        3,
        64,
        "float32",
        "exact-float32",
    )
    assert info["model"] == model
    (home / "docs" / "eiffel.txt").unlink()
    result = CliRunner().invoke(app, ["sync", "-c", "demo", "-m", model])
    assert result.exit_code == 0 and "1 removed" in result.output
    assert "demo" in run("collections", "list")
    run("collections", "delete", "-c", "demo", "--yes")
    result = CliRunner().invoke(app, ["collections", "info", "-c", "demo"])
    assert result.exit_code == 2 and "No collection" in result.output


def test_errors_are_one_clear_line(home: Path, tiny_model_dir: Path) -> None:
    result = CliRunner().invoke(app, ["search", "x", "-c", "nope"])
    assert result.exit_code == 2 and "No collection" in result.output
    run(
        "index",
        str(home / "docs" / "fleming.md"),
        "-c",
        "./local",
        "-m",
        str(tiny_model_dir),
        "--vectors",
        "int8",
    )
    result = CliRunner().invoke(app, ["index", str(home / "docs"), "-c", "./local", "--vectors", "binary"])
    assert result.exit_code == 2 and "vector precision int8, not binary" in result.output
    with pytest.raises(InputError):
        parse_filters(["novalue"])
    assert parse_filters(["a=1", "a=2", "b=x"]) == {"a": ["1", "2"], "b": "x"}


@pytest.mark.slow
def test_ask_json_with_the_local_llm(home: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (the llm extra) is not installed")
    model = str(tiny_model_dir)
    run("index", str(home / "docs"), "-c", "demo", "-m", model, "--text-field", "body")
    out = run(
        "ask",
        "Who discovered penicillin?",
        "-c",
        "demo",
        "-m",
        model,
        "--llm",
        "smollm2",
        "-k",
        "2",
        "--max-tokens",
        "24",
        "--json",
    )
    answer = json.loads(out)
    assert answer["answer"] and [s["number"] for s in answer["sources"]] == [1, 2]


def test_ask_extractive_needs_no_llm_and_cites_its_source(home: Path, tiny_model_dir: Path) -> None:
    model = str(tiny_model_dir)
    run("index", str(home / "docs"), "-c", "demo", "-m", model, "--text-field", "body")
    out = run(
        "ask", "penicillin Fleming", "-c", "demo", "-m", model, "--answer", "extractive", "-k", "2", "--json"
    )
    answer = json.loads(out)
    assert answer["mode"] == "extractive" and answer["citations"] and answer["invalid_citations"] == []
    cited = [s for s in answer["sources"] if s["cited"]]
    assert cited and all(s["text"] for s in cited)
    text = run("ask", "penicillin Fleming", "-c", "demo", "-m", model, "--answer", "extractive", "-k", "2")
    assert "[1]" in text or "[2]" in text

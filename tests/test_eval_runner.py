"""The embedding cache, the evaluator and `gemvec eval` end to end on the tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_eval_datasets import make_beir, make_classification, make_xquad, write_tsv
from typer.testing import CliRunner

from gemvec import Embedder
from gemvec.cli import app
from gemvec.eval import EmbeddingCache, EvalOptions, Evaluator, discover
from gemvec.eval.prompts import EvalPrompts
from gemvec.model.fingerprint import legacy_eval_fingerprint, model_fingerprint
from gemvec.testing import make_tiny_checkpoint


def counting_encoder(calls: list[list[str]]):
    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    return encode


def test_cache_encodes_each_text_once_and_persists(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    first = cache.embed(["aa", "b", "aa", "ccc"], counting_encoder(calls), chunk_size=2)
    assert first[:, 0].tolist() == [2, 1, 2, 3]
    assert sorted(t for call in calls for t in call) == ["aa", "b", "ccc"]  # the duplicate once
    assert calls[0] == ["ccc", "aa"]  # longest first, in chunks of 2
    cache.close()
    calls.clear()
    reopened = EmbeddingCache(tmp_path / "c.sqlite")
    again = reopened.embed(["ccc", "b", "new"], counting_encoder(calls))
    assert calls == [["new"]] and again[:, 0].tolist() == [3, 1, 3]
    assert (reopened.hits, reopened.misses) == (2, 1)


def test_cache_file_follows_the_weights_and_keeps_files_named_the_old_way(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMVEC_CACHE_DIR", str(tmp_path / "home"))
    other = make_tiny_checkpoint(tmp_path / "other", seed=1)
    old = EmbeddingCache(tmp_path / "eval" / f"{legacy_eval_fingerprint(tiny_model_dir)}-float32.sqlite")
    old.embed(["kept"], counting_encoder([]))
    old.close()
    cache = EmbeddingCache.for_model(tmp_path / "eval", tiny_model_dir, "float32")
    assert cache.path == tmp_path / "eval" / f"{model_fingerprint(tiny_model_dir, 'tiny')}-float32.sqlite"
    assert sorted(p.name for p in (tmp_path / "eval").glob("*.sqlite")) == [cache.path.name]  # renamed
    calls: list[list[str]] = []
    cache.embed(["kept"], counting_encoder(calls))
    assert calls == [] and cache.hits == 1
    cache.close()
    assert EmbeddingCache.for_model(tmp_path / "eval", other, "float32").path != cache.path


@pytest.mark.filterwarnings("ignore:dim=32")
def test_other_dim_reuses_cached_vectors(tmp_path: Path, tiny_embedder: Embedder) -> None:
    path = write_tsv(
        tmp_path / "sts.tsv",
        ["sentence1", "sentence2", "score"],
        [
            ["The fox jumps.", "A fox leaps.", "4"],
            ["Mars is red.", "Le chien dort.", "0.5"],
            ["Hund", "dog", "3"],
        ],
    )
    source = discover(path)[0]
    full = Evaluator(tiny_embedder, cache_dir=tmp_path / "cache", show_progress=False)
    full_result = full.run(source)
    assert full.cache.misses == 6 and full_result.dim == tiny_embedder.dim
    full.close()
    half = Evaluator(tiny_embedder, EvalOptions(dim=32), cache_dir=tmp_path / "cache", show_progress=False)
    result = half.run(source)
    assert half.cache.misses == 0 and half.cache.hits == 6 and result.dim == 32
    # the cached, truncated, re-normalised vectors are the ones the engine gives for dim=32
    prompt = EvalPrompts.for_model(tiny_embedder.folder).sts
    direct = tiny_embedder.encode(["The fox jumps.", "A fox leaps."], prompt=prompt, dim=32)
    sims = float(direct[0] @ direct[1])
    vectors = half._embed([prompt + "The fox jumps.", prompt + "A fox leaps."], None)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(sims, abs=1e-5)


def make_suite(root: Path) -> list[Path]:
    make_beir(root / "beir")
    make_xquad(root / "xquad" / "en")
    make_classification(root / "cls")
    write_tsv(
        root / "stsb" / "en.test.tsv",
        ["sentence1", "sentence2", "score"],
        [["a b", "a c", "3"], ["x", "y z", "1"], ["q", "r", "2"]],
    )
    write_tsv(root / "bitext" / "pairs.tsv", ["sentence1", "sentence2"], [["Hund", "dog"], ["Katze", "cat"]])
    return [root / name for name in ("beir", "xquad", "cls", "stsb", "bitext")]


@pytest.mark.filterwarnings("ignore:dim=32")
def test_cli_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    paths = make_suite(tmp_path / "data")
    out = tmp_path / "results.json"
    args = ["eval", *map(str, paths), "--model", str(tiny_model_dir), "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(
        app, [*args, "-o", str(out), "--experiments", "2", "--samples-per-label", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "gemvec eval" in result.output and "cosine_spearman" not in result.output.split("gemvec eval")[0]
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [(Path(r["dataset"]).name, r["type"]) for r in rows] == [
        ("beir", "retrieval"),
        ("en", "retrieval"),
        ("cls", "classification"),
        ("en.test", "sts"),
        ("bitext", "bitext"),
    ]
    for row in rows:
        assert set(row) == {
            "dataset",
            "type",
            "main_score",
            "metrics",
            "model",
            "dim",
            "precision",
            "seconds",
        }
        assert -1.0 <= row["main_score"] <= 1.0 and row["dim"] == 64 and row["precision"] == "float32"
    assert len(rows[2]["metrics"]["accuracy_per_experiment"]) == 2

    clustering = CliRunner().invoke(
        app,
        [
            "eval",
            str(paths[2]),
            "--type",
            "clustering",
            "--model",
            str(tiny_model_dir),
            "--no-cache",
            "--dim",
            "32",
            "--json",
        ],
    )
    assert clustering.exit_code == 0, clustering.output
    row = json.loads(clustering.stdout)[0]
    assert row["type"] == "clustering" and row["dim"] == 32 and 0.0 <= row["main_score"] <= 1.0


def test_json_is_a_flag_and_the_old_file_form_still_works(tmp_path: Path, monkeypatch) -> None:
    from gemvec.cli.eval_cmd import legacy_json

    monkeypatch.chdir(tmp_path)
    data = str(make_classification(tmp_path / "cls"))
    Path("results.json").write_text("[]")  # an old results file is still a results file
    assert legacy_json([data, "--json", "-o", "r.json"]) == [data, "--json", "-o", "r.json"]
    # `--json DATASET`: the dataset stays a path argument
    assert legacy_json(["--json", data, "-n", "2"]) == ["--json", data, "-n", "2"]
    assert legacy_json([data, "--json", "-"]) == [data, "--json"]
    assert legacy_json([data, "--json", "results.json"]) == [data, "--output", "results.json"]
    assert legacy_json(["--json=new", data]) == ["--output", "new", data]
    assert legacy_json(["--", "--json", "x"]) == ["--", "--json", "x"]


def test_deprecated_json_file_warns_and_writes_the_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "results.json"
    pairs = [["a b", "a c", "3"], ["x", "y z", "1"], ["q", "r", "2"]]
    sts = write_tsv(tmp_path / "s.tsv", ["sentence1", "sentence2", "score"], pairs)
    args = ["eval", str(sts), "--model", str(tiny_model_dir), "--no-cache", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"`--json {out}` is deprecated; use `--output {out}`" in result.stderr
    assert json.loads(out.read_text(encoding="utf-8"))[0]["type"] == "sts"
    assert "gemvec eval" in result.stdout  # the table, not JSON, on stdout


def test_cli_reports_bad_data_before_loading_the_model(tmp_path: Path) -> None:
    folder = make_classification(tmp_path / "cls")
    (folder / "test.jsonl").write_text('{"text": "x", "label": "other"}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", str(folder), "--model", str(tmp_path / "no-model")])
    assert result.exit_code == 2
    assert "error:" in result.output and "never occur in train" in result.output


def test_real_model_reproduces_sts_ordering(
    real_embedder: Embedder, shared_data: Path, tmp_path: Path
) -> None:
    """A handful of real STS-B pairs: the real model must rank them much like the annotators."""
    assert EvalPrompts.for_model(real_embedder.folder).document == "title: none | text: "
    evaluator = Evaluator(real_embedder, EvalOptions(limit=12), cache_dir=tmp_path, show_progress=False)
    result = evaluator.run(discover(shared_data / "stsb" / "en.test.tsv")[0])
    assert result.main_score > 0.7, result.metrics

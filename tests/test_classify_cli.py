"""`gemvec classify` and `gemvec cluster` end to end on the tiny model: real files in, real files out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gemvec.cli import app
from gemvec.tasks.classify import Classifier
from gemvec.testing import make_tiny_checkpoint

TEXTS = [
    ("the quick fox", "animal"),
    ("a brown fox jumps", "animal"),
    ("the lazy dog sleeps", "animal"),
    ("fox and dog", "animal"),
    ("Mars is red", "space"),
    ("Venus is a planet", "space"),
    ("the red planet Mars", "space"),
    ("Earth and Venus", "space"),
]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def labelled(tmp_path: Path) -> Path:
    path = tmp_path / "data.tsv"
    path.write_text("id\ttext\tlabel\n" + "".join(f"r{i}\t{t}\t{y}\n" for i, (t, y) in enumerate(TEXTS)))
    return path


@pytest.fixture()
def trained(tiny_model_dir: Path, labelled: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model.npz"
    code, stdout, stderr = run(
        "classify",
        "train",
        str(labelled),
        "--out",
        str(out),
        "-m",
        str(tiny_model_dir),
        "--folds",
        "2",
        "--json",
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["rows"] == 8 and summary["labels"] == 2 and summary["cross_validation"]["folds"] == 2
    assert summary["settings"]["task"] == "classification" and summary["settings"]["precision"] == "float32"
    return out


def test_predict_jsonl_and_csv(trained: Path, labelled: Path, tmp_path: Path) -> None:
    code, stdout, stderr = run("classify", "predict", str(trained), str(labelled), "--top", "1")
    assert code == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(8)]
    assert all(r["label"] in ("animal", "space") and list(r["probabilities"]) == [r["label"]] for r in rows)
    out = tmp_path / "pred.csv"
    code, _, stderr = run("classify", "predict", str(trained), str(labelled), "-o", str(out))
    assert code == 0, stderr
    with out.open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and {"id", "label", "probability", "p:animal", "p:space"} <= set(table[0])
    assert [r["label"] for r in table] == [r["label"] for r in rows]
    assert abs(float(table[0]["p:animal"]) + float(table[0]["p:space"]) - 1) < 1e-4


def test_evaluate_json_and_confusion_png(trained: Path, labelled: Path, tmp_path: Path) -> None:
    png = tmp_path / "cm.png"
    code, stdout, stderr = run("classify", "evaluate", str(trained), str(labelled), "--json",
                               "--confusion-matrix", str(png))  # fmt: skip
    assert code == 0, stderr
    report = json.loads(stdout)
    assert {"accuracy", "macro_f1", "per_class"} <= set(report) and set(report["per_class"]) == {
        "animal",
        "space",
    }
    assert sum(map(sum, report["confusion"])) == 8 and png.read_bytes().startswith(b"\x89PNG")
    code, stdout, _ = run("classify", "evaluate", str(trained), str(labelled))
    assert code == 0 and "accuracy" in stdout and "animal" in stdout


def test_predict_refuses_other_settings(trained: Path, labelled: Path, tmp_path: Path) -> None:
    other = make_tiny_checkpoint(tmp_path / "other", seed=3)
    code, _, stderr = run("classify", "predict", str(trained), str(labelled), "-m", str(other))
    assert code == 2 and "model weights differ" in stderr
    code, _, stderr = run("classify", "predict", str(trained), str(labelled), "-p", "bfloat16")
    assert code == 2 and "would mix settings" in stderr


def test_precision_aliases_match_the_classifier(tiny_model_dir: Path, labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "bf16.npz"
    code, _, stderr = run("classify", "train", str(labelled), "-o", str(out), "-m", str(tiny_model_dir),
                          "-p", "bfloat16", "--folds", "0")  # fmt: skip
    assert code == 0, stderr
    code, stdout, stderr = run("classify", "predict", str(out), str(labelled), "-p", "bf16")
    assert code == 0, stderr
    assert len(stdout.splitlines()) == 8
    code, _, stderr = run("classify", "predict", str(out), str(labelled), "-p", "float32")
    assert code == 2 and "would mix settings" in stderr


def test_zero_shot_cli(tiny_model_dir: Path, labelled: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("space\tMars is red\n")
    out = tmp_path / "zs.npz"
    code, _, stderr = run(
        "classify", "zero-shot", "--label", "animal=the quick fox", "--labels-file", str(labels),
        "--output", str(out), "-m", str(tiny_model_dir),
    )  # fmt: skip
    assert code == 0, stderr
    model = Classifier.load(out)
    assert model.kind == "zero-shot" and model.info["descriptions"] == {
        "animal": "the quick fox",
        "space": "Mars is red",
    }
    code, stdout, _ = run("classify", "predict", str(out), str(labelled))
    predictions = [json.loads(line)["label"] for line in stdout.splitlines()]
    assert (
        code == 0 and predictions[0] == "animal" and predictions[4] == "space"
    )  # the descriptions themselves
    code, _, stderr = run(
        "classify", "zero-shot", "--label", "x", "--out", str(out), "-m", str(tiny_model_dir)
    )
    assert code == 2 and "at least two labels" in stderr


def test_train_errors_are_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    unlabelled = tmp_path / "u.csv"
    unlabelled.write_text("text\nhello\n")
    code, _, stderr = run(
        "classify", "train", str(unlabelled), "--out", str(tmp_path / "m"), "-m", str(tiny_model_dir)
    )
    assert code == 2 and "no label column 'label'" in stderr and "--label-column" in stderr


def test_cluster_cli(tiny_model_dir: Path, labelled: Path, tmp_path: Path) -> None:
    assignments, png, page = tmp_path / "a.csv", tmp_path / "map.png", tmp_path / "map.html"
    code, stdout, stderr = run(
        "cluster", str(labelled), "-m", str(tiny_model_dir), "--k", "2", "--json",
        "--assignments", str(assignments), "--map", str(png), "--html", str(page),
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["k"] == 2 and sum(c["size"] for c in summary["clusters"]) == 8
    assert {"v_measure", "ari"} <= set(summary) and all(
        len(c["examples"]) == min(3, c["size"]) for c in summary["clusters"]
    )
    with assignments.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(8)] and {r["cluster"] for r in rows} == {
        "0",
        "1",
    }
    assert png.read_bytes().startswith(b"\x89PNG") and page.read_text().count("<circle") == 8
    code, stdout, _ = run("cluster", str(labelled), "-m", str(tiny_model_dir), "--k-max", "4")
    assert code == 0 and "chosen by silhouette from 2..4" in stdout and "V-measure" in stdout
    code, _, stderr = run(
        "cluster", str(labelled), "-m", str(tiny_model_dir), "--method", "hdbscan", "--k", "2"
    )
    assert code == 2 and "do not pass k" in stderr


def test_cluster_a_collections_documents(tiny_model_dir: Path, tmp_path: Path) -> None:
    from gemvec import Embedder
    from gemvec.store import Collection

    data = tmp_path / "docs.jsonl"
    data.write_text(
        "".join(json.dumps({"id": f"r{i}", "text": t, "label": y}) + "\n" for i, (t, y) in enumerate(TEXTS))
    )
    with Collection.create(tmp_path / "c", embedder=Embedder.load(tiny_model_dir)) as coll:
        assert coll.add([data]).added == 8
    code, stdout, stderr = run(
        "cluster", "-c", str(tmp_path / "c"), "--k", "2", "--json", "-o", str(tmp_path / "a.jsonl")
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["k"] == 2 and sum(c["size"] for c in summary["clusters"]) == 8 and "v_measure" in summary
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["id"].rsplit("#", 1)[-1] for r in rows] == [f"r{i}" for i in range(8)]
    assert [r["label"] for r in rows] == [y for _, y in TEXTS]
    code, _, stderr = run("cluster", str(data), "-c", str(tmp_path / "c"))
    assert code == 2 and "one of them" in stderr
    code, _, stderr = run("cluster", "-c", str(tmp_path / "missing"))
    assert code != 0 and "No collection" in stderr

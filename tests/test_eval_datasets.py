"""Dataset discovery and loaders: the shared layouts load, malformed files fail with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemvec.errors import DatasetError
from gemvec.eval.datasets import (
    LabelledData,
    PairData,
    RetrievalData,
    TaskType,
    discover,
    load_labelled,
    load_retrieval,
    load_sts,
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


def make_beir(folder: Path) -> Path:
    write_jsonl(
        folder / "corpus.jsonl", [{"id": "d1", "title": "T", "text": "one"}, {"id": "d2", "text": "two"}]
    )
    write_jsonl(folder / "queries.jsonl", [{"id": "q1", "text": "first"}, {"id": "q2", "text": "second"}])
    write_tsv(
        folder / "qrels.tsv",
        ["query_id", "doc_id", "score"],
        [["q1", "d1", "1"], ["q2", "d2", "1"], ["q2", "d1", "0"]],
    )
    return folder


def make_xquad(folder: Path, question_prefix: str = "") -> Path:
    write_jsonl(folder / "passages.jsonl", [{"id": "p0", "text": "zero"}, {"id": "p1", "text": "one"}])
    questions = [
        {"id": "a", "question": f"{question_prefix}what?", "passage_id": "p0"},
        {"id": "b", "question": f"{question_prefix}why?", "passage_id": "p1"},
        {"id": "c", "question": f"{question_prefix}what?", "passage_id": "p0"},  # duplicate text
    ]
    write_jsonl(folder / "questions.jsonl", questions)
    return folder


def make_classification(folder: Path, suffix: str = ".jsonl") -> Path:
    rows = [("good film", "pos"), ("bad film", "neg"), ("great", "pos"), ("awful", "neg")]
    for split in ("train", "test"):
        if suffix == ".jsonl":
            write_jsonl(
                folder / f"train{suffix}".replace("train", split), [{"text": t, "label": y} for t, y in rows]
            )
        else:
            write_tsv(
                folder / f"{split}.tsv",
                ["index_id", "category", "text"],
                [[str(i), y, t] for i, (t, y) in enumerate(rows)],
            )
    return folder


# -- loading the layouts ---------------------------------------------------------------------


def test_beir_layout(tmp_path: Path) -> None:
    data = load_retrieval(make_beir(tmp_path / "beir"))
    assert data.doc_ids == ["d1", "d2"] and data.doc_titles == ["T", ""]
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}  # zero-score judgements dropped
    assert data.query_texts == ["first", "second"]


def test_xquad_layout_collapses_duplicate_questions_like_mteb(tmp_path: Path) -> None:
    data = load_retrieval(make_xquad(tmp_path / "en"))
    assert data.query_ids == ["a", "b"] and data.qrels == {"a": {"p0": 1}, "b": {"p1": 1}}


def test_cross_lingual_queries(tmp_path: Path) -> None:
    make_xquad(tmp_path / "de")
    make_xquad(tmp_path / "en", question_prefix="EN ")
    source = discover(tmp_path / "de", queries_from=tmp_path / "en")[0]
    data = source.load()
    assert isinstance(data, RetrievalData)
    assert data.query_texts == ["EN what?", "EN why?"]
    write_jsonl(tmp_path / "fr" / "questions.jsonl", [{"id": "a", "question": "quoi?", "passage_id": "p0"}])
    with pytest.raises(DatasetError, match="no query text"):
        load_retrieval(tmp_path / "de", tmp_path / "fr")


def test_sts_and_classification_tsv(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "en.test.tsv",
        ["sentence1", "sentence2", "score"],
        [['"Quoted', "b", "2.5"], ["c", "d", "0"]],
    )
    data = load_sts(path)
    assert data.sentences1 == ['"Quoted', "c"] and data.scores.tolist() == [2.5, 0.0]
    labelled = load_labelled(make_classification(tmp_path / "sib", ".tsv"))
    assert labelled.train_labels == ["pos", "neg", "pos", "neg"]  # from the category column


def test_discovery_detects_types_and_expands_folders(tmp_path: Path) -> None:
    make_beir(tmp_path / "all" / "scifact")
    make_xquad(tmp_path / "all" / "xquad" / "en")
    make_classification(tmp_path / "all" / "banking")
    write_tsv(
        tmp_path / "all" / "stsb" / "en.test.tsv", ["sentence1", "sentence2", "score"], [["a", "b", "1"]]
    )
    write_tsv(
        tmp_path / "all" / "stsb" / "nl.test.tsv", ["sentence1", "sentence2", "score"], [["a", "b", "1"]]
    )
    write_tsv(tmp_path / "all" / "flores" / "fra" / "pairs.tsv", ["sentence1", "sentence2"], [["a", "b"]])
    found = {s.name.split("all/")[1]: s.type for s in discover(tmp_path / "all")}
    assert found == {
        "banking": TaskType.CLASSIFICATION,
        "flores/fra": TaskType.BITEXT,
        "scifact": TaskType.RETRIEVAL,
        "stsb/en.test": TaskType.STS,
        "stsb/nl.test": TaskType.STS,
        "xquad/en": TaskType.RETRIEVAL,
    }
    clustering = discover(tmp_path / "all", "clustering")
    assert [s.type for s in clustering] == [TaskType.CLUSTERING]
    assert isinstance(clustering[0].load(), LabelledData)
    assert isinstance(discover(tmp_path / "all" / "flores" / "fra")[0].load(), PairData)


def test_limit_keeps_relevant_documents(tmp_path: Path) -> None:
    data = load_retrieval(make_beir(tmp_path / "beir")).limit(1)
    assert data.query_ids == ["q1"] and "d1" in data.doc_ids


# -- malformed input -------------------------------------------------------------------------


def test_missing_path_and_unknown_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No dataset found"):
        discover(tmp_path / "empty")
    with pytest.raises(DatasetError, match="Unknown dataset type 'regression'"):
        discover(tmp_path, "regression")


def test_missing_column(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "s.tsv", ["sentence1", "sentence2", "score"], [["a", "b", "1"]])
    path.write_text("sentence1\tscore\na\t1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"s\.tsv:2: missing column 'sentence2'"):
        load_sts(path)
    folder = make_classification(tmp_path / "cls")
    write_jsonl(folder / "test.jsonl", [{"text": "x", "tag": "pos"}])
    with pytest.raises(DatasetError, match="missing column 'label or category'"):
        load_labelled(folder)


def test_empty_file(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "beir")
    (folder / "queries.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"queries\.jsonl is empty"):
        load_retrieval(folder)
    header_only = tmp_path / "h.tsv"
    header_only.write_text("sentence1\tsentence2\tscore\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="header but no rows"):
        load_sts(header_only)


def test_unknown_label_in_test(tmp_path: Path) -> None:
    folder = make_classification(tmp_path / "cls")
    write_jsonl(folder / "test.jsonl", [{"text": "meh", "label": "neutral"}, {"text": "ok", "label": "pos"}])
    with pytest.raises(DatasetError, match=r"1 label\(s\) that never occur in train \('neutral'\)"):
        load_labelled(folder)


def test_wrong_encoding(tmp_path: Path) -> None:
    folder = make_classification(tmp_path / "cls")
    (folder / "train.jsonl").write_bytes('{"text": "café", "label": "pos"}\n'.encode("latin-1"))
    with pytest.raises(DatasetError, match=r"train\.jsonl:1: byte 0xe9 is not valid UTF-8.*iconv"):
        load_labelled(folder)


def test_bad_values(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "s.tsv", ["sentence1", "sentence2", "score"], [["a", "b", "high"]])
    with pytest.raises(DatasetError, match="score 'high' is not a number"):
        load_sts(path)
    path.write_text("sentence1\tsentence2\tscore\na\tb\tc\t1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="4 fields but the header has 3"):
        load_sts(path)
    folder = make_beir(tmp_path / "beir")
    (folder / "corpus.jsonl").write_text('{"id": "d1", "text": "x"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:2: not valid JSON"):
        load_retrieval(folder)
    write_jsonl(folder / "corpus.jsonl", [{"id": "d1", "text": "x"}, {"id": "d1", "text": "y"}])
    with pytest.raises(DatasetError, match="id 'd1' occurs more than once"):
        load_retrieval(folder)
    write_jsonl(folder / "corpus.jsonl", [{"id": "d1", "text": "x"}])
    with pytest.raises(DatasetError, match="unknown document"):
        load_retrieval(folder)


def test_shared_data_layouts_are_detected(shared_data: Path) -> None:
    kinds = {}
    for source in discover(shared_data):
        kinds[source.type] = kinds.get(source.type, 0) + 1
    assert kinds == {
        TaskType.RETRIEVAL: 13,
        TaskType.STS: 11,
        TaskType.CLASSIFICATION: 25,
        TaskType.BITEXT: 10,
    }


# Every loader, each malformed file: (layout builder, file to break, a column it needs)
def _sts(folder: Path) -> Path:
    return write_tsv(folder / "x.tsv", ["sentence1", "sentence2", "score"], [["a", "b", "1"]])


def _bitext(folder: Path) -> Path:
    write_tsv(folder / "pairs.tsv", ["sentence1", "sentence2"], [["a", "b"]])
    return folder


LAYOUTS = {
    "sts": (_sts, "x.tsv", "score"),
    "bitext": (_bitext, "pairs.tsv", "sentence2"),
    "classification-jsonl": (make_classification, "train.jsonl", "text"),
    "classification-tsv": (lambda f: make_classification(f, ".tsv"), "test.tsv", "text"),
    "beir": (make_beir, "qrels.tsv", "doc_id"),
    "xquad": (make_xquad, "questions.jsonl", "passage_id"),
}


def _break(path: Path, how: str, column: str) -> None:
    if how == "empty":
        path.write_text("", encoding="utf-8")
    elif how == "encoding":
        data = path.read_bytes()
        start = data.index(b"\n") + 1
        path.write_bytes(data[:start] + "\u00e9".encode("latin-1") + data[start:])  # Latin-1, not UTF-8
    elif path.suffix == ".tsv":
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[0].split("\t")
        drop = header.index(column)
        path.write_text(
            "\n".join("\t".join(f for i, f in enumerate(line.split("\t")) if i != drop) for line in lines)
            + "\n",
            encoding="utf-8",
        )
    else:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        write_jsonl(path, [{k: v for k, v in row.items() if k != column} for row in rows])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize(
    ("how", "message"),
    [("missing", "missing column '{column}'"), ("empty", "is empty"), ("encoding", "is not valid UTF-8")],
)
def test_each_loader_rejects_malformed_files(tmp_path: Path, layout: str, how: str, message: str) -> None:
    build, name, column = LAYOUTS[layout]
    dataset = build(tmp_path / "d")
    target = dataset if dataset.is_file() else dataset / name
    source = discover(dataset)[0]  # detected while the files are still well formed
    _break(target, how, column)
    with pytest.raises(DatasetError, match=message.format(column=column)) as error:
        source.load()
    assert target.name in str(error.value)

"""Evaluation datasets: find them on disk, detect their task type, load them into memory.

Layouts (those of ``../shared/data``; see its README):

* retrieval — ``corpus.jsonl`` (id, title?, text) + ``queries.jsonl`` (id, text) + ``qrels.tsv``
  (query_id, doc_id, score), as BEIR; or XQuAD's ``passages.jsonl`` (id, text) +
  ``questions.jsonl`` (id, question, passage_id). Queries may come from another folder with the
  same ids (cross-lingual retrieval).
* sts — a ``.tsv`` with sentence1, sentence2, score.
* classification / clustering — ``train`` and ``test`` files, ``.jsonl`` (text, label) or ``.tsv``
  (text, and label or category).
* bitext — ``pairs.tsv`` with sentence1, sentence2 (row i of each side is the same sentence).

A folder holding several datasets (``stsb/``, ``sib200/``) expands into one dataset per entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np

from gemvec.errors import DatasetError
from gemvec.eval.records import Record, line_of, read_records


class TaskType(str, Enum):
    RETRIEVAL = "retrieval"
    STS = "sts"
    CLASSIFICATION = "classification"
    CLUSTERING = "clustering"
    BITEXT = "bitext"


def parse_task_type(value: TaskType | str) -> TaskType:
    if isinstance(value, TaskType):
        return value
    try:
        return TaskType(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(t.value for t in TaskType)
        raise DatasetError(f"Unknown dataset type {value!r}. Choose one of: {choices}.") from None


# -- in-memory datasets -----------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalData:
    doc_ids: list[str]
    doc_titles: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance > 0}

    def limit(self, n: int) -> RetrievalData:
        """The first n queries, against their relevant documents plus the first n others."""
        query_ids = self.query_ids[:n]
        qrels = {q: self.qrels[q] for q in query_ids}
        relevant = {d for q in query_ids for d in qrels[q]}
        keep = [i for i, d in enumerate(self.doc_ids) if d in relevant]
        keep += [i for i, d in enumerate(self.doc_ids) if d not in relevant][:n]
        keep.sort()
        return RetrievalData(
            [self.doc_ids[i] for i in keep],
            [self.doc_titles[i] for i in keep],
            [self.doc_texts[i] for i in keep],
            query_ids,
            self.query_texts[:n],
            qrels,
        )


@dataclass(frozen=True)
class PairData:
    """Aligned sentence pairs: STS (with gold scores) or bitext (scores is None)."""

    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray | None = None

    def limit(self, n: int) -> PairData:
        return PairData(
            self.sentences1[:n], self.sentences2[:n], None if self.scores is None else self.scores[:n]
        )


@dataclass(frozen=True)
class LabelledData:
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]

    def limit(self, n: int) -> LabelledData:
        """The first n test rows; the train split stays whole (only sampled rows get embedded)."""
        return replace(self, test_texts=self.test_texts[:n], test_labels=self.test_labels[:n])


EvalData = RetrievalData | PairData | LabelledData


@dataclass(frozen=True)
class DatasetSource:
    """One dataset on disk, with its detected (or requested) type."""

    path: Path
    type: TaskType
    name: str
    queries_from: Path | None = field(default=None)

    def load(self) -> EvalData:
        if self.type is TaskType.RETRIEVAL:
            return load_retrieval(self.path, self.queries_from)
        if self.type is TaskType.STS:
            return load_sts(self.path)
        if self.type is TaskType.BITEXT:
            return load_bitext(self.path)
        return load_labelled(self.path)


# -- discovery --------------------------------------------------------------------------------

_SPLIT_SUFFIXES = (".jsonl", ".tsv")


def discover(
    path: str | Path, task_type: TaskType | str | None = None, *, queries_from: str | Path | None = None
) -> list[DatasetSource]:
    """The datasets at ``path``: the dataset itself, or each dataset inside a folder of them.

    ``queries_from`` is given to the retrieval datasets found (the others ignore it).
    """
    root = Path(path)
    wanted = parse_task_type(task_type) if task_type is not None else None
    if not root.exists():
        raise DatasetError(f"Dataset path {root} does not exist.")
    sources = _discover(root, wanted, str(root).rstrip("/"), depth=0)
    if not sources:
        what = f"{wanted.value} " if wanted else ""
        raise DatasetError(
            f"No {what}dataset found at {root}. Expected corpus.jsonl + queries.jsonl + qrels.tsv, "
            "passages.jsonl + questions.jsonl, train + test files, pairs.tsv, or an STS .tsv "
            "(sentence1, sentence2, score); see `gemvec eval --help`."
        )
    if queries_from is not None:
        sources = [
            replace(s, queries_from=Path(queries_from), name=f"{s.name} (queries: {queries_from})")
            if s.type is TaskType.RETRIEVAL
            else s
            for s in sources
        ]
    return sources


def _discover(path: Path, wanted: TaskType | None, name: str, depth: int) -> list[DatasetSource]:
    if path.is_file():
        detected = _detect_file(path)
        if detected is None or not _compatible(detected, wanted):
            return []
        return [DatasetSource(path, wanted or detected, name)]
    detected = _detect_folder(path)
    if detected is not None and _compatible(detected, wanted):
        return [DatasetSource(path, wanted or detected, name)]
    if detected is not None or depth >= 2:
        return []
    found: list[DatasetSource] = []
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        child_name = f"{name}/{child.stem if child.is_file() else child.name}"
        found += _discover(child, wanted, child_name, depth + 1)
    return found


def _compatible(detected: TaskType, wanted: TaskType | None) -> bool:
    if wanted is None or wanted is detected:
        return True
    return detected is TaskType.CLASSIFICATION and wanted is TaskType.CLUSTERING


def _detect_folder(folder: Path) -> TaskType | None:
    names = {p.name for p in folder.iterdir()}
    if {"corpus.jsonl", "queries.jsonl", "qrels.tsv"} <= names or {
        "passages.jsonl",
        "questions.jsonl",
    } <= names:
        return TaskType.RETRIEVAL
    if _split_file(folder, "train", required=False) and _split_file(folder, "test", required=False):
        return TaskType.CLASSIFICATION
    if "pairs.tsv" in names:
        return TaskType.BITEXT
    return None


def _detect_file(path: Path) -> TaskType | None:
    if path.suffix != ".tsv":
        return None
    with path.open("rb") as f:
        header = f.readline().decode("utf-8", errors="replace").rstrip("\r\n").split("\t")
    if {"sentence1", "sentence2", "score"} <= set(header):
        return TaskType.STS
    if {"sentence1", "sentence2"} <= set(header):
        return TaskType.BITEXT
    return None


def _split_file(folder: Path, split: str, required: bool = True) -> Path | None:
    candidates = [
        folder / f"{split}{suffix}" for suffix in _SPLIT_SUFFIXES if (folder / f"{split}{suffix}").exists()
    ]
    if len(candidates) > 1:
        raise DatasetError(f"{folder} has both {candidates[0].name} and {candidates[1].name}; keep one.")
    if not candidates and required:
        raise DatasetError(f"{folder} has no {split}.jsonl or {split}.tsv file.")
    return candidates[0] if candidates else None


# -- loaders ----------------------------------------------------------------------------------


def load_sts(path: Path) -> PairData:
    records = read_records(path, ("sentence1", "sentence2", "score"))
    scores = np.array([_float(r, "score", path) for r in records], dtype=np.float64)
    return PairData([r["sentence1"] for r in records], [r["sentence2"] for r in records], scores)


def load_bitext(path: Path) -> PairData:
    if path.is_dir():
        path = path / "pairs.tsv"
    records = read_records(path, ("sentence1", "sentence2"))
    return PairData([r["sentence1"] for r in records], [r["sentence2"] for r in records])


def load_labelled(folder: Path) -> LabelledData:
    """Train and test texts with labels; every test label must occur in train."""
    train_texts, train_labels = _labelled_split(_split_file(folder, "train"))  # type: ignore[arg-type]
    test_texts, test_labels = _labelled_split(_split_file(folder, "test"))  # type: ignore[arg-type]
    unknown = sorted(set(test_labels) - set(train_labels))
    if unknown:
        shown = ", ".join(repr(label) for label in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise DatasetError(
            f"{folder}: the test split has {len(unknown)} label(s) that never occur in train ({shown}); "
            "a classifier cannot predict them. Fix the labels or add train examples."
        )
    return LabelledData(train_texts, train_labels, test_texts, test_labels)


def _labelled_split(path: Path) -> tuple[list[str], list[str]]:
    records = read_records(path, ("text",), any_of=("label", "category"))
    column = "label" if "label" in records[0] else "category"
    labels = []
    for record in records:
        if column not in record:
            raise DatasetError(f"{path}:{line_of(record)}: missing column {column!r}.")
        if record[column] == "":
            raise DatasetError(f"{path}:{line_of(record)}: the {column!r} value is empty.")
        labels.append(record[column])
    return [r["text"] for r in records], labels


def load_retrieval(folder: Path, queries_from: Path | None = None) -> RetrievalData:
    """BEIR or XQuAD layout; ``queries_from``: take the query texts (same ids) from another folder."""
    if (folder / "corpus.jsonl").exists():
        docs = read_records(folder / "corpus.jsonl", ("id", "text"))
        queries = read_records(folder / "queries.jsonl", ("id", "text"))
        qrels = _read_qrels(folder / "qrels.tsv")
        query_key, collapse_duplicates = "text", False
    else:
        docs = read_records(folder / "passages.jsonl", ("id", "text"))
        queries = read_records(folder / "questions.jsonl", ("id", "question", "passage_id"))
        qrels = {q["id"]: {q["passage_id"]: 1} for q in queries}
        query_key, collapse_duplicates = "question", True  # MTEB keys XQuAD queries by their text
    doc_ids = _unique_ids(docs, folder / "corpus or passages file")
    query_texts = {q["id"]: q[query_key] for q in queries}
    if queries_from is not None:
        query_texts = _foreign_queries(queries_from)
    unknown_docs = sorted({d for rels in qrels.values() for d in rels} - set(doc_ids))
    if unknown_docs:
        raise DatasetError(
            f"{folder}: relevance judgements name {len(unknown_docs)} unknown document(s), "
            f"e.g. {unknown_docs[0]!r}; every doc_id must be in the corpus."
        )
    missing = [q for q in qrels if q not in query_texts]
    if missing:
        source = queries_from or folder
        raise DatasetError(
            f"{source}: {len(missing)} judged query id(s) have no query text, e.g. {missing[0]!r}."
        )
    query_ids = list(qrels)
    if collapse_duplicates:
        seen: set[str] = set()
        query_ids = [q for q in query_ids if not (query_texts[q] in seen or seen.add(query_texts[q]))]
        qrels = {q: qrels[q] for q in query_ids}
    return RetrievalData(
        doc_ids,
        [d.get("title", "") for d in docs],
        [d["text"] for d in docs],
        query_ids,
        [query_texts[q] for q in query_ids],
        qrels,
    )


def _foreign_queries(folder: Path) -> dict[str, str]:
    if (folder / "queries.jsonl").exists():
        return {q["id"]: q["text"] for q in read_records(folder / "queries.jsonl", ("id", "text"))}
    if (folder / "questions.jsonl").exists():
        return {q["id"]: q["question"] for q in read_records(folder / "questions.jsonl", ("id", "question"))}
    raise DatasetError(f"--queries-from {folder}: no queries.jsonl or questions.jsonl there.")


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for record in read_records(path, ("query_id", "doc_id", "score")):
        score = _float(record, "score", path)
        if score > 0:  # zero-relevance judgements do not count, as in pytrec_eval
            qrels.setdefault(record["query_id"], {})[record["doc_id"]] = int(score)
    if not qrels:
        raise DatasetError(f"{path}: no judgement has a positive score, so there is nothing to retrieve.")
    return qrels


def _unique_ids(records: Sequence[Record], what: Path) -> list[str]:
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))
        raise DatasetError(f"{what}: id {duplicate!r} occurs more than once; ids must be unique.")
    return ids


def _float(record: Record, column: str, path: Path) -> float:
    try:
        value = float(record[column])
    except ValueError:
        raise DatasetError(
            f"{path}:{line_of(record)}: {column} {record[column]!r} is not a number."
        ) from None
    if not np.isfinite(value):
        raise DatasetError(f"{path}:{line_of(record)}: {column} must be finite, got {record[column]!r}.")
    return value

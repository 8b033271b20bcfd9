"""read_table: every format, configurable columns, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemvec.errors import InputError
from gemvec.tabular import TableFormat, detect_format, read_table


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_tsv_keeps_leading_quotes_verbatim(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.tsv", 'index_id\tcategory\ttext\n7\tsports\t"Quoted" start, comma\n8\ttravel\tplain\n'
    )
    table = read_table(path, label_column="category", id_column="index_id")
    assert table.texts == ['"Quoted" start, comma', "plain"]
    assert table.labels == ["sports", "travel"]
    assert table.ids == ["7", "8"]


def test_csv_uses_standard_quoting(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text,label\n"hello, world",greeting\n"line one\nline two",multi\n')
    table = read_table(path)
    assert table.texts == ["hello, world", "line one\nline two"]
    assert table.labels == ["greeting", "multi"]
    assert table.ids == ["0", "1"]


def test_jsonl_json_and_txt(tmp_path: Path) -> None:
    rows = [{"id": 5, "sentence": "a", "y": 1}, {"id": "x", "sentence": "b", "y": "two"}]
    jsonl = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    table = read_table(jsonl, text_column="sentence", label_column="y")
    assert (table.texts, table.labels, table.ids) == (["a", "b"], ["1", "two"], ["5", "x"])
    as_json = read_table(
        write(tmp_path / "d.json", json.dumps(rows)), text_column="sentence", label_column="y"
    )
    assert as_json.rows == table.rows
    txt = read_table(write(tmp_path / "d.txt", "first\n\nsecond\n"), require_labels=False)
    assert (txt.texts, txt.labels) == (["first", "second"], None)


def test_bom_is_dropped_and_labels_optional(tmp_path: Path) -> None:
    table = read_table(write(tmp_path / "d.csv", "\ufefftext,other\nhi,1\n".encode()))
    assert table.texts == ["hi"]
    assert table.labels is None and table.label_column is None


def test_shared_data_formats(shared_data: Path) -> None:
    sib = read_table(
        shared_data / "sib200" / "eng_Latn" / "test.tsv", label_column="category", id_column="index_id"
    )
    assert len(sib) == 204 and len(set(sib.labels or [])) == 7
    banking = read_table(shared_data / "banking77" / "test.jsonl", require_labels=True)
    assert len(banking) == 3080 and len(set(banking.labels or [])) == 77


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("d.csv", "", {}, "is empty"),
        ("d.csv", "text,label\n", {}, "no rows"),
        ("d.csv", "body,label\nhi,x\n", {}, "no text column 'text'"),
        ("d.csv", "text,cat\nhi,x\n", {"require_labels": True}, "no label column 'label'"),
        ("d.csv", "text,label\nhi,\n", {}, "d.csv:2: the label column"),
        ("d.tsv", "text\tlabel\nhi\tx\textra\n", {}, "d.tsv:2: 3 fields"),
        ("d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', {}, "d.jsonl:2: this row has no 'label'"),
        ("d.jsonl", '{"text": "a"}\nnot json\n', {}, "d.jsonl:2: not valid JSON"),
        ("d.jsonl", '["a"]\n', {}, "must be a JSON object"),
        ("d.csv", b"text\ncaf\xe9\n", {}, "d.csv:2: byte 0xe9 is not valid UTF-8"),
        ("d.xlsx", "x", {}, "Cannot tell the format"),
    ],
)
def test_errors_name_file_and_line(
    tmp_path: Path, name: str, content: str | bytes, kwargs: dict, message: str
) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        read_table(write(tmp_path / name, content), **kwargs)


def test_missing_file_and_explicit_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    assert detect_format(tmp_path / "data.anything", "TSV") is TableFormat.TSV
    with pytest.raises(InputError, match="Unknown data format"):
        detect_format("x.csv", "xml")

"""Read labelled (or unlabelled) texts from CSV, TSV, JSON Lines, JSON or plain-text files.

One function, :func:`read_table`, turns a file into a :class:`Table` of rows with a text,
an optional label and an id, whatever the format:

* ``.csv`` — comma-separated with a header, standard CSV quoting;
* ``.tsv`` / ``.tab`` — tab-separated with a header, fields **not quoted** (``csv.QUOTE_NONE``),
  the convention of ``../shared/data`` where some fields begin with a double quote;
* ``.jsonl`` / ``.ndjson`` — one JSON object per line; ``.json`` — a JSON array of objects;
* ``.txt`` — one text per non-blank line (no labels, no ids).

Column names are configurable. Every problem (missing file or column, empty file, bytes that
are not UTF-8, a short row, a row without a label) is an :class:`~gemvec.errors.InputError`
naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from gemvec.errors import InputError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents in one cell are fine


class TableFormat(str, Enum):
    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    JSON = "json"
    TEXT = "txt"


_SUFFIXES: dict[str, TableFormat] = {
    ".csv": TableFormat.CSV,
    ".tsv": TableFormat.TSV,
    ".tab": TableFormat.TSV,
    ".jsonl": TableFormat.JSONL,
    ".ndjson": TableFormat.JSONL,
    ".json": TableFormat.JSON,
    ".txt": TableFormat.TEXT,
}


@dataclass(frozen=True)
class Row:
    id: str
    text: str
    label: str | None = None


@dataclass(frozen=True)
class Table:
    """Rows read from one source, and the column names they came from."""

    rows: list[Row]
    source: str
    text_column: str
    label_column: str | None  # None: the source has no labels

    @property
    def texts(self) -> list[str]:
        return [row.text for row in self.rows]

    @property
    def ids(self) -> list[str]:
        return [row.id for row in self.rows]

    @property
    def labels(self) -> list[str] | None:
        """The labels, or None when the source has no label column."""
        if self.label_column is None:
            return None
        return [row.label for row in self.rows]  # type: ignore[misc]  # all set when label_column is

    def __len__(self) -> int:
        return len(self.rows)


def detect_format(path: str | Path, format: TableFormat | str | None = None) -> TableFormat:
    """The explicit ``format`` if given, else the one the file suffix names."""
    if format is not None:
        try:
            return TableFormat(str(format).lower().lstrip("."))
        except ValueError:
            choices = ", ".join(f.value for f in TableFormat)
            raise InputError(f"Unknown data format {format!r}. Choose one of: {choices}.") from None
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise InputError(
            f"Cannot tell the format of {path} from its suffix {suffix or '(none)'!r}; "
            f"use .csv, .tsv, .jsonl, .json or .txt, or pass the format explicitly."
        )
    return _SUFFIXES[suffix]


def read_table(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    id_column: str | None = "id",
    require_labels: bool = False,
    format: TableFormat | str | None = None,
) -> Table:
    """Read texts (and labels, and ids) from ``path``; ``"-"`` reads stdin (then pass ``format``).

    ``label_column``: a missing column is an error when ``require_labels`` is true, otherwise the
    table simply has no labels. ``id_column``: used when present, otherwise ids are the row
    positions ``"0"``, ``"1"``, ... Once a label column exists, every row must have a label.
    """
    fmt = detect_format(path, format)
    source = "<stdin>" if str(path) == "-" else str(path)
    content = _read_text(path, source)
    if not content.strip():
        raise InputError(f"{source} is empty: it has no rows.")
    if fmt is TableFormat.TEXT:
        text_column, label_column, id_column = "text", None, None  # plain lines: nothing to name
    records = _records(content, fmt, source)
    rows: list[Row] = []
    has_labels: bool | None = None
    columns: list[str] = []
    for line, record in records:
        if not rows:
            columns = list(record)
            if text_column not in record:
                raise InputError(_missing_column(source, "text", text_column, columns, "--text-column"))
            has_labels = label_column is not None and label_column in record
            if require_labels and not has_labels:
                raise InputError(_missing_column(source, "label", label_column, columns, "--label-column"))
        text = _field(record, text_column, source, line)
        label = _field(record, label_column, source, line) if has_labels else None  # type: ignore[arg-type]
        if has_labels and label == "":
            raise InputError(f"{source}:{line}: the label column {label_column!r} is empty in this row.")
        row_id = record.get(id_column) if id_column else None
        rows.append(Row(str(len(rows)) if row_id is None or row_id == "" else str(row_id), text, label))
    if not rows:
        raise InputError(f"{source} has a header but no rows.")
    return Table(rows, source, text_column, label_column if has_labels else None)


def read_records(path: str | Path, format: TableFormat | str | None = None) -> list[tuple[int, dict]]:
    """(line number, record) for every row of a CSV/TSV/JSON Lines/JSON file, all columns kept —
    for callers that pick their own columns (collections ingest rows as documents)."""
    source = str(path)
    return [
        (line, dict(record))
        for line, record in _records(_read_text(path, source), detect_format(path, format), source)
    ]


# -- internals ------------------------------------------------------------------------------


def _read_text(path: str | Path, source: str) -> str:
    if str(path) == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise InputError(f"Data file {source} does not exist.") from None
        except IsADirectoryError:
            raise InputError(f"{source} is a folder; pass a CSV, TSV, JSON Lines or text file.") from None
    try:
        return data.decode("utf-8-sig")  # a leading BOM (Excel's CSV export) is dropped
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{source}:{line}: byte {exc.object[exc.start]:#04x} is not UTF-8. Save the file as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 {source} > fixed{Path(source).suffix}) and retry."
        ) from None


def _records(content: str, fmt: TableFormat, source: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    """(line number, record) pairs; the header is checked here, columns by the caller."""
    if fmt is TableFormat.TEXT:
        for number, line in enumerate(content.splitlines(), 1):
            if line.strip():
                yield number, {"text": line}
    elif fmt is TableFormat.JSONL:
        yield from _jsonl_records(content, source)
    elif fmt is TableFormat.JSON:
        yield from _json_records(content, source)
    else:
        yield from _delimited_records(content, fmt, source)


def _jsonl_records(content: str, source: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    for number, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}:{number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise InputError(
                f"{source}:{number}: each line must be a JSON object, got {type(record).__name__}."
            )
        yield number, record


def _json_records(content: str, source: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg}).") from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise InputError(f"{source}: a .json data file must hold a list of objects (or use JSON Lines).")
    for index, record in enumerate(data):
        yield index + 1, record


def _delimited_records(
    content: str, fmt: TableFormat, source: str
) -> Iterator[tuple[int, Mapping[str, object]]]:
    if fmt is TableFormat.TSV:
        reader = csv.reader(io.StringIO(content, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader)
        for fields in reader:
            if not any(fields):
                continue  # blank line
            if len(fields) != len(header):
                raise InputError(
                    f"{source}:{reader.line_num}: {len(fields)} fields but the header has {len(header)}. "
                    + (
                        "TSV fields are split on every tab; a text cannot contain one."
                        if fmt is TableFormat.TSV
                        else "Quote fields that contain commas."
                    )
                )
            yield reader.line_num, dict(zip(header, fields, strict=True))
    except csv.Error as exc:
        raise InputError(f"{source}:{reader.line_num}: malformed {fmt.value.upper()} ({exc}).") from None


def _field(record: Mapping[str, object], column: str, source: str, line: int) -> str:
    value = record.get(column)
    if value is None:
        raise InputError(f"{source}:{line}: this row has no {column!r} value.")
    if isinstance(value, (dict, list)):
        raise InputError(
            f"{source}:{line}: {column!r} must be a string or number, got {type(value).__name__}."
        )
    return value if isinstance(value, str) else json.dumps(value)


def _missing_column(source: str, what: str, column: str | None, columns: list[str], option: str) -> str:
    found = ", ".join(repr(c) for c in columns) or "none"
    return f"{source} has no {what} column {column!r} (columns: {found}); name it with {option}."


def write_rows(
    rows: Sequence[Mapping[str, object]], path: str | Path | None, format: str | None = None
) -> None:
    """Write result rows as JSON Lines (default, and for ``path=None``: stdout) or CSV (``.csv``).

    In CSV, nested values (dicts, lists) are written as JSON strings; the header is the union of
    the rows' keys in first-seen order.
    """
    fmt = (format or (Path(path).suffix.lstrip(".") if path is not None else "jsonl")).lower()
    if fmt not in ("csv", "jsonl", "ndjson"):
        raise InputError(f"Cannot write {fmt!r}: write results to a .csv or .jsonl file.")
    out = sys.stdout if path is None or str(path) == "-" else open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
    try:
        if fmt == "csv":
            header = list(dict.fromkeys(key for row in rows for key in row))
            writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                        for k, v in row.items()
                    }
                )
        else:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()

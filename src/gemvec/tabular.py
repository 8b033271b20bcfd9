"""Read labelled (or unlabelled) texts from CSV, TSV, JSON Lines, JSON or plain-text files.

One function, :func:`read_table`, turns a file into a :class:`Table` of rows with a text,
an optional label and an id, whatever the format:

* ``.csv`` — comma-separated with a header, standard CSV quoting;
* ``.tsv`` / ``.tab`` — tab-separated with a header, fields **not quoted** (``csv.QUOTE_NONE``),
  the convention of ``../shared/data`` where some fields begin with a double quote;
* ``.jsonl`` / ``.ndjson`` — one JSON object per line; ``.json`` — a JSON array of objects;
* ``.txt`` — one text per non-blank line (no labels, no ids).

Column names are configurable. Every problem (missing file or column, empty file, bytes that
are not UTF-8, a short row, a row without a label) is a :class:`~gemvec.errors.DatasetError`
(an :class:`~gemvec.errors.InputError`) naming the file and line.

This is gemvec's one reader of record files: :func:`read_table` for user tables,
:func:`read_records` for callers that pick their own columns (collection ingest, evaluation
datasets), and :func:`read_text` / :func:`parse_records` / :func:`sniff_format` for text that is
already at hand (``gemvec embed``'s stdin).
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

from gemvec.errors import DatasetError

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
    if isinstance(format, TableFormat):
        return format
    if format is not None:
        try:
            return TableFormat(str(format).lower().lstrip("."))
        except ValueError:
            choices = ", ".join(f.value for f in TableFormat)
            raise DatasetError(f"Unknown data format {format!r}. Choose one of: {choices}.") from None
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise DatasetError(
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
    source = source_name(path)
    if fmt is TableFormat.TEXT:
        text_column, label_column, id_column = "text", None, None  # plain lines: nothing to name
    records = read_records(path, fmt, require_rows=True)
    columns = list(records[0][1])
    if text_column not in columns:
        raise DatasetError(_missing_column(source, "text", text_column, columns, "--text-column"))
    has_labels = label_column is not None and label_column in columns
    if require_labels and not has_labels:
        raise DatasetError(_missing_column(source, "label", label_column, columns, "--label-column"))
    rows: list[Row] = []
    for line, record in records:
        text = _field(record, text_column, source, line)
        label = _field(record, label_column, source, line) if has_labels else None  # type: ignore[arg-type]
        if has_labels and label == "":
            raise DatasetError(f"{source}:{line}: the label column {label_column!r} is empty in this row.")
        row_id = record.get(id_column) if id_column else None
        rows.append(Row(str(len(rows)) if row_id is None or row_id == "" else str(row_id), text, label))
    return Table(rows, source, text_column, label_column if has_labels else None)


def read_records(
    path: str | Path, format: TableFormat | str | None = None, *, require_rows: bool = False
) -> list[tuple[int, dict[str, object]]]:
    """(line number, record) for every row of a CSV/TSV/JSON Lines/JSON/text file, all columns kept —
    for callers that pick their own columns (collections ingest rows as documents, evaluation
    datasets). ``require_rows``: an empty file, or a header without rows, is an error."""
    fmt, source = detect_format(path, format), source_name(path)
    content = read_text(path)
    if require_rows and not content.strip():
        raise DatasetError(f"{source} is empty: it has no rows.")
    records = [(line, dict(record)) for line, record in parse_records(content, fmt, source)]
    if require_rows and not records:
        raise DatasetError(f"{source} has a header but no rows.")
    return records


def source_name(path: str | Path) -> str:
    """How messages name ``path``: ``<stdin>`` for ``"-"``."""
    return "<stdin>" if str(path) == "-" else str(path)


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file (a leading BOM dropped); ``"-"`` reads stdin."""
    source = source_name(path)
    if str(path) == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise DatasetError(f"Data file {source} does not exist.") from None
        except IsADirectoryError:
            raise DatasetError(f"{source} is a folder; pass a CSV, TSV, JSON Lines or text file.") from None
    try:
        return data.decode("utf-8-sig")  # a leading BOM (Excel's CSV export) is dropped
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{source}:{line}: byte {data[exc.start]:#04x} is not valid UTF-8. Save the file as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 {source} > fixed{Path(source).suffix}) and retry."
        ) from None


def sniff_format(content: str) -> TableFormat:
    """JSON Lines if the first non-blank line starts with ``{``, else one text per line."""
    first = next((line for line in io.StringIO(content, newline=None) if line.strip()), "")
    return TableFormat.JSONL if first.lstrip().startswith("{") else TableFormat.TEXT


def parse_records(
    content: str, format: TableFormat | str, source: str
) -> Iterator[tuple[int, Mapping[str, object]]]:
    """(line number, record) pairs of ``content`` read as ``format``; blank lines are skipped.

    Text lines become ``{"text": line}``. A CSV/TSV header is checked here, columns by the caller.
    """
    fmt = detect_format(source, format)
    if fmt is TableFormat.TEXT:
        # the line breaks of a text-mode file (\n, \r\n, \r), not str.splitlines()'s larger set
        for number, line in enumerate(io.StringIO(content, newline=None), 1):
            if line.strip():
                yield number, {"text": line.rstrip("\n")}
    elif fmt is TableFormat.JSONL:
        yield from _jsonl_records(content, source)
    elif fmt is TableFormat.JSON:
        yield from _json_records(content, source)
    else:
        yield from _delimited_records(content, fmt, source)


def cell_text(value: object) -> str:
    """A record's value as text: strings as they are, other JSON values (numbers, ...) as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- internals ------------------------------------------------------------------------------


def _jsonl_records(content: str, source: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    for number, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{source}:{number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise DatasetError(
                f"{source}:{number}: each line must be a JSON object, got {type(record).__name__}."
            )
        yield number, record


def _json_records(content: str, source: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg}).") from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise DatasetError(f"{source}: a .json data file must hold a list of objects (or use JSON Lines).")
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
        header = next(reader, None)
        if header is None:
            return  # an empty file
        for fields in reader:
            if not any(fields):
                continue  # blank line
            if len(fields) != len(header):
                raise DatasetError(_field_count_message(source, reader.line_num, fields, header, fmt))
            yield reader.line_num, dict(zip(header, fields, strict=True))
    except csv.Error as exc:
        raise DatasetError(f"{source}:{reader.line_num}: malformed {fmt.value.upper()} ({exc}).") from None


def _field_count_message(
    source: str, line: int, fields: list[str], header: list[str], fmt: TableFormat
) -> str:
    if fmt is TableFormat.TSV:
        fix = "Fields are split on every tab, so a text cannot contain one."
    else:
        fix = "Quote fields that contain commas."
    columns = ", ".join(header)
    return f"{source}:{line}: {len(fields)} fields but the header has {len(header)} ({columns}). {fix}"


def _field(record: Mapping[str, object], column: str, source: str, line: int) -> str:
    value = record.get(column)
    if value is None:
        raise DatasetError(f"{source}:{line}: this row has no {column!r} value.")
    if isinstance(value, (dict, list)):
        raise DatasetError(
            f"{source}:{line}: {column!r} must be a string or number, got {type(value).__name__}."
        )
    return cell_text(value)


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
        raise DatasetError(f"Cannot write {fmt!r}: write results to a .csv or .jsonl file.")
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

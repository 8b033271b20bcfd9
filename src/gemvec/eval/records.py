"""Read the record files evaluation datasets are made of: JSON Lines and unquoted TSV.

The conventions are those of ``../shared/data``: UTF-8, one record per line, TSV with a
header and fields that are split on tabs and never quoted (some texts begin with a double
quote). Every problem is a :class:`DatasetError` that names the file, the line and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gemvec.errors import DatasetError, InputError
from gemvec.tabular import _jsonl_records  # one JSON Lines parser for eval data and user tables

Record = dict[str, str]


def read_records(path: Path, required: Sequence[str], *, any_of: Sequence[str] = ()) -> list[Record]:
    """All records of a ``.jsonl`` or ``.tsv`` file, as str -> str dicts.

    ``required``: columns every record must have. ``any_of``: at least one of these columns
    must exist (e.g. ``label`` or ``category``). Non-string JSON scalars become strings, so
    ids like ``12`` and ``"12"`` are the same id.
    """
    text = _read_utf8(path)
    if not text.strip():
        raise DatasetError(f"{path} is empty: it has no records. Check that the file was written completely.")
    if path.suffix == ".jsonl":
        records = _jsonl(text, path)
    elif path.suffix == ".tsv":
        records = _tsv(text, path)
    else:
        raise DatasetError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl or .tsv.")
    if not records:
        raise DatasetError(f"{path} has a header but no records.")
    _check_columns(records, path, required, any_of)
    return records


def _read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"Dataset file {path} does not exist.") from None
    except IsADirectoryError:
        raise DatasetError(f"{path} is a folder, not a data file.") from None
    try:
        return data.decode("utf-8-sig")  # tolerate a leading BOM
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}:{line}: byte {data[exc.start]:#04x} is not valid UTF-8. Re-encode the file as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}) and retry."
        ) from None


def _jsonl(text: str, path: Path) -> list[Record]:
    try:
        return [
            {key: _as_str(v) for key, v in value.items()} | {"__line__": str(number)}
            for number, value in _jsonl_records(text, str(path))
        ]
    except DatasetError:
        raise
    except InputError as exc:
        raise DatasetError(str(exc)) from None


def _as_str(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _tsv(text: str, path: Path) -> list[Record]:
    lines = text.split("\n")
    header = lines[0].rstrip("\r").split("\t")
    records: list[Record] = []
    for number, line in enumerate(lines[1:], 2):
        line = line.rstrip("\r")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DatasetError(
                f"{path}:{number}: {len(fields)} tab-separated fields but the header has {len(header)} "
                f"({', '.join(header)}). Fields are split on every tab, so a text cannot contain one."
            )
        records.append(dict(zip(header, fields, strict=True)) | {"__line__": str(number)})
    return records


def _check_columns(records: list[Record], path: Path, required: Sequence[str], any_of: Sequence[str]) -> None:
    for record in records:
        missing = [column for column in required if column not in record]
        if any_of and not any(column in record for column in any_of):
            missing.append(" or ".join(any_of))
        if missing:
            found = ", ".join(k for k in record if k != "__line__") or "none"
            raise DatasetError(
                f"{path}:{record['__line__']}: missing column {', '.join(repr(m) for m in missing)} "
                f"(found: {found})."
            )


def line_of(record: Record) -> str:
    """The line number a record was read from, for error messages."""
    return record.get("__line__", "?")

"""Read the record files evaluation datasets are made of: JSON Lines and unquoted TSV.

The conventions are those of ``../shared/data``: UTF-8, one record per line, TSV with a
header and fields that are split on tabs and never quoted (some texts begin with a double
quote). Parsing is :mod:`gemvec.tabular`'s, the one reader of record files; this module adds
the dataset rules: only ``.jsonl`` and ``.tsv``, every value a string, required columns.
Every problem is a :class:`DatasetError` that names the file, the line and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gemvec.errors import DatasetError
from gemvec.tabular import TableFormat, cell_text
from gemvec.tabular import read_records as read_table_records

Record = dict[str, str]

_FORMATS = {".jsonl": TableFormat.JSONL, ".tsv": TableFormat.TSV}


def read_records(path: Path, required: Sequence[str], *, any_of: Sequence[str] = ()) -> list[Record]:
    """All records of a ``.jsonl`` or ``.tsv`` file, as str -> str dicts.

    ``required``: columns every record must have. ``any_of``: at least one of these columns
    must exist (e.g. ``label`` or ``category``). Non-string JSON scalars become strings, so
    ids like ``12`` and ``"12"`` are the same id.
    """
    if path.suffix not in _FORMATS:
        raise DatasetError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl or .tsv.")
    records = [
        {key: cell_text(value) for key, value in record.items()} | {"__line__": str(number)}
        for number, record in read_table_records(path, _FORMATS[path.suffix], require_rows=True)
    ]
    _check_columns(records, path, required, any_of)
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

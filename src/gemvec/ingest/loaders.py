"""Read files into documents: plain text, Markdown, HTML, PDF, Word, and JSONL/CSV rows.

PDF, Word and HTML use well-kept libraries from the ``docs`` extra (pypdf, python-docx,
beautifulsoup4); a missing one gives an error naming the extra. A JSONL or CSV file gives
one document per row, taking the text (and optional id, title, metadata) from named fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gemvec.errors import InputError, require
from gemvec.tabular import read_records


@dataclass
class SourceDocument:
    """One document to index. ``source`` is its unique key in the collection."""

    source: str
    text: str
    title: str | None = None
    path: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TableOptions:
    """Which fields of a JSONL/CSV row hold the text, id, title and metadata.

    ``metadata_fields=None`` keeps every other scalar field as metadata.
    """

    text_field: str = "text"
    id_field: str = "id"
    title_field: str = "title"
    metadata_fields: tuple[str, ...] | None = None


BINARY_SNIFF_BYTES = 8192


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; a binary file or invalid UTF-8 is refused rather than read as U+FFFD."""
    data = path.read_bytes()
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        raise InputError(f"{path} looks binary (it holds NUL bytes), not text; exclude it with --exclude.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not valid UTF-8 (byte {exc.start}); convert it, e.g. `iconv -f latin1 -t utf-8`."
        ) from None


def _markdown_title(text: str) -> str | None:
    match = re.search(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return match.group(1) if match else None


def load_text(path: Path) -> tuple[str, str | None]:
    text = _read_text(path)
    return text, (_markdown_title(text) if path.suffix.lower() in (".md", ".markdown") else None)


def load_html(path: Path) -> tuple[str, str | None]:
    bs4 = require("bs4", "docs", "Reading HTML")
    soup = bs4.BeautifulSoup(path.read_bytes(), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    body = soup.body or soup
    # Block elements become paragraphs so the chunker can split on them.
    text = body.get_text("\n", strip=True)
    return re.sub(r"\n{2,}", "\n\n", text), title or None


def load_pdf(path: Path) -> tuple[str, str | None]:
    pypdf = require("pypdf", "docs", "Reading PDF")
    reader = pypdf.PdfReader(str(path))
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    title = None
    if reader.metadata is not None and reader.metadata.title:
        title = str(reader.metadata.title).strip() or None
    return "\n\n".join(p for p in pages if p), title


def load_docx(path: Path) -> tuple[str, str | None]:
    docx = require("docx", "docs", "Reading Word .docx")
    document = docx.Document(str(path))
    paragraphs = [p.text for p in document.paragraphs if p.text.strip()]
    return "\n\n".join(paragraphs), (document.core_properties.title or None)


SINGLE_LOADERS: dict[str, Callable[[Path], tuple[str, str | None]]] = {
    ".txt": load_text,
    ".md": load_text,
    ".markdown": load_text,
    ".rst": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}
TABLE_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".tab")
SUPPORTED_SUFFIXES = (*SINGLE_LOADERS, *TABLE_SUFFIXES)


def load_table(path: Path, options: TableOptions) -> list[SourceDocument]:
    """One document per row; rows without text are skipped, a missing text column is an error."""
    docs = []
    reserved = {options.text_field, options.id_field, options.title_field}
    for number, row in read_records(path):
        if options.text_field not in row:
            raise InputError(
                f"{path}:{number}: no '{options.text_field}' field (fields: {', '.join(row)}); "
                "choose the text column with --text-field."
            )
        text = row.get(options.text_field)
        if not isinstance(text, str) or not text.strip():
            continue
        row_id = row.get(options.id_field)
        key = str(row_id) if row_id not in (None, "") else f"row{number}"
        title = row.get(options.title_field)
        names = (
            options.metadata_fields
            if options.metadata_fields is not None
            else [k for k in row if k not in reserved]
        )
        metadata = {k: row[k] for k in names if k in row and isinstance(row[k], (str, int, float, bool))}
        metadata["id"] = key
        docs.append(SourceDocument(f"{path}#{key}", text, str(title) if title else None, str(path), metadata))
    return docs


def load_file(path: Path, table: TableOptions | None = None) -> list[SourceDocument]:
    """The documents in one file (one for text-like files, one per row for JSONL/CSV)."""
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return load_table(path, table or TableOptions())
    loader = SINGLE_LOADERS.get(suffix)
    if loader is None:
        raise InputError(
            f"{path}: unsupported file type {suffix!r} (supported: {', '.join(SUPPORTED_SUFFIXES)})."
        )
    text, title = loader(path)
    if not text.strip():
        return []
    return [SourceDocument(str(path), text, title or path.stem, str(path), {"type": suffix.lstrip(".")})]

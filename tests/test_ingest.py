"""Loaders, file discovery and token-aware chunking."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from gemvec.errors import InputError
from gemvec.ingest.chunking import chunk_text
from gemvec.ingest.loaders import TableOptions, load_file
from gemvec.ingest.walk import find_files

PARAGRAPHS = [
    "Alpha beta gamma delta. Epsilon zeta eta theta. Iota kappa lambda mu.",
    "Nu xi omicron pi. Rho sigma tau upsilon. Phi chi psi omega.",
    "One two three four. Five six seven eight. Nine ten eleven twelve.",
]


def tokens(tokenizer, text: str) -> int:
    return tokenizer.count([text])[0] - 2  # without <bos>/<eos>


def test_chunks_respect_the_token_limit_and_cover_the_text(tiny_embedder) -> None:
    tok = tiny_embedder.tokenizer
    text = "\n\n".join(PARAGRAPHS * 4)
    chunks = chunk_text(text, tok, max_tokens=40, overlap=8)
    assert len(chunks) > 3
    for chunk in chunks:
        assert tokens(tok, chunk.text) <= 40
        assert chunk.text == text[chunk.start : chunk.end]
    assert [c.position for c in chunks] == list(range(len(chunks)))
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())
    # consecutive chunks overlap (shared text), and never cut inside a word
    assert any(b.start < a.end for a, b in itertools.pairwise(chunks))
    for c in chunks:
        assert c.start == 0 or text[c.start - 1].isspace()
        assert c.end == len(text) or not text[c.end].isalnum()


def test_chunks_prefer_paragraph_then_sentence_boundaries(tiny_embedder) -> None:
    tok = tiny_embedder.tokenizer
    text = "\n\n".join(PARAGRAPHS)
    per_paragraph = max(tokens(tok, p) for p in PARAGRAPHS)
    chunks = chunk_text(text, tok, max_tokens=per_paragraph + 5, overlap=0)
    assert [c.text for c in chunks] == PARAGRAPHS
    sentence_chunks = chunk_text(PARAGRAPHS[0], tok, max_tokens=tokens(tok, PARAGRAPHS[0]) - 3, overlap=0)
    assert sentence_chunks[0].text.endswith(".")


def test_chunking_splits_a_long_unbroken_text(tiny_embedder) -> None:
    tok = tiny_embedder.tokenizer
    chunks = chunk_text("x" * 5000, tok, max_tokens=32, overlap=0)
    assert len(chunks) > 1 and all(c.n_tokens <= 32 for c in chunks)
    assert "".join(c.text for c in chunks) == "x" * 5000
    with pytest.raises(InputError):
        chunk_text("abc", tok, max_tokens=32, overlap=20)


def _minimal_pdf(text: str) -> bytes:
    """A one-page PDF with one line of Helvetica text, offsets computed for a valid xref."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def test_loaders_read_every_supported_format(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("plain text here")
    (tmp_path / "b.md").write_text("intro\n\n# The Title\n\nbody")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Page</title><style>x{}</style></head><body><p>Hello</p><script>bad()</script>"
        "<p>World</p></body></html>"
    )
    (tmp_path / "d.pdf").write_bytes(_minimal_pdf("Portable document words"))
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_paragraph("Word paragraph one")
    document.add_paragraph("Word paragraph two")
    document.core_properties.title = "Doc Title"
    document.save(tmp_path / "e.docx")

    assert load_file(tmp_path / "a.txt")[0].text == "plain text here"
    assert load_file(tmp_path / "b.md")[0].title == "The Title"
    html = load_file(tmp_path / "c.html")[0]
    assert html.title == "Page" and "Hello" in html.text and "World" in html.text and "bad()" not in html.text
    assert "Portable document words" in load_file(tmp_path / "d.pdf")[0].text
    word = load_file(tmp_path / "e.docx")[0]
    assert word.title == "Doc Title" and word.text == "Word paragraph one\n\nWord paragraph two"


def test_table_loaders_take_named_fields(tmp_path: Path) -> None:
    rows = [{"key": "a1", "body": "first text", "name": "First", "lang": "en"}, {"key": "a2", "body": ""}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "t.csv").write_text('key,body,lang\nc1,"csv, text",fr\n')
    options = TableOptions(text_field="body", id_field="key", title_field="name")
    docs = load_file(tmp_path / "t.jsonl", options)
    assert len(docs) == 1  # the empty row is skipped
    assert docs[0].source.endswith("t.jsonl#a1") and docs[0].title == "First"
    assert docs[0].metadata == {"lang": "en", "id": "a1"}
    csv_docs = load_file(tmp_path / "t.csv", options)
    assert csv_docs[0].text == "csv, text" and csv_docs[0].metadata["lang"] == "fr"
    with pytest.raises(InputError, match="--text-field"):
        load_file(tmp_path / "t.csv", TableOptions(text_field="missing"))
    # TSV as in ../shared/data: unquoted fields, some beginning with a double quote
    (tmp_path / "t.tsv").write_text('key\tbody\tcategory\nt1\t"Quoted" start, no closing\tgeo\n')
    tsv_docs = load_file(tmp_path / "t.tsv", options)
    assert tsv_docs[0].text == '"Quoted" start, no closing' and tsv_docs[0].metadata["category"] == "geo"
    (tmp_path / "bad.tsv").write_text("key\tbody\nonly-one-field\n")
    with pytest.raises(InputError, match="bad.tsv:2: 1 fields but the header has 2"):
        load_file(tmp_path / "bad.tsv", options)


def test_find_files_walks_with_globs(tmp_path: Path) -> None:
    for name in ["a.md", "b.txt", "sub/c.md", "sub/skip.md", ".hidden/d.md", "e.bin"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    names = {p.relative_to(tmp_path).as_posix() for p in find_files([tmp_path])}
    assert names == {"a.md", "b.txt", "sub/c.md", "sub/skip.md"}
    names = {
        p.relative_to(tmp_path).as_posix()
        for p in find_files([tmp_path], include=["*.md"], exclude=["skip*"])
    }
    assert names == {"a.md", "sub/c.md"}
    with pytest.raises(InputError):
        find_files([tmp_path / "nope"])

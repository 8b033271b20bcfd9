"""The two tokenizer backends: sentencepiece (tokenizer.model, the default) and tokenizers (tokenizer.json).

On the real checkpoint they must give the same ids and token offsets, text for text, across the
languages of ../shared/data; the real-model tests skip without EMBEDDINGGEMMA_DIR.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemvec import Embedder
from gemvec.errors import InputError
from gemvec.tokenizer import SentencePieceBackend, TextTokenizer, TokenizersBackend

EDGE_CASES = [
    "<bos>hello<eos>",
    "<unused0> <pad> <mask> <unk>",
    "<start_of_turn>user\nhi<end_of_turn>",
    "  leading and trailing  ",
    "\t\ttabs\tand\r\nwindows lines\n\n\n",
    "\u00a0no-break\u2003em space ｆｕｌｌｗｉｄｔｈ ﬁ e\u0301",
    "emoji 👩‍👩‍👧 🇯🇵 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \x00\x01 ▁ literal",
    "",
    " ",
    "A" * 3000,
]


def shared_texts(shared_data: Path, per_file: int = 150) -> list[str]:
    texts: list[str] = []
    for path in sorted(shared_data.rglob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            for line, _ in zip(f, range(per_file), strict=False):
                row = json.loads(line)
                texts += [row[k] for k in ("title", "text") if isinstance(row.get(k), str)]
    for path in sorted(shared_data.rglob("*.tsv")):
        with path.open(encoding="utf-8") as f:
            next(f)
            for line, _ in zip(f, range(per_file), strict=False):
                texts += [field for field in line.rstrip("\n").split("\t")[:2] if field]
    return texts


@pytest.mark.real_model
def test_sentencepiece_matches_tokenizers_on_real_text(real_model_dir: Path, shared_data: Path) -> None:
    texts = shared_texts(shared_data) + EDGE_CASES
    texts += ["task: search result | query: " + t for t in texts[:2000]]
    assert len(texts) > 10_000
    fast = SentencePieceBackend(real_model_dir / "tokenizer.model")
    reference = TokenizersBackend(real_model_dir / "tokenizer.json")
    assert (fast.pad_id, fast.bos_id, fast.eos_id) == (reference.pad_id, reference.bos_id, reference.eos_id)
    ours, theirs = fast.ids(texts), reference.ids(texts)
    mismatches = [t for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert not mismatches, mismatches[:3]
    for text in texts[::7] + EDGE_CASES:
        assert fast.token_starts(text) == reference.token_starts(text), text[:80]


@pytest.mark.real_model
def test_real_checkpoint_uses_sentencepiece(real_embedder: Embedder) -> None:
    assert isinstance(real_embedder.tokenizer.backend, SentencePieceBackend)
    assert real_embedder.count_tokens(["<eos>"]) == [3]  # <bos> <eos> <eos>, as tokenizers counts it


def test_tokenizer_json_is_the_fallback(tiny_model_dir: Path) -> None:
    assert not (tiny_model_dir / "tokenizer.model").exists()
    tokenizer = TextTokenizer.from_folder(tiny_model_dir)
    assert isinstance(tokenizer.backend, TokenizersBackend)
    ids = tokenizer.encode(["hello world"]).ids[0]
    assert ids[0] == tokenizer.backend.bos_id and ids[-1] == tokenizer.backend.eos_id


def test_image_placeholder_is_refused(tiny_embedder: Embedder) -> None:
    with pytest.raises(InputError, match="image placeholder"):
        tiny_embedder.encode(["look: <image_soft_token>"])

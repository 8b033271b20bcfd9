"""The checkpoint's tokenizer (``tokenizer.json``), with the length limit EmbeddingGemma was trained for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from gemvec.errors import CheckpointError

MAX_TOKENS = 2048


@dataclass
class Encoded:
    ids: list[list[int]]
    truncated: list[bool]


class TextTokenizer:
    """Adds ``<bos>``/``<eos>`` (the checkpoint's post-processor) and truncates to `max_tokens`."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int = MAX_TOKENS) -> None:
        self._tok = tokenizer
        self.max_tokens = max_tokens
        self._tok.no_padding()
        self._tok.no_truncation()
        self.pad_id = tokenizer.token_to_id("<pad>")
        if self.pad_id is None:
            raise CheckpointError("tokenizer.json has no <pad> token; it is not EmbeddingGemma's tokenizer.")

    @classmethod
    def from_file(cls, path: Path, max_tokens: int = MAX_TOKENS) -> TextTokenizer:
        try:
            return cls(Tokenizer.from_file(str(path)), max_tokens)
        except Exception as exc:  # tokenizers raises plain Exception on a bad file
            raise CheckpointError(
                f"Cannot load tokenizer {path}: {exc}. Re-download the checkpoint."
            ) from None

    @property
    def backend(self) -> Tokenizer:
        return self._tok

    def encode(self, texts: list[str]) -> Encoded:
        """Token ids per text (special tokens included), truncated to `max_tokens` keeping <eos>."""
        encodings = self._tok.encode_batch(texts, add_special_tokens=True)
        ids, truncated = [], []
        for enc in encodings:
            row = enc.ids
            if len(row) > self.max_tokens:
                # Same as HF truncation: keep <bos> + the first tokens, end with <eos>.
                row = [*row[: self.max_tokens - 1], row[-1]]
                truncated.append(True)
            else:
                truncated.append(False)
            ids.append(row)
        return Encoded(ids, truncated)

    def count(self, texts: list[str]) -> list[int]:
        """Tokens per text including <bos>/<eos>, before truncation."""
        return [len(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=True)]

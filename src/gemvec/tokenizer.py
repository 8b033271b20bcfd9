"""The checkpoint's tokenizer, with the length limit EmbeddingGemma was trained for.

Two backends give the same token ids:

- **sentencepiece** over ``tokenizer.model`` (used when the checkpoint has one): loads an
  order of magnitude faster, in a fraction of the memory.
- **tokenizers** over ``tokenizer.json`` (the reference stack's): parsing Gemma's large file
  peaks at a sizeable share of an int8 model's memory (figures in BENCHMARKS.md).

They agree on every one of 230,716 texts of ``../shared/data`` (all its languages, with and
without prompts) once the control tokens a text may spell out (``<eos>``, …) are split off as
``tokenizers`` does; ``tests/test_real_model.py`` keeps checking that, offsets included.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gemvec.errors import CheckpointError, InputError
from gemvec.memory import return_freed_heap

MAX_TOKENS = 2048
# Written in a text, these become their own ids (tokenizers' added-token matching); sentencepiece
# treats them as control symbols and would spell them out, so they are split off first.
CONTROL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")
# An image placeholder of the multimodal Gemma 3 vocabulary, past the text model's embedding table.
IMAGE_TOKEN = "<image_soft_token>"


@dataclass
class Encoded:
    ids: list[list[int]]
    truncated: list[bool]


class Backend(Protocol):
    pad_id: int
    bos_id: int
    eos_id: int

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, without <bos>/<eos>."""
        ...

    def token_starts(self, text: str) -> list[int]:
        """The character offset where each token of ``text`` starts (non-decreasing)."""
        ...


class SentencePieceBackend:
    """``tokenizer.model`` through sentencepiece."""

    def __init__(self, path: Path) -> None:
        import sentencepiece

        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self.pad_id, self.bos_id, self.eos_id = self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id()
        self._control = {token: self._sp.piece_to_id(token) for token in CONTROL_TOKENS}
        self._split = re.compile("(" + "|".join(map(re.escape, CONTROL_TOKENS)) + ")")

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        if not any(self._split.search(t) for t in texts):
            return self._sp.encode(list(texts))
        return [self._ids_with_control(t) for t in texts]

    def _ids_with_control(self, text: str) -> list[int]:
        parts = self._split.split(text)  # odd positions hold the control tokens
        encoded = iter(self._sp.encode(parts[0::2]))
        out: list[int] = []
        for i, part in enumerate(parts):
            out += [self._control[part]] if i % 2 else next(encoded)
        return out

    def token_starts(self, text: str) -> list[int]:
        """Pieces are walked in characters (``▁`` stands for one space); byte-fallback pieces
        (``<0xE2>``) start at the character they help spell, as tokenizers reports them."""
        starts: list[int] = []
        position, pending_bytes = 0, 0
        for token in self.ids([text])[0]:
            starts.append(position)
            if self._sp.is_byte(token):
                if pending_bytes == 0:
                    lead = int(self._sp.id_to_piece(token)[3:5], 16)
                    pending_bytes = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
                pending_bytes -= 1
                position += pending_bytes == 0
            else:
                position += len(self._sp.id_to_piece(token))
        return starts


class TokenizersBackend:
    """``tokenizer.json`` through Hugging Face tokenizers (the reference stack's own)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception on a bad file
            raise CheckpointError(
                f"Cannot load tokenizer {path}: {exc}. Re-download the checkpoint."
            ) from None
        return_freed_heap()  # the parse's peak is mostly transient: hand it back to the OS
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tok = tokenizer
        ids = {name: tokenizer.token_to_id(name) for name in ("<pad>", "<bos>", "<eos>")}
        if None in ids.values():
            missing = [name for name, i in ids.items() if i is None]
            raise CheckpointError(
                f"{path} has no {', '.join(missing)}: it is not EmbeddingGemma's tokenizer."
            )
        self.pad_id, self.bos_id, self.eos_id = ids["<pad>"], ids["<bos>"], ids["<eos>"]

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def token_starts(self, text: str) -> list[int]:
        return [start for start, _ in self._tok.encode(text, add_special_tokens=False).offsets]


class TextTokenizer:
    """Adds ``<bos>``/``<eos>`` around each text and truncates to ``max_tokens``."""

    def __init__(self, backend: Backend, max_tokens: int = MAX_TOKENS) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        self.pad_id = backend.pad_id

    @classmethod
    def from_folder(cls, folder: Path, max_tokens: int = MAX_TOKENS) -> TextTokenizer:
        """sentencepiece when the checkpoint has ``tokenizer.model`` (and sentencepiece imports), else
        ``tokenizer.json``."""
        model = folder / "tokenizer.model"
        if model.is_file():
            try:
                return cls(SentencePieceBackend(model), max_tokens)
            except ImportError:
                pass
            except (OSError, RuntimeError) as exc:
                raise CheckpointError(
                    f"Cannot load tokenizer {model}: {exc}. Re-download the checkpoint."
                ) from None
        return cls.from_file(folder / "tokenizer.json", max_tokens)

    @classmethod
    def from_file(cls, path: Path, max_tokens: int = MAX_TOKENS) -> TextTokenizer:
        """From a ``tokenizer.json``."""
        return cls(TokenizersBackend(path), max_tokens)

    def encode(self, texts: list[str]) -> Encoded:
        """Token ids per text (special tokens included), truncated to `max_tokens` keeping <eos>."""
        ids, truncated = [], []
        for row in self._with_specials(texts):
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
        return [len(row) for row in self._with_specials(texts)]

    def token_starts(self, text: str) -> list[int]:
        """Character offset of each token of ``text`` (no special tokens), for chunking."""
        return self.backend.token_starts(text)

    def _with_specials(self, texts: list[str]) -> list[list[int]]:
        for text in texts:
            if IMAGE_TOKEN in text:
                raise InputError(
                    f"A text contains {IMAGE_TOKEN}, an image placeholder this text-only model cannot "
                    "embed. Remove it from the text."
                )
        bos, eos = [self.backend.bos_id], [self.backend.eos_id]
        return [bos + row + eos for row in self.backend.ids(texts)]


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"Cannot load tokenizer {path}: {exc}. Re-download the checkpoint.")

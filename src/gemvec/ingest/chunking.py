"""Token-aware chunking with overlap, cutting at paragraph, then sentence, then word boundaries.

The document is tokenised once with the model's tokenizer (character offsets per token), so
"how many tokens lie between two character positions" is a binary search. A chunk runs from
its start to the last paragraph break that keeps it within ``max_tokens`` — or, when that
would leave the chunk less than half full, the last sentence end, then the last space, then
a token boundary. The next chunk starts up to ``overlap`` tokens earlier, at a sentence (or
word) boundary, so text is never cut mid-word when it can be helped.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gemvec.errors import InputError

if TYPE_CHECKING:
    from gemvec.tokenizer import TextTokenizer

MIN_FILL = 0.5  # a boundary is only preferred if the chunk is at least this full
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE = re.compile(r"(?<=[.!?。！？;:])[\"')\]]*\s+|(?<=[。！？])|\n")
_WORD = re.compile(r"\s+")


@dataclass(frozen=True)
class Chunk:
    position: int  # chunk number within the document
    start: int  # character offsets into the document text
    end: int
    n_tokens: int
    text: str


def _ends(pattern: re.Pattern[str], text: str) -> list[int]:
    return sorted({m.end() for m in pattern.finditer(text)})


class _Doc:
    def __init__(self, text: str, tokenizer: TextTokenizer) -> None:
        self.text = text
        self.starts = tokenizer.token_starts(text)
        self.levels = [_ends(_PARAGRAPH, text), _ends(_SENTENCE, text), _ends(_WORD, text)]

    def tokens(self, a: int, b: int) -> int:
        return bisect_left(self.starts, b) - bisect_left(self.starts, a)

    def limit(self, start: int, max_tokens: int) -> int:
        """The furthest character position keeping [start, limit) within max_tokens."""
        i = bisect_left(self.starts, start) + max_tokens
        return self.starts[i] if i < len(self.starts) else len(self.text)

    def cut(self, start: int, max_tokens: int) -> int:
        limit = self.limit(start, max_tokens)
        if limit >= len(self.text):
            return len(self.text)
        floor = self.limit(start, int(max_tokens * MIN_FILL))
        for level in self.levels:
            i = bisect_right(level, limit) - 1
            if i >= 0 and level[i] > floor:
                return level[i]
        return limit

    def overlap_start(self, start: int, end: int, overlap: int) -> int:
        """The earliest sentence (else word) boundary after ``start`` with <= overlap tokens up to ``end``."""
        if overlap <= 0:
            return end
        for level in self.levels[1:]:
            i = bisect_right(level, start)
            while i < len(level) and level[i] < end:
                if self.tokens(level[i], end) <= overlap:
                    return level[i]
                i += 1
        return end


def chunk_text(text: str, tokenizer: TextTokenizer, max_tokens: int = 256, overlap: int = 32) -> list[Chunk]:
    """Split ``text`` into chunks of at most ``max_tokens`` tokens (special tokens and prompt not counted)."""
    if max_tokens < 8:
        raise InputError(f"chunk size must be at least 8 tokens, got {max_tokens}.")
    if not 0 <= overlap < max_tokens // 2:
        raise InputError(f"overlap must be from 0 to half the chunk size ({max_tokens // 2}), got {overlap}.")
    doc = _Doc(text, tokenizer)
    chunks: list[Chunk] = []
    start = 0
    while start < len(text):
        end = doc.cut(start, max_tokens)
        a, b = start, end
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            chunks.append(Chunk(len(chunks), a, b, doc.tokens(a, b), text[a:b]))
        if end >= len(text):
            break
        start = max(doc.overlap_start(start, end, overlap), start + 1)
    return chunks

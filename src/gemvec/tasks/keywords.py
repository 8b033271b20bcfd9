"""Keywords that describe groups of texts, in any language: class-based TF-IDF over script-aware terms.

Whitespace does not separate words in Chinese, Japanese or Thai, so :func:`terms` splits a
text into runs of one script and turns each run into terms its own way:

* letters of alphabetic scripts (Latin, Cyrillic, Greek, Arabic, Devanagari, Hangul, ...):
  words, case-folded, English stop words dropped;
* Han characters (Chinese, Japanese kanji): overlapping character bigrams;
* Katakana: the whole run (mostly loanwords, already delimited by the script change);
* Hiragana: dropped (mostly particles and inflections);
* Thai, Lao, Khmer, Myanmar: overlapping character trigrams.

:func:`class_tfidf` then scores each term per group, class-based TF-IDF style, as

    score(t, c) = sqrt(p(t | c)) * log(p(t | c) / p(t))

where ``p(t | c)`` is the share of the group's texts that contain the term and ``p(t)`` the share
of all texts: how common the term is in the group, times how much more common than everywhere
(the square root damps the pull of very frequent words). Function words (French "les", Chinese
"的") are common everywhere, so they score about zero in every language without any stop-word list; terms
concentrated in one group score high. (BERTopic's ``tf * log(1 + A / f)`` was tried first and
named French clusters "les, des, la" on SIB-200.)
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence

_HAN = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))
_KATAKANA = ((0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))
_HIRAGANA = ((0x3040, 0x309F),)
_NO_SPACES = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF))  # Thai, Lao, Myanmar, Khmer


def _in(code: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= code <= high for low, high in ranges)


def _script(char: str) -> str:
    code = ord(char)
    if code < 0x0E00:  # fast path: Latin, Greek, Cyrillic, Arabic, Indic, ...
        return "word" if char.isalpha() or _is_mark(char) else ""
    if _in(code, _HAN):
        return "han"
    if _in(code, _KATAKANA):
        return "katakana"
    if _in(code, _HIRAGANA):
        return "hiragana"
    if _in(code, _NO_SPACES):
        return "no_spaces"
    return "word" if char.isalpha() or _is_mark(char) else ""


def _is_mark(char: str) -> bool:
    """Combining marks (Devanagari vowel signs, Arabic harakat, ...) belong to the word they are in."""
    import unicodedata

    return unicodedata.category(char).startswith("M")


def _ngrams(run: str, n: int) -> list[str]:
    return [run[i : i + n] for i in range(len(run) - n + 1)]


def terms(text: str, stop_words: frozenset[str] | None = None) -> list[str]:
    """The terms of one text (see the module docstring), in order, repeats kept."""
    if stop_words is None:
        stop_words = english_stop_words()
    out: list[str] = []
    for script, chars in itertools.groupby(text.casefold(), key=_script):
        run = "".join(chars)
        if script == "word":
            if len(run) > 1 and run not in stop_words:
                out.append(run)
        elif script == "han":
            out.extend(_ngrams(run, 2))
        elif script == "katakana":
            if len(run) > 1:
                out.append(run)
        elif script == "no_spaces":
            out.extend(_ngrams(run, 3))
    return out


def class_tfidf(groups: Sequence[Sequence[str]], top: int = 8, min_texts: int = 2) -> list[list[str]]:
    """The ``top`` keywords of each group of texts, best first (see the module docstring).

    A term must occur in at least ``min_texts`` texts of a group to describe it (fewer, for
    groups smaller than that), so one unusual text does not name its group.
    """
    stop_words = english_stop_words()
    group_counts: list[Counter[str]] = []
    for texts in groups:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(set(terms(text, stop_words)))
        group_counts.append(counts)
    total: Counter[str] = Counter()
    for counts in group_counts:
        total.update(counts)
    n_texts = sum(len(texts) for texts in groups)
    keywords = []
    for texts, counts in zip(groups, group_counts, strict=True):
        needed = min(min_texts, len(texts))
        scored = []
        for term, count in counts.items():
            share = count / len(texts)
            score = math.sqrt(share) * math.log(share / (total[term] / n_texts))
            if count >= needed and score > 0:
                scored.append((score, term))
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        keywords.append([term for _, term in scored[:top]])
    return keywords


def english_stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)

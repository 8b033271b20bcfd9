"""Embedder: load EmbeddingGemma once, then turn texts into vectors.

The vocabulary follows sentence-transformers: ``encode``, ``encode_query``,
``encode_document``, ``similarity``. ``encode`` returns float32 numpy arrays:
(N, dim) for a list of texts, (dim,) for a single string.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gemvec.errors import InputError, PrecisionError
from gemvec.memory import return_freed_heap
from gemvec.model.checkpoint import (
    load_dense_weights,
    load_encoder_weights,
    read_head_config,
    read_quant_manifest,
    resolve_model_dir,
)
from gemvec.model.config import Gemma3TextConfig
from gemvec.model.fused import building_at_once, wait_for
from gemvec.model.gemma3 import Gemma3Encoder
from gemvec.model.head import MATRYOSHKA_DIMS, EmbeddingHead, truncate_and_normalize
from gemvec.precision import Precision, parse_precision, resolve_device
from gemvec.progress import progress_bar
from gemvec.prompts import Task, document_prompt, parse_task
from gemvec.tokenizer import MAX_TOKENS, TextTokenizer

Texts = str | Sequence[str]
# Padded tokens per forward pass. Smaller passes hold smaller activations and leave less freed
# memory in glibc's heap, at the same speed: figures in BENCHMARKS.md (benchmarks/memory_probe.py).
DEFAULT_MAX_BATCH_TOKENS = 1024
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# A saved int8 folder loads as int8 (weights dequantised per call) or int8-dynamic (int8 compute,
# its weights rotated at load). An int8-dynamic folder holds rotated weights: int8-dynamic only.
SAME_INT8_WEIGHTS = (Precision.INT8, Precision.INT8_DYNAMIC)


@dataclass(frozen=True)
class PreparedTexts:
    """Texts made ready for the model by :meth:`Embedder.prepare`: prompted and tokenised once.

    Batches of them concatenate (:meth:`concat`), which is how the batching worker merges
    requests; :meth:`Embedder.encode_prepared` embeds them without tokenising again.
    """

    texts: tuple[str, ...]  # with their prompts
    ids: tuple[list[int], ...]  # the tokenizer's ids, <bos>/<eos> included, truncated to its limit
    counts: tuple[int, ...]  # tokens per text before truncation
    truncated: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def tokens(self) -> int:
        """Tokens the model will see (after truncation)."""
        return sum(len(row) for row in self.ids)

    @classmethod
    def concat(cls, parts: Sequence[PreparedTexts]) -> PreparedTexts:
        """One PreparedTexts holding every part's texts, in order."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            texts=tuple(t for p in parts for t in p.texts),
            ids=tuple(row for p in parts for row in p.ids),
            counts=tuple(n for p in parts for n in p.counts),
            truncated=tuple(t for p in parts for t in p.truncated),
        )


@dataclass(frozen=True)
class _Batch:
    indices: list[int]  # positions in the caller's list
    input_ids: torch.Tensor  # (B, L), right-padded
    lengths: torch.Tensor  # (B,)


class Embedder:
    """EmbeddingGemma, loaded and ready to encode. Build one with :meth:`Embedder.load`."""

    def __init__(
        self,
        encoder: Gemma3Encoder,
        head: EmbeddingHead,
        tokenizer: TextTokenizer,
        *,
        model_name: str,
        precision: Precision,
        folder: Path | None = None,
    ) -> None:
        self.encoder = encoder.eval()
        self.head = head.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.precision = precision
        self.folder = folder
        self.dim: int = head.out_features

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] | None = None,
        precision: Precision | str | None = None,
        *,
        max_tokens: int = MAX_TOKENS,
        device: str | torch.device | None = None,
    ) -> Embedder:
        """Load a checkpoint folder or hub id (default ``$GEMVEC_MODEL``, else google/embeddinggemma-300m).

        ``precision``: "float32", "bfloat16", "int8" or "int4" (weights quantised at load, or
        read as saved by :meth:`save`), or "int8-dynamic" (int8 weights and activations: int8
        matmuls, :mod:`gemvec.model.int8_compute`); None picks the default for this CPU
        (:func:`gemvec.precision.default_precision`). "float16" is refused: it overflows.

        ``device``: "cpu", "cuda" or "cuda:N"; None means ``$GEMVEC_DEVICE``, else a CUDA GPU
        when PyTorch sees one (bfloat16 by default there), else the CPU. The embedding table
        stays in host memory either way; only the encoder's layers move to the device.
        """
        device = resolve_device(device)
        folder = resolve_model_dir(model)
        manifest = read_quant_manifest(folder)
        rotated = bool(manifest and manifest.get("rotation"))
        if manifest is not None:  # a saved quantised checkpoint: its precision is fixed
            saved = parse_precision(manifest["precision"])
            asked = parse_precision(precision) if precision is not None else None
            if saved in SAME_INT8_WEIGHTS and asked in SAME_INT8_WEIGHTS and not rotated:
                saved = asked  # the same int8 weights, computed either way
            if asked is not None and asked is not saved:
                raise PrecisionError(
                    f"{folder} holds {saved.value} weights; load it with precision={saved.value!r} "
                    "(or none), or load the original float checkpoint for another precision."
                )
            precision = saved
        precision = parse_precision(precision, device)
        config = Gemma3TextConfig.from_file(folder / "config.json")
        head_config = read_head_config(folder)
        # The tokenizer first: its parse peaks high, best before the weights are in memory.
        max_tokens = min(max_tokens, MAX_TOKENS, config.max_position_embeddings)
        tokenizer = TextTokenizer.from_folder(folder, max_tokens)
        weights, weights_file = load_encoder_weights(folder, config)
        bits = None if manifest is not None else precision.weight_bits
        encoder = Gemma3Encoder(
            config,
            weights,
            dtype=precision.compute_dtype,
            quantize_bits=bits,
            release=weights_file.release,
            int8_compute=precision.int8_compute,
            rotated=rotated,
        )
        head = EmbeddingHead(load_dense_weights(folder, head_config))
        encoder.to(device)
        head.to(device)
        return_freed_heap()  # the float32 copies weights passed through while fused or quantised
        name = str(model) if model is not None else str(folder)
        return cls(encoder, head, tokenizer, model_name=name, precision=precision, folder=folder)

    @property
    def device(self) -> torch.device:
        """Where the encoder's layers run (the embedding table always stays in host memory)."""
        return self.encoder.device

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write this model (quantised weights as they are) to a new checkpoint folder."""
        if self.folder is None:
            raise InputError(
                "This Embedder was not loaded from a folder; nothing to copy the tokenizer from."
            )
        from gemvec.model.save import save_checkpoint

        return save_checkpoint(
            self.encoder, self.folder, Path(folder), self.precision.value, self.precision.weight_bits
        )

    def build_fused_loops(self) -> bool:
        """Build the compiled loops between the matmuls now and wait for them (whether they run).

        Otherwise they are built on a background thread at the first large batch, which runs
        op by op meanwhile (:mod:`gemvec.model.fused`): call this first to time the steady
        state, or to have a long-lived process pay the build (seconds to a minute) up front."""
        with building_at_once() as builds:
            self.encode_document(["warm up " * 60] * 8, batch_size=8)
        return wait_for(builds)

    # -- encoding -------------------------------------------------------------------------

    def encode(
        self,
        texts: Texts,
        task: Task | str | None = None,
        *,
        prompt: str | None = None,
        dim: int | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool | None = None,
        truncate: bool = True,
    ) -> np.ndarray:
        """Embed texts. ``task`` selects the trained prompt; ``prompt`` is a custom prefix instead.

        With neither, texts are embedded as given (like sentence-transformers without a prompt).
        ``dim`` keeps the first values (Matryoshka: 768, 512, 256 or 128) and re-normalises.
        Texts over the token limit are truncated with one warning, or refused if ``truncate=False``.
        """
        prepared = self.prepare(texts, task, prompt=prompt, truncate=truncate)
        return self._encode_as_given(texts, prepared, dim, batch_size, normalize, show_progress)

    def encode_query(self, texts: Texts, **options) -> np.ndarray:
        """Embed search queries with the ``task: search result | query:`` prompt."""
        return self.encode(texts, task=Task.QUERY, **options)

    def encode_document(
        self, texts: Texts, titles: str | Sequence[str | None] | None = None, **options
    ) -> np.ndarray:
        """Embed documents with the ``title: {title or none} | text:`` prompt."""
        if options.get("task") is not None or options.get("prompt") is not None:
            raise InputError("encode_document() sets its own prompt; use encode() for task= or prompt=.")
        options.pop("task", None)
        options.pop("prompt", None)
        truncate = options.pop("truncate", True)
        encode_options = {name: options.pop(name) for name in _ENCODE_OPTIONS if name in options}
        if options:
            raise TypeError(f"Unknown options: {', '.join(options)}")
        prepared = self.prepare(texts, Task.DOCUMENT, titles=titles, truncate=truncate)
        return self._encode_as_given(texts, prepared, **encode_options)

    def prepare(
        self,
        texts: Texts,
        task: Task | str | None = None,
        *,
        prompt: str | None = None,
        titles: str | Sequence[str | None] | None = None,
        truncate: bool = True,
        warn: bool = True,
    ) -> PreparedTexts:
        """Add the prompts and tokenise, once; :meth:`encode_prepared` embeds the result.

        ``task``/``prompt`` as for :meth:`encode`; ``titles`` (one, or one per text) give
        documents their titles. Texts over the token limit are truncated with one warning, or
        without it if ``warn=False`` (the caller then reads ``truncated``), or refused if
        ``truncate=False``.
        """
        prompts = self._prompts(task, prompt, titles)
        _, items = _as_list(texts)
        if isinstance(prompts, str):
            prompted = [prompts + text for text in items]
        elif len(prompts) != len(items):
            raise InputError(f"Got {len(items)} texts but {len(prompts)} titles; pass one title per text.")
        else:
            prompted = [p + text for p, text in zip(prompts, items, strict=True)]
        if not prompted:
            return PreparedTexts((), (), (), ())
        encoded = self.tokenizer.encode(prompted)
        counts = [len(row) for row in encoded.ids]
        cut = [i for i, t in enumerate(encoded.truncated) if t]
        if cut:  # rare: their length before truncation, for messages
            for i, n in zip(cut, self.tokenizer.count([prompted[i] for i in cut]), strict=True):
                counts[i] = n
        if not truncate or warn:
            _report_truncation(encoded.truncated, self.tokenizer.max_tokens, truncate)
        return PreparedTexts(tuple(prompted), tuple(encoded.ids), tuple(counts), tuple(encoded.truncated))

    def encode_prepared(
        self,
        prepared: PreparedTexts,
        *,
        dim: int | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed texts from :meth:`prepare`: (N, dim) float32, in their order.

        Passes take texts of similar length, longest first, at most ``batch_size`` texts and
        DEFAULT_MAX_BATCH_TOKENS padded tokens each.
        """
        dim = check_dim(dim, self.dim)
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}.")
        out = np.empty((len(prepared), dim), dtype=np.float32)
        if not len(prepared):
            return out
        done = 0
        bar = progress_bar("embedding", enabled=show_progress, count=len(prepared))
        with torch.inference_mode(), bar as update:
            for batch in _length_sorted_batches(prepared.ids, batch_size, self.tokenizer.pad_id):
                hidden = self.encoder(batch.input_ids, batch.lengths)
                vectors = truncate_and_normalize(self.head(hidden, batch.lengths), dim, normalize)
                out[batch.indices] = vectors.cpu().numpy()
                done += len(batch.indices)
                if update:
                    update(done, len(prepared))
        return out

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix (len(a), len(b)); 1-D inputs count as one vector."""
        a2, b2 = np.atleast_2d(np.asarray(a, np.float32)), np.atleast_2d(np.asarray(b, np.float32))
        if a2.shape[1] != b2.shape[1]:
            raise InputError(f"Cannot compare {a2.shape[1]}-d and {b2.shape[1]}-d vectors; use the same dim.")
        a2 = a2 / np.maximum(np.linalg.norm(a2, axis=1, keepdims=True), 1e-12)
        b2 = b2 / np.maximum(np.linalg.norm(b2, axis=1, keepdims=True), 1e-12)
        return a2 @ b2.T

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, <bos>/<eos> included, before truncation (no prompt added)."""
        return self.tokenizer.count(list(texts))

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _prompts(
        task: Task | str | None, prompt: str | None, titles: str | Sequence[str | None] | None
    ) -> str | list[str]:
        """One prefix for every text, or (with titles) one per text."""
        if task is not None and prompt is not None:
            raise InputError("Pass either task= or prompt=, not both.")
        if titles is None:
            return prompt if prompt is not None else (parse_task(task).prompt if task is not None else "")
        if prompt is not None or (task is not None and parse_task(task) is not Task.DOCUMENT):
            raise InputError("titles= go with the document prompt only; drop task= and prompt=.")
        if isinstance(titles, str):
            return document_prompt(titles)
        return [document_prompt(title) for title in titles]

    def _encode_as_given(
        self,
        texts: Texts,
        prepared: PreparedTexts,
        dim: int | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """encode_prepared, with one vector for a single string as sentence-transformers does."""
        out = self.encode_prepared(
            prepared, dim=dim, normalize=normalize, batch_size=batch_size, show_progress=show_progress
        )
        return out[0] if isinstance(texts, str) else out


_ENCODE_OPTIONS = ("dim", "batch_size", "normalize", "show_progress")


def check_dim(dim: int | None, full: int) -> int:
    """Validate a Matryoshka dimension: the trained ones silently, others in 1..full with a warning."""
    if dim is None:
        return full
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= full:
        raise InputError(
            f"dim must be an integer from 1 to {full} (trained: {', '.join(map(str, MATRYOSHKA_DIMS))}); "
            f"got {dim!r}."
        )
    if dim not in MATRYOSHKA_DIMS and dim != full:
        warnings.warn(
            f"dim={dim}: EmbeddingGemma was trained for Matryoshka dims {MATRYOSHKA_DIMS}; "
            "other sizes work but lose more quality.",
            UserWarning,
            stacklevel=_caller_outside_gemvec(),
        )
    return int(dim)


def _as_list(texts: Texts) -> tuple[bool, list[str]]:
    if isinstance(texts, str):
        return True, [texts]
    if texts is None or isinstance(texts, (bytes, dict)) or not isinstance(texts, Sequence | Iterator):
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}.")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}] is {type(text).__name__}, not str; every text must be a string.")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InputError(
                    f"texts[{i}] has a lone surrogate at position {exc.start} (broken UTF-16?); "
                    "it cannot be tokenised. Decode the source text correctly."
                ) from None
    return False, items


def _report_truncation(truncated: list[bool], limit: int, allow: bool) -> None:
    count = sum(truncated)
    if not count:
        return
    if not allow:
        first = [i for i, t in enumerate(truncated) if t][:10]
        raise InputError(
            f"{count} text(s) exceed the {limit}-token limit (indices {first}); split them, or pass "
            "truncate=True to embed their first tokens."
        )
    warnings.warn(
        f"{count} of {len(truncated)} text(s) were longer than {limit} tokens and were truncated.",
        UserWarning,
        stacklevel=_caller_outside_gemvec(),
    )


def _caller_outside_gemvec() -> int:
    """For a warning raised by the calling function: the stacklevel of the first frame outside
    gemvec, so the warning names the user's line whichever entry point they called."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _length_sorted_batches(ids: Sequence[list[int]], batch_size: int, pad_id: int) -> Iterator[_Batch]:
    """Longest first so padding is minimal; batches also capped at DEFAULT_MAX_BATCH_TOKENS tokens."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    start = 0
    while start < len(order):
        longest = len(ids[order[start]])
        size = max(1, min(batch_size, DEFAULT_MAX_BATCH_TOKENS // longest))
        chunk = order[start : start + size]
        start += size
        input_ids = torch.full((len(chunk), longest), pad_id, dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
        lengths = torch.tensor([len(ids[i]) for i in chunk], dtype=torch.long)
        yield _Batch(chunk, input_ids, lengths)

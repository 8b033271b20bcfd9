"""Embedder: load EmbeddingGemma once, then turn texts into vectors.

The vocabulary follows sentence-transformers: ``encode``, ``encode_query``,
``encode_document``, ``similarity``. ``encode`` returns float32 numpy arrays:
(N, dim) for a list of texts, (dim,) for a single string.
"""

from __future__ import annotations

import os
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
from gemvec.model.gemma3 import Gemma3Encoder
from gemvec.model.head import MATRYOSHKA_DIMS, EmbeddingHead, truncate_and_normalize
from gemvec.progress import progress_bar
from gemvec.precision import Precision, parse_precision, resolve_device
from gemvec.prompts import Task, document_prompt, parse_task
from gemvec.tokenizer import MAX_TOKENS, TextTokenizer

Texts = str | Sequence[str]
# Padded tokens per forward pass. Smaller passes hold smaller activations and leave less
# freed memory in glibc's heap: on the 2-core AVX2 machine, 1,024 instead of 4,096 took peak
# RSS from 686 to 514 MiB (int4) and from 1,019 to 804 (float32) at the same speed
# (benchmarks/memory_probe.py --max-batch-tokens 4096 vs 1024; BENCHMARKS.md).
DEFAULT_MAX_BATCH_TOKENS = 1024


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
        read as saved by :meth:`save`); None picks the default for this CPU
        (:func:`gemvec.precision.default_precision`). "float16" is refused: it overflows.

        ``device``: "cpu", "cuda" or "cuda:N"; None means ``$GEMVEC_DEVICE``, else a CUDA GPU
        when PyTorch sees one (bfloat16 by default there), else the CPU. The embedding table
        stays in host memory either way; only the encoder's layers move to the device.
        """
        device = resolve_device(device)
        folder = resolve_model_dir(model)
        manifest = read_quant_manifest(folder)
        if manifest is not None:  # a saved quantised checkpoint: its precision is fixed
            saved = parse_precision(manifest["precision"])
            if precision is not None and parse_precision(precision) is not saved:
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
        if task is not None and prompt is not None:
            raise InputError("Pass either task= or prompt=, not both.")
        prefix = prompt if prompt is not None else (parse_task(task).prompt if task is not None else "")
        single, items = _as_list(texts)
        return self._encode_prompted(
            [prefix + t for t in items], single, dim, batch_size, normalize, show_progress, truncate
        )

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
        single, items = _as_list(texts)
        if titles is None or isinstance(titles, str):
            title_list: Sequence[str | None] = [titles] * len(items)
        else:
            title_list = list(titles)
            if len(title_list) != len(items):
                raise InputError(
                    f"Got {len(items)} texts but {len(title_list)} titles; pass one title per text."
                )
        prompted = [document_prompt(title) + text for title, text in zip(title_list, items, strict=True)]
        dim = options.pop("dim", None)
        batch_size = options.pop("batch_size", 32)
        normalize = options.pop("normalize", True)
        show_progress = options.pop("show_progress", None)
        truncate = options.pop("truncate", True)
        if options:
            raise TypeError(f"Unknown options: {', '.join(options)}")
        return self._encode_prompted(prompted, single, dim, batch_size, normalize, show_progress, truncate)

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

    def _encode_prompted(
        self,
        texts: list[str],
        single: bool,
        dim: int | None,
        batch_size: int,
        normalize: bool,
        show_progress: bool | None,
        truncate: bool,
    ) -> np.ndarray:
        dim = check_dim(dim, self.dim)
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}.")
        out = np.empty((len(texts), dim), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer.encode(texts)
        _report_truncation(encoded.truncated, self.tokenizer.max_tokens, truncate)
        done = 0
        bar = progress_bar("embedding", enabled=show_progress, count=len(texts))
        with torch.inference_mode(), bar as update:
            for batch in _length_sorted_batches(encoded.ids, batch_size, self.tokenizer.pad_id):
                hidden = self.encoder(batch.input_ids, batch.lengths)
                vectors = truncate_and_normalize(self.head(hidden, batch.lengths), dim, normalize)
                out[batch.indices] = vectors.cpu().numpy()
                done += len(batch.indices)
                if update:
                    update(done, len(texts))
        return out[0] if single else out


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
            stacklevel=3,
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
        stacklevel=4,
    )


def _length_sorted_batches(ids: list[list[int]], batch_size: int, pad_id: int) -> Iterator[_Batch]:
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


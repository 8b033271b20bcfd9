"""``POST /v1/embeddings``: validate, prompt, count tokens, batch, truncate per request, encode the reply."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import anyio
import numpy as np
import torch

from gemvec.embedder import Embedder, check_dim
from gemvec.errors import InputError
from gemvec.model.head import truncate_and_normalize
from gemvec.prompts import parse_task
from gemvec.server.batching import ModelWorker
from gemvec.server.errors import APIError
from gemvec.server.schemas import EmbeddingRequest
from gemvec.server.settings import ServerSettings

# Requests up to this many characters are tokenised on the event loop (well under a millisecond);
# bigger ones in a thread. On a busy machine every thread hop waits for a time slice.
INLINE_PREPARE_CHARS = 8192


def served_model_id(embedder: Embedder, override: str | None = None) -> str:
    """The name clients see: ``override``, else the checkpoint folder's name, else the hub id."""
    if override:
        return override
    name = embedder.model_name
    return Path(name).name if Path(name).is_dir() else name


def raw_embed_fn(embedder: Embedder):
    """What the worker runs on merged batches: full-size, unnormalised rows of already-prompted texts."""

    def embed(texts: list[str]) -> np.ndarray:
        return embedder.encode(texts, batch_size=32, normalize=False, show_progress=False, truncate=False)

    return embed


@dataclass
class _Prepared:
    texts: list[str]  # prompted
    tokens: list[int]
    dim: int


class EmbeddingService:
    def __init__(self, embedder: Embedder, worker: ModelWorker, settings: ServerSettings) -> None:
        self.embedder = embedder
        self.worker = worker
        self.settings = settings
        self.model_id = served_model_id(embedder, settings.model_id)

    async def create(self, request: EmbeddingRequest) -> dict:
        if sum(len(t) for t in request.texts()) <= INLINE_PREPARE_CHARS:
            prepared = self._prepare(request)  # microseconds: cheaper than a hop to another thread
        else:
            prepared = await anyio.to_thread.run_sync(self._prepare, request)
        vectors = await self.worker.embed(
            prepared.texts,
            sum(prepared.tokens),
            lambda rows: truncate_and_normalize(torch.from_numpy(rows), prepared.dim, True).numpy(),
        )
        if request.encoding_format == "base64":
            items = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            items = vectors.tolist()
        total = sum(prepared.tokens)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
            "model": self.model_id,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }

    def _prepare(self, request: EmbeddingRequest) -> _Prepared:
        """Checks that need the tokenizer; runs in a thread so the event loop stays free."""
        texts = request.texts()
        limits = self.settings
        if len(texts) > limits.max_inputs:
            raise APIError(
                400, f"{len(texts)} inputs in one request; the limit is {limits.max_inputs}.", param="input"
            )
        for i, text in enumerate(texts):
            if not text:
                where = "input" if isinstance(request.input, str) else f"input[{i}]"
                raise APIError(
                    400, f"{where} is an empty string; every input needs some text.", param="input"
                )
        try:
            task = parse_task(request.task)
        except InputError as exc:
            raise APIError(400, str(exc), param="task") from None
        try:
            dim = check_dim(request.dimensions, self.embedder.dim)
        except InputError as exc:
            raise APIError(400, str(exc), param="dimensions") from None
        prompted = [task.prompt + t for t in texts]
        tokens = self.embedder.count_tokens(prompted)
        limit = self.embedder.tokenizer.max_tokens
        too_long = [i for i, n in enumerate(tokens) if n > limit]
        if too_long:
            i = too_long[0]
            raise APIError(
                400,
                f"input[{i}] has {tokens[i]} tokens (prompt included); the model takes at most {limit}. "
                f"{len(too_long)} input(s) are too long: split them into shorter pieces.",
                param="input",
                code="context_length_exceeded",
            )
        if sum(tokens) > limits.max_request_tokens:
            raise APIError(
                400,
                f"The request holds {sum(tokens)} tokens; the limit is {limits.max_request_tokens} per "
                "request. Send the inputs in several requests.",
                param="input",
                code="request_too_large",
            )
        return _Prepared(prompted, tokens, dim)

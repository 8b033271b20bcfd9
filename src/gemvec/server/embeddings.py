"""``POST /v1/embeddings``: validate, prepare (prompt and tokenise once), batch, encode the reply."""

from __future__ import annotations

import base64
from pathlib import Path

from gemvec.batching import BatchWorker, prepare_off_loop
from gemvec.embedder import Embedder, PreparedTexts, check_dim
from gemvec.errors import InputError
from gemvec.prompts import parse_task
from gemvec.server.errors import APIError
from gemvec.server.schemas import EmbeddingRequest
from gemvec.server.settings import ServerSettings


def served_model_id(embedder: Embedder, override: str | None = None) -> str:
    """The name clients see: ``override``, else the checkpoint folder's name, else the hub id."""
    if override:
        return override
    name = embedder.model_name
    return Path(name).name if Path(name).is_dir() else name


class EmbeddingService:
    def __init__(self, embedder: Embedder, worker: BatchWorker, settings: ServerSettings) -> None:
        self.embedder = embedder
        self.worker = worker
        self.settings = settings
        self.model_id = served_model_id(embedder, settings.model_id)

    async def create(self, request: EmbeddingRequest) -> dict:
        chars = sum(len(t) for t in request.texts())
        prepared, dim = await prepare_off_loop(lambda: self._prepare(request), chars)
        vectors = await self.worker.embed(prepared, dim=dim)
        if request.encoding_format == "base64":
            items = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            items = vectors.tolist()
        total = sum(prepared.counts)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
            "model": self.model_id,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }

    def _prepare(self, request: EmbeddingRequest) -> tuple[PreparedTexts, int]:
        """Checks the request, tokenising it once; the prepared texts and the dimensions asked."""
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
        prepared = self.embedder.prepare(texts, task, warn=False)  # over the limit: refused below
        tokens = prepared.counts
        limit = self.embedder.tokenizer.max_tokens
        too_long = [i for i, cut in enumerate(prepared.truncated) if cut]
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
        return prepared, dim

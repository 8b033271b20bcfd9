"""What a server instance allows: limits, the API key, CORS, batching budgets."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    """Defaults follow OpenAI's embeddings limits where a CPU can live with them."""

    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_inputs: int = 2048  # texts per request (OpenAI: 2048)
    max_request_tokens: int = 131_072  # tokens per request, prompts included
    max_body_bytes: int = 16 * MiB
    max_batch_tokens: int = 16_384  # token budget when merging requests into one model batch
    max_batch_inputs: int = 256
    batch_gather_s: float = 0.02  # under load, wait this long for answered clients' next requests
    model_id: str | None = None  # the name clients see; default: the checkpoint folder's name
    read_timeout_s: float = 30.0  # to receive a whole request (headers and body) from its first byte
    # An idle kept-alive connection is closed after this long. Longer than the idle expiry of
    # common clients (httpx and the OpenAI SDK: 5 s), so the client drops an idle connection
    # first: a server closing at the same moment races the client's next request (ReadError).
    keep_alive_s: float = 15.0
    max_connections: int = 256  # past this many open connections, requests get 503

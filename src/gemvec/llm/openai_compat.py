"""Any OpenAI-compatible chat endpoint (llama.cpp's server, Ollama, vLLM, OpenAI, ...) over httpx."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from gemvec.errors import LLMError, require
from gemvec.llm.base import Message

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIChat:
    """Streams ``POST {base_url}/chat/completions``.

    ``base_url`` defaults to ``$GEMVEC_LLM_BASE_URL``, then ``$OPENAI_BASE_URL``; the key to
    ``$GEMVEC_LLM_API_KEY``, then ``$OPENAI_API_KEY`` (local servers usually need none).
    """

    def __init__(
        self, model: str, base_url: str | None = None, api_key: str | None = None, timeout: float = 300.0
    ) -> None:
        self.model = model
        self.base_url = (
            base_url
            or os.environ.get("GEMVEC_LLM_BASE_URL")
            or os.environ.get("OPENAI_BASE_URL")
            or DEFAULT_BASE_URL
        ).rstrip("/")
        self.api_key = api_key or os.environ.get("GEMVEC_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.name = f"openai:{model}@{self.base_url}"

    def stream(
        self, messages: list[Message], *, max_tokens: int = 512, temperature: float = 0.0
    ) -> Iterator[str]:
        httpx = require("httpx", "llm", "The OpenAI-compatible LLM client")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        url = f"{self.base_url}/chat/completions"
        try:
            with httpx.stream("POST", url, json=body, headers=headers, timeout=self.timeout) as response:
                if response.status_code >= 400:
                    detail = response.read().decode(errors="replace")[:500]
                    raise LLMError(f"{url} answered HTTP {response.status_code}: {detail}")
                for line in response.iter_lines():
                    piece = _delta(line)
                    if piece is None:
                        break
                    if piece:
                        yield piece
        except httpx.TransportError as exc:
            raise LLMError(
                f"Cannot reach the LLM at {self.base_url} ({type(exc).__name__}: {exc}). "
                "Is the server running? Set the URL with --llm openai:MODEL@URL or GEMVEC_LLM_BASE_URL."
            ) from None


def _delta(line: str) -> str | None:
    """The text in one server-sent-events line; None at ``[DONE]``; '' for anything else."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        return ""
    if "error" in event:
        raise LLMError(f"The LLM server reported an error: {event['error']}")
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""

"""Text generators for RAG behind one protocol, and ``make_generator`` to build one from a spec.

Specs: ``openai:MODEL@BASE_URL`` (or ``openai:MODEL`` with the URL from the environment),
``gguf:PATH`` (or a path ending in ``.gguf``), ``smollm2`` (the small local default).
Without a spec, ``$GEMVEC_LLM`` is used, else ``smollm2``.
"""

from __future__ import annotations

import os

from gemvec.errors import InputError
from gemvec.llm.base import Generator, Message, generate

__all__ = ["Generator", "Message", "generate", "make_generator"]

_CACHE: dict[str, Generator] = {}


def make_generator(spec: str | None = None, *, cache: bool = True) -> Generator:
    """A Generator for ``spec``. Local models are loaded once per process (``cache=False`` to reload)."""
    spec = (spec or os.environ.get("GEMVEC_LLM") or "smollm2").strip()
    if cache and spec in _CACHE:
        return _CACHE[spec]
    kind, _, rest = spec.partition(":")
    if kind == "openai" and rest:
        from gemvec.llm.openai_compat import OpenAIChat

        model, _, base_url = rest.partition("@")
        generator: Generator = OpenAIChat(model, base_url or None)
    elif (kind == "gguf" and rest) or spec.endswith(".gguf"):
        from gemvec.llm.gguf import LlamaCppChat

        generator = LlamaCppChat(rest if kind == "gguf" else spec)
    elif spec == "smollm2":
        from gemvec.llm.gguf import LlamaCppChat
        from gemvec.llm.models import find_smollm2_gguf

        # A failed download is remembered: later calls fail at once (cache=False tries again).
        generator = LlamaCppChat(find_smollm2_gguf(download=True, retry=not cache))
    else:
        raise InputError(
            f"Unknown LLM spec {spec!r}. Use openai:MODEL@BASE_URL, gguf:PATH/TO/model.gguf, or smollm2."
        )
    if cache and not spec.startswith("openai:"):
        _CACHE[spec] = generator
    return generator

"""A local GGUF model run in-process with llama-cpp-python (the ``llm`` extra)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from gemvec.errors import InputError, require
from gemvec.llm.base import Message

REPEAT_PENALTY = 1.15


THREADS_ENV = "GEMVEC_LLM_THREADS"


class LlamaCppChat:
    """Loads the GGUF once; the chat template comes from the file's metadata.

    Threads: ``n_threads``, else ``$GEMVEC_LLM_THREADS``, else up to 4 cores. On a busy machine
    one thread can cost less CPU than several that wait on each other.
    """

    def __init__(self, path: str | os.PathLike[str], n_ctx: int = 4096, n_threads: int | None = None) -> None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise InputError(f"GGUF model {path} does not exist.")
        llama_cpp = require("llama_cpp", "llm", "Running a local GGUF model")
        self.path = path
        self.name = f"gguf:{path}"
        self._llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads or int(os.environ.get(THREADS_ENV) or 0) or min(os.cpu_count() or 1, 4),
            seed=0,
            verbose=False,
        )

    def stream(
        self, messages: list[Message], *, max_tokens: int = 512, temperature: float = 0.0
    ) -> Iterator[str]:
        chunks = self._llm.create_chat_completion(
            messages=messages,
            stream=True,
            max_tokens=max_tokens,
            temperature=temperature,
            # Small local models loop under greedy decoding (SmolLM2-135M copied table rows for
            # the rest of its budget on the README's own question); llama.cpp's classic penalty.
            repeat_penalty=REPEAT_PENALTY,
        )
        for chunk in chunks:
            piece = chunk["choices"][0].get("delta", {}).get("content")
            if piece:
                yield piece

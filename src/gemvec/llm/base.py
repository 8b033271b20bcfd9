"""The one small protocol every text generator implements: chat messages in, text pieces out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypedDict, runtime_checkable


class Message(TypedDict):
    role: str  # "system", "user" or "assistant"
    content: str


@runtime_checkable
class Generator(Protocol):
    """A chat model. ``stream`` yields the answer piece by piece as it is generated."""

    name: str

    def stream(
        self, messages: list[Message], *, max_tokens: int = 512, temperature: float = 0.0
    ) -> Iterator[str]: ...


def generate(generator: Generator, messages: list[Message], **options: float | int) -> str:
    """The whole answer at once."""
    return "".join(generator.stream(messages, **options))  # type: ignore[arg-type]

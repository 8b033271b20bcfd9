"""Request bodies. Strict: wrong types are refused (no "1" -> 1), unknown fields are refused."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

SearchMode = Literal["hybrid", "dense", "keyword"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EmbeddingRequest(_Strict):
    """``POST /v1/embeddings``: OpenAI's fields plus gemvec's ``task``."""

    input: StrictStr | list[StrictStr] = Field(description="A text or a list of texts.")
    model: StrictStr | None = Field(None, description="Accepted for compatibility; the served model answers.")
    dimensions: StrictInt | None = Field(None, description="Matryoshka size: 768, 512, 256 or 128.")
    encoding_format: Literal["float", "base64"] = "float"
    task: StrictStr = Field(
        "document",
        description="gemvec extension: the prompt (document, query, classification, clustering, ...).",
    )
    user: StrictStr | None = Field(None, description="Accepted for compatibility; ignored.")

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        """One clear message per mistake instead of pydantic's per-union-member list."""
        if isinstance(value, str):
            _check_unicode(value, "input")
            return value
        if not isinstance(value, list):
            raise ValueError(f"must be a string or a list of strings, not {_json_type(value)}")
        if not value:
            raise ValueError("the list of inputs is empty")
        if all(isinstance(v, (int, list)) and not isinstance(v, bool) for v in value):
            raise ValueError("token-id arrays are not supported; send the text itself")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"input[{i}] is {_json_type(item)}; every input must be a string")
            _check_unicode(item, f"input[{i}]")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def _check_unicode(text: str, where: str) -> None:
    """JSON can smuggle in lone surrogates (``"\\ud800"``), which no tokenizer accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} is not valid Unicode (it holds a lone surrogate escape)") from None


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class _Retrieval(_Strict):
    k: Annotated[StrictInt, Field(ge=1, le=100)] = 10
    mode: SearchMode = "hybrid"
    filters: dict[str, Any] | None = Field(
        None, description='Metadata filters, e.g. {"lang": "en"} or {"path": "docs/*"}.'
    )


class SearchRequest(_Retrieval):
    """``POST /v1/search``."""

    query: Annotated[StrictStr, Field(min_length=1)]


class AskRequest(_Retrieval):
    """``POST /v1/ask``: retrieval-augmented answer with numbered sources."""

    question: Annotated[StrictStr, Field(min_length=1)]
    k: Annotated[StrictInt, Field(ge=1, le=20)] = 4
    stream: StrictBool = False
    max_tokens: Annotated[StrictInt, Field(ge=1, le=8192)] = 512
    temperature: Annotated[StrictFloat | StrictInt, Field(ge=0, le=2)] = 0.0
    answer_mode: Literal["auto", "generated", "extractive"] = "auto"  # gemvec.rag.ask

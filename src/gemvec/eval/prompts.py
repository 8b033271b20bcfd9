"""Which prompt each evaluation task type embeds its texts with.

By default these are the prompts the checkpoint ships for MTEB, read from its
``config_sentence_transformers.json`` (keys ``STS``, ``Classification``, ``Clustering``,
``BitextMining``, ``query``, ``document``), falling back to gemvec's Task table. For
EmbeddingGemma: queries ``task: search result | query: ``, documents ``title: none | text: ``,
STS ``task: sentence similarity | query: ``, and so on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from gemvec.prompts import Task

TITLE_FIELD = "{title}"


@dataclass(frozen=True)
class EvalPrompts:
    query: str  # retrieval queries
    document: str  # retrieval documents; "{title}" in it is replaced by each document's title
    sts: str
    classification: str
    clustering: str
    bitext: str

    @classmethod
    def defaults(cls) -> EvalPrompts:
        return cls(
            query=Task.QUERY.prompt,
            document=Task.DOCUMENT.prompt,
            sts=Task.SIMILARITY.prompt,
            classification=Task.CLASSIFICATION.prompt,
            clustering=Task.CLUSTERING.prompt,
            bitext=Task.QUERY.prompt,
        )

    @classmethod
    def for_model(cls, folder: Path | None) -> EvalPrompts:
        """The checkpoint's MTEB prompts where it names them, gemvec's defaults otherwise."""
        prompts = cls.defaults()
        config = folder / "config_sentence_transformers.json" if folder is not None else None
        if config is None or not config.exists():
            return prompts
        shipped = json.loads(config.read_text(encoding="utf-8")).get("prompts") or {}
        names = {
            "query": ("Retrieval-query", "query"),
            "document": ("Retrieval-document", "document"),
            "sts": ("STS",),
            "classification": ("Classification",),
            "clustering": ("Clustering",),
            "bitext": ("BitextMining",),
        }
        found = {}
        for attr, keys in names.items():
            for key in keys:
                if isinstance(shipped.get(key), str):
                    found[attr] = shipped[key]
                    break
        return replace(prompts, **found)

    def override(self, prompt: str | None = None, document_prompt: str | None = None) -> EvalPrompts:
        """``prompt`` replaces every non-document prompt; ``document_prompt`` the document one."""
        result = self
        if prompt is not None:
            result = replace(
                result, query=prompt, sts=prompt, classification=prompt, clustering=prompt, bitext=prompt
            )
        if document_prompt is not None:
            result = replace(result, document=document_prompt)
        return result

    def documents(self, titles: list[str], texts: list[str]) -> list[str]:
        """Prompted document texts.

        With ``{title}`` in the document prompt, each title goes there (``none`` when empty) and the
        text follows. Otherwise the title is joined to the text as MTEB does:
        ``(title + " " + text).strip()``.
        """
        if TITLE_FIELD in self.document:
            return [
                self.document.replace(TITLE_FIELD, title.strip() or "none") + text
                for title, text in zip(titles, texts, strict=True)
            ]
        return [
            self.document + (title + " " + text).strip() for title, text in zip(titles, texts, strict=True)
        ]

"""An MCP server over a collection: search, ask and collection info as tools for MCP clients.

Needs the ``mcp`` extra (the official SDK, ``pip install 'gemvec[mcp]'``). ``gemvec mcp -c notes``
serves it over stdio, the transport desktop clients and IDEs start servers with, or over
streamable HTTP on 127.0.0.1 with ``--http``. Read-only unless built with ``allow_writes``,
which adds an ``add_texts`` tool.

    with Collection.open("notes") as coll:
        run(build_server(coll, generator="openai:llama3@http://127.0.0.1:11434/v1"))

Tool calls run on the SDK's worker threads; embedding runs one call at a time, and so does
generation (a local model is not safe to share), on a lock of its own so a long answer does
not hold up searches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

from gemvec import __version__
from gemvec.errors import GemvecError, InputError, require

require("mcp.server.mcpserver", "mcp", "The MCP server")

from mcp.server.mcpserver import MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp.types import ToolAnnotations  # noqa: E402
from pydantic import Field  # noqa: E402

if TYPE_CHECKING:
    from gemvec.llm.base import Generator
    from gemvec.store import Collection

HOST = "127.0.0.1"  # streamable HTTP binds loopback only: the tools carry no authentication
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# Adding texts never deletes anything, but a text given an id that is already stored replaces it.
ADDS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)

Mode = Annotated[
    Literal["hybrid", "dense", "keyword"],
    Field(description="hybrid (default) fuses dense and keyword rankings; keyword is BM25 on the words."),
]
Filters = Annotated[
    dict[str, Any] | None,
    Field(description='Metadata filter: {"key": value} or {"key": [any, of]}; also path, title, source.'),
]


@contextmanager
def _tool_errors() -> Iterator[None]:
    """gemvec's errors reach the client as tool errors with their message (what to change)."""
    try:
        yield
    except GemvecError as exc:
        raise ToolError(str(exc)) from exc


class CollectionTools:
    """The tools' bodies over one open collection; ``generator`` (a Generator or a spec for
    ``make_generator``, None: ``$GEMVEC_LLM`` or its default) is built on the first ask."""

    def __init__(self, coll: Collection, generator: Generator | str | None = None) -> None:
        self.coll = coll
        self.generator = generator
        self._model = threading.Lock()
        self._generating = threading.Lock()

    def search(
        self,
        query: Annotated[str, Field(description="What to look for, in any language.")],
        k: Annotated[int, Field(ge=1, le=50, description="How many passages to return.")] = 5,
        mode: Mode = "hybrid",
        filters: Filters = None,
    ) -> dict[str, Any]:
        """Search the collection for the passages most relevant to a query, best first.

        Each hit has the passage text, its score, and where it comes from (path or source,
        title, chunk number, character offsets, metadata).
        """
        with _tool_errors(), self._model:
            hits = self.coll.search(query, k=k, mode=mode, filters=filters)
        return {"collection": self.coll.name, "query": query, "hits": [hit.to_dict() for hit in hits]}

    def ask(
        self,
        question: Annotated[str, Field(description="The question to answer from the collection.")],
        k: Annotated[int, Field(ge=1, le=20, description="How many passages the answer may use.")] = 4,
        mode: Mode = "hybrid",
        filters: Filters = None,
        max_tokens: Annotated[int, Field(ge=1, le=4096, description="Longest answer, in tokens.")] = 512,
    ) -> dict[str, Any]:
        """Answer a question from the collection with a local or configured language model.

        The answer cites its numbered sources as [n]; each source comes with its text and
        location, and ``grounded`` says whether the answer cites any.
        """
        with _tool_errors():
            llm = self._llm()
            with self._model:  # retrieval only: nothing is generated before the stream is read
                stream = self.coll.ask(
                    question, llm, k=k, mode=mode, filters=filters, stream=True, max_tokens=max_tokens
                )
        with self._generating:
            try:
                for _ in stream:
                    pass
            except Exception as exc:
                raise ToolError(f"The LLM failed: {type(exc).__name__}: {exc}") from exc
        assert stream.answer is not None
        return {"collection": self.coll.name, **stream.answer.to_dict()}

    def collection_info(self) -> dict[str, Any]:
        """Describe the collection: documents and chunks, embedding model and dimension, index
        kind, chunking, the folders it was indexed from, and its size on disk."""
        with _tool_errors():
            return self.coll.info()

    def add_texts(
        self,
        texts: Annotated[list[str], Field(min_length=1, description="The texts to add, one document each.")],
        ids: Annotated[
            list[str] | None,
            Field(description="Their ids; a stored id is replaced (default: a content hash)."),
        ] = None,
        titles: Annotated[list[str | None] | None, Field(description="Their titles.")] = None,
        metadata: Annotated[
            list[dict[str, Any]] | None, Field(description="Their metadata, searchable with filters.")
        ] = None,
    ) -> dict[str, Any]:
        """Add texts to the collection as documents: chunked, embedded and searchable at once.

        Returns how many were added, updated (same id, new text), unchanged or duplicates.
        """
        with _tool_errors():
            for name, values in (("ids", ids), ("titles", titles), ("metadata", metadata)):
                if values is not None and len(values) != len(texts):
                    raise InputError(f"{name} has {len(values)} entries for {len(texts)} texts.")
            with self._model:
                report = self.coll.add_texts(texts, ids=ids, titles=titles, metadata=metadata)
        return report.to_dict()

    def _llm(self) -> Generator:
        from gemvec.llm import Generator, make_generator

        if not isinstance(self.generator, Generator):
            self.generator = make_generator(self.generator)
        return self.generator


def build_server(
    coll: Collection, *, generator: Generator | str | None = None, allow_writes: bool = False
) -> MCPServer:
    """An MCP server whose tools search, ask and describe ``coll`` (and add texts with ``allow_writes``)."""
    tools = CollectionTools(coll, generator)
    documents, _ = coll.count()
    server: MCPServer = MCPServer(
        "gemvec",
        title=f"gemvec: {coll.name}",
        version=__version__,
        instructions=(
            f"Tools over the gemvec collection '{coll.name}' ({documents} documents): `search` finds "
            "relevant passages (semantic and keyword), `ask` answers a question with cited sources, "
            "`collection_info` describes what the collection holds."
            + (" `add_texts` stores new documents." if allow_writes else "")
        ),
        log_level="WARNING",
    )
    server.add_tool(tools.search, title="Search the collection", annotations=READ_ONLY)
    server.add_tool(tools.ask, title="Answer from the collection", annotations=READ_ONLY)
    server.add_tool(tools.collection_info, title="Describe the collection", annotations=READ_ONLY)
    if allow_writes:
        server.add_tool(tools.add_texts, title="Add texts to the collection", annotations=ADDS)
    return server


def run(server: MCPServer, *, http_port: int | None = None) -> None:
    """Serve over stdio until the client closes it, or over streamable HTTP at
    ``http://127.0.0.1:PORT/mcp`` until SIGINT/SIGTERM."""
    if http_port is None:
        server.run("stdio")
    else:
        server.run("streamable-http", host=HOST, port=http_port)

"""`gemvec mcp`: the official MCP SDK's client lists the tools and calls them, over stdio and HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

pytest.importorskip("mcp.server.mcpserver")

from mcp import Client, ClientSession, StdioServerParameters, stdio_client

from gemvec.cli import app
from gemvec.integrations.mcp_server import build_server

DOCS = {
    "fox": "The quick brown fox jumps over the lazy dog.",
    "cats": "Cats sleep most of the day and hunt at night.",
    "rust": "Rust programs manage memory with ownership and borrowing.",
}
READ_TOOLS = {"search", "ask", "collection_info"}


class ScriptedLLM:
    """A deterministic Generator: quotes source [1] and cites it, piece by piece."""

    name = "scripted"

    def stream(self, messages, *, max_tokens: int = 512, temperature: float = 0.0):
        first = messages[-1]["content"].split("[1]", 1)[1].splitlines()[1]
        yield from [*(word + " " for word in first.split(" ")), "[1]"]


@pytest.fixture(scope="module")
def collection(tiny_embedder, tmp_path_factory):
    from gemvec.store import Collection

    coll = Collection.create(tmp_path_factory.mktemp("mcp") / "docs", embedder=tiny_embedder)
    coll.add_texts(list(DOCS.values()), ids=list(DOCS), metadata=[{"topic": k} for k in DOCS])
    yield coll
    coll.close()


def call(server: Any, tool: str, arguments: dict[str, Any]) -> Any:
    """One tool call through the SDK's in-memory client."""

    async def go() -> Any:
        async with Client(server) as client:
            return await client.call_tool(tool, arguments)

    return anyio.run(go)


def tool_names(server: Any) -> set[str]:
    async def go() -> set[str]:
        async with Client(server) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    return anyio.run(go)


def test_stdio_server_lists_the_tools_and_searches(collection, tmp_path):
    """A real `gemvec mcp` process, driven by the SDK's ClientSession over stdio_client."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gemvec", "mcp", "-c", str(collection.folder)],
        env=dict(os.environ),
    )
    log = tmp_path / "server.log"

    async def session() -> tuple[Any, Any, Any]:
        with anyio.fail_after(120), log.open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                tools = await s.list_tools()
                found = await s.call_tool("search", {"query": "brown fox dog", "k": 3})
                keyword = await s.call_tool("search", {"query": "ownership borrowing", "mode": "keyword"})
                return tools, found, keyword

    tools, found, keyword = anyio.run(session)
    assert {tool.name for tool in tools.tools} == READ_TOOLS, log.read_text()
    assert all(tool.annotations.read_only_hint for tool in tools.tools)
    assert not found.is_error, found.content
    expected = collection.search("brown fox dog", k=3)
    hits = found.structured_content["hits"]
    assert [h["source"] for h in hits] == [h.source for h in expected]
    assert hits[0]["text"] == expected[0].text and hits[0]["metadata"] == expected[0].metadata
    assert [h["source"] for h in keyword.structured_content["hits"]] == ["rust"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_server_answers_on_loopback(collection):
    port = free_port()
    cmd = [sys.executable, "-m", "gemvec", "mcp", "-c", str(collection.folder), "--http", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # listening once a connection is accepted
            assert proc.poll() is None, proc.communicate()[1]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the MCP HTTP server did not start"
                time.sleep(0.1)

        async def info() -> Any:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                return await client.call_tool("collection_info", {})

        result = anyio.run(info)
        assert result.structured_content["documents"] == len(DOCS)
        assert result.structured_content["name"] == collection.name
    finally:
        proc.terminate()
        proc.wait(60)


def test_ask_answers_with_cited_sources(collection):
    result = call(build_server(collection, generator=ScriptedLLM()), "ask", {"question": "fox?", "k": 2})
    assert not result.is_error, result.content
    answer = result.structured_content
    first = answer["sources"][0]
    assert answer["citations"] == [1] and answer["grounded"] is True and first["cited"]
    assert [s["number"] for s in answer["sources"]] == [1, 2] and first["text"] in DOCS.values()
    assert answer["answer"] == first["text"] + " [1]"


def test_errors_reach_the_client_with_their_message(collection):
    server = build_server(collection, generator="no-such-llm")
    empty = call(server, "search", {"query": "  "})
    assert empty.is_error and "query is empty" in empty.content[0].text
    bad_mode = call(server, "search", {"query": "fox", "mode": "fuzzy"})
    assert bad_mode.is_error and "hybrid" in bad_mode.content[0].text  # the schema's choices
    no_llm = call(server, "ask", {"question": "fox?"})
    assert no_llm.is_error and "Unknown LLM spec 'no-such-llm'" in no_llm.content[0].text
    too_many = call(server, "search", {"query": "fox", "k": 500})
    assert too_many.is_error


def test_writes_only_when_allowed(tiny_embedder, tmp_path):
    from gemvec.store import Collection

    with Collection.create(tmp_path / "w", embedder=tiny_embedder) as coll:
        assert tool_names(build_server(coll)) == READ_TOOLS
        server = build_server(coll, allow_writes=True)
        assert tool_names(server) == READ_TOOLS | {"add_texts"}
        added = call(server, "add_texts", {"texts": ["Penguins cannot fly."], "ids": ["penguin"]})
        assert added.structured_content["added"] == 1
        assert [h.source for h in coll.search("penguins fly", k=1, mode="keyword")] == ["penguin"]
        mismatch = call(server, "add_texts", {"texts": ["a", "b"], "ids": ["only-one"]})
        assert mismatch.is_error and "ids has 1 entries for 2 texts" in mismatch.content[0].text
        assert coll.count() == (1, 1)


def test_without_the_extra_the_command_says_what_to_install(collection, monkeypatch):
    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)  # import fails as if not installed
    monkeypatch.delitem(sys.modules, "gemvec.integrations.mcp_server")
    result = CliRunner().invoke(app, ["mcp", "-c", str(collection.folder)])
    assert result.exit_code == 2
    assert "pip install 'gemvec[mcp]'" in result.output


def test_missing_collection_is_a_clear_error(tmp_path: Path):
    result = CliRunner().invoke(app, ["mcp", "-c", str(tmp_path / "none")])
    assert result.exit_code == 2 and "No collection" in result.output

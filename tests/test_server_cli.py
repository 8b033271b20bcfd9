"""`gemvec serve` as a real process: loopback bind, API key from the environment, graceful SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from gemvec.cli import app  # noqa: E402

KEY = "cli-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_serve_help_lists_the_options():
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--model",
        "--precision",
        "--collection",
        "--api-key",
        "--cors-origin",
    ):
        assert option in result.output


def test_serve_missing_collection_is_a_clear_error(tiny_model_dir, tmp_path):
    result = CliRunner().invoke(app, ["serve", "--model", str(tiny_model_dir), "-c", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "No collection" in result.output


class ServeProcess:
    """`python -m gemvec serve --port 0`, with its URL read from uvicorn's start-up line."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        cmd = [sys.executable, "-m", "gemvec", "serve", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.url = self._wait_for(r"Uvicorn running on (http://\S+)")

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def _wait_for(self, pattern: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.log.append(line)
            if match := re.search(pattern, line):
                return match.group(1)
        raise AssertionError(f"no {pattern!r} from the server; log:\n{''.join(self.log)}")

    def in_flight(self) -> float:
        text = httpx.get(self.url + "/metrics", headers=AUTH).text
        return float(re.search(r"^gemvec_http_requests_in_flight (\S+)$", text, re.MULTILINE).group(1))


def test_serve_binds_loopback_and_finishes_in_flight_requests_on_sigterm(tiny_model_dir, tiny_embedder):
    server = ServeProcess("--model", str(tiny_model_dir), env={"GEMVEC_API_KEY": KEY})
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/health").json() == {"status": "ok", "auth": True}  # no names
        assert httpx.get(server.url + "/health", headers=AUTH).json()["auth"] is True
        assert httpx.post(server.url + "/v1/embeddings", json={"input": "a"}).status_code == 401

        texts = [" ".join(["The quick brown fox jumps over the lazy dog."] * 60)] * 8  # a slow request
        result: dict = {}

        def slow_request() -> None:
            response = httpx.post(
                server.url + "/v1/embeddings", json={"input": texts}, headers=AUTH, timeout=300
            )
            result["status"], result["body"] = response.status_code, response.json()

        worker = threading.Thread(target=slow_request)
        worker.start()
        deadline = time.monotonic() + 60
        while server.in_flight() < 2 and "status" not in result and time.monotonic() < deadline:
            time.sleep(0.01)  # in flight: the slow request plus this /metrics call
        server.proc.send_signal(signal.SIGTERM)
        worker.join(300)
        # uvicorn re-raises the signal once it has shut down cleanly, so the exit is "killed by SIGTERM"
        assert server.proc.wait(120) in (0, -signal.SIGTERM)
        server._wait_for(r"(Application shutdown complete)")  # lifespan ran: the model worker drained
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert result["status"] == 200, result
    assert len(result["body"]["data"]) == len(texts)
    assert result["body"]["data"][0]["embedding"] == pytest.approx(
        tiny_embedder.encode_document(texts[0]).tolist(), abs=1e-4
    )
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health", timeout=5)


@pytest.mark.filterwarnings("ignore:dim=64")
def test_serve_loads_the_collections_model(tiny_model_dir, tiny_embedder, tmp_path):
    from gemvec.cli.serve_cmd import _load
    from gemvec.store import Collection

    folder = tmp_path / "coll"
    with Collection.create(folder, embedder=tiny_embedder) as coll:
        coll.add_texts(["The quick brown fox."], ids=["fox"])
    for model, precision in ((None, None), (None, "float32"), (str(tiny_model_dir), "float32")):
        embedder, coll = _load(model, precision, str(folder))
        assert embedder.folder == tiny_model_dir
        assert coll.embedder is embedder
        assert [h.source for h in coll.search("fox", k=1)] == ["fox"]
        coll.close()

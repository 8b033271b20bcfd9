"""Slow and idle clients are cut off, and connections are capped (#21.10): real uvicorn on 127.0.0.1."""

from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from gemvec.server import ServerSettings, create_app  # noqa: E402
from gemvec.server.background import BackgroundServer  # noqa: E402

PATIENCE_S = 30  # how long a test waits for the server to act; the server's own timeouts are 1 s


def closed_by_server(sock: socket.socket) -> bool:
    """Wait (bounded) until the server closes ``sock``: recv returns b'' or the connection resets."""
    sock.settimeout(PATIENCE_S)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def open_socket(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


@pytest.fixture(scope="module")
def server(tiny_embedder):
    settings = ServerSettings(read_timeout_s=1.0, keep_alive_s=1.0, max_connections=4)
    with BackgroundServer(create_app(tiny_embedder, settings)) as running:
        yield running


def test_a_client_that_sends_nothing_or_drips_headers_is_disconnected(server) -> None:
    silent = open_socket(server.url)
    dripping = open_socket(server.url)
    dripping.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    half_body = open_socket(server.url)
    half_body.sendall(b'POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"input"')
    for sock in (silent, dripping, half_body):
        with sock:
            assert closed_by_server(sock)
    assert httpx.post(server.url + "/v1/embeddings", json={"input": "still here"}).status_code == 200


def test_connections_past_the_cap_get_503_until_the_stalled_ones_are_cut(server) -> None:
    stalled = [open_socket(server.url) for _ in range(4)]
    try:
        for sock in stalled:
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # incomplete: holds a connection
        time.sleep(0.2)  # let the server accept them
        over = httpx.get(server.url + "/health")
        assert over.status_code == 503
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            if httpx.get(server.url + "/health").status_code == 200:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the server kept refusing after the stalled connections' read deadline")
    finally:
        for sock in stalled:
            sock.close()

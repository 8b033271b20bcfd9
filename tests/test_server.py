"""The HTTP server on the tiny model: real uvicorn on 127.0.0.1, the openai client, every error path."""

from __future__ import annotations

import asyncio
import base64
import json
import re

import numpy as np
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from gemvec.prompts import Task  # noqa: E402
from gemvec.server import ServerSettings, create_app  # noqa: E402
from gemvec.server.background import BackgroundServer  # noqa: E402

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs.",
    "日本語のテキストです。",
]
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def server(tiny_embedder):
    with BackgroundServer(create_app(tiny_embedder)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def vectors(response) -> np.ndarray:
    """Rows of an embeddings response; an explicit base64 request leaves the decoding to the caller."""
    assert [d.index for d in response.data] == list(range(len(response.data)))
    rows = [
        np.frombuffer(base64.b64decode(d.embedding), "<f4") if isinstance(d.embedding, str) else d.embedding
        for d in response.data
    ]
    return np.array(rows, dtype=np.float32)


def post(server, body, path: str = "/v1/embeddings", **kwargs) -> httpx.Response:
    if isinstance(body, bytes):
        kwargs.setdefault("headers", {"Content-Type": "application/json"})
        return httpx.post(server.url + path, content=body, timeout=60, **kwargs)
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)


def assert_error(response: httpx.Response, status: int, *, param: str | None = None, text: str = "") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param
    assert text.lower() in error["message"].lower()
    return error


# -- the OpenAI API, through the official client ----------------------------------------------------


def test_float_embeddings_match_encode_document(client, tiny_embedder):
    response = client.embeddings.create(model="anything", input=TEXTS, encoding_format="float")
    np.testing.assert_allclose(vectors(response), tiny_embedder.encode_document(TEXTS), atol=1e-5)
    assert response.model == "tiny"
    assert response.object == "list" and response.data[0].object == "embedding"
    prompted = [Task.DOCUMENT.prompt + t for t in TEXTS]
    assert response.usage.prompt_tokens == sum(tiny_embedder.count_tokens(prompted))
    assert response.usage.total_tokens == response.usage.prompt_tokens


def test_base64_is_the_clients_default_and_matches(client, tiny_embedder):
    response = client.embeddings.create(model="tiny", input=TEXTS)  # the client asks for base64
    np.testing.assert_allclose(vectors(response), tiny_embedder.encode_document(TEXTS), atol=1e-5)


def test_base64_is_little_endian_float32(server, tiny_embedder):
    body = post(server, {"input": TEXTS[0], "encoding_format": "base64"}).json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert len(raw) == 4 * tiny_embedder.dim
    np.testing.assert_allclose(
        np.frombuffer(raw, dtype="<f4"), tiny_embedder.encode_document(TEXTS[0]), atol=1e-5
    )


@pytest.mark.filterwarnings("ignore:dim=")
@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_dimensions_truncate_and_renormalise(client, tiny_embedder, encoding_format):
    response = client.embeddings.create(
        model="tiny", input=TEXTS, dimensions=32, encoding_format=encoding_format
    )
    got = vectors(response)
    assert got.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, tiny_embedder.encode_document(TEXTS, dim=32), atol=1e-5)


def test_task_extension_selects_the_prompt(client, tiny_embedder):
    response = client.embeddings.create(
        model="tiny", input=TEXTS, encoding_format="float", extra_body={"task": "query"}
    )
    np.testing.assert_allclose(vectors(response), tiny_embedder.encode_query(TEXTS), atol=1e-5)
    response = client.embeddings.create(model="tiny", input="x", extra_body={"task": "clustering"})
    np.testing.assert_allclose(vectors(response)[0], tiny_embedder.encode("x", task="clustering"), atol=1e-5)


def test_single_string_input(client, tiny_embedder):
    response = client.embeddings.create(model="tiny", input=TEXTS[1], encoding_format="float")
    assert len(response.data) == 1
    np.testing.assert_allclose(vectors(response)[0], tiny_embedder.encode_document(TEXTS[1]), atol=1e-5)


def test_a_request_is_tokenised_once(server, tiny_embedder, monkeypatch):
    """Validation counts the tokens the model then embeds: no second tokenisation."""
    tokenizer, calls = tiny_embedder.tokenizer, []

    def counted(name: str, original):
        def call(texts):
            calls.append((name, len(texts)))
            return original(texts)

        return call

    for owner, name in ((tokenizer, "encode"), (tokenizer, "count"), (tokenizer.backend, "ids")):
        monkeypatch.setattr(owner, name, counted(name, getattr(owner, name)))
    body = post(server, {"input": TEXTS, "task": "query", "encoding_format": "float"}).json()
    assert calls == [("encode", 3), ("ids", 3)]
    np.testing.assert_allclose(
        [d["embedding"] for d in body["data"]], tiny_embedder.encode_query(TEXTS), atol=1e-5
    )


def test_models_health_and_page(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["dim"] == 64 and health["collection"] is None
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="search-input"' in page.text and 'id="ask-input"' in page.text


# -- bad input: always a 4xx with an OpenAI error body, and the worker keeps serving -------------

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog."] * 250)  # > 2048 tokens

BAD_REQUESTS = [
    (b"{", None, "not valid json"),
    (b'{"input": "a",}', None, "not valid json"),
    (b"", None, "needs a json body"),
    (b"[]", None, ""),
    (b'"just a string"', None, ""),
    ({"model": "tiny"}, "input", "missing"),
    ({"input": 3}, "input", "string or a list of strings"),
    ({"input": None}, "input", "string or a list of strings"),
    ({"input": {"text": "a"}}, "input", "string or a list of strings"),
    ({"input": []}, "input", "empty"),
    ({"input": ""}, "input", "empty"),
    ({"input": ["a", ""]}, "input", "input[1]"),
    ({"input": ["a", 2]}, "input", "input[1]"),
    ({"input": [1, 2, 3]}, "input", "token-id"),
    ({"input": [[1, 2], [3]]}, "input", "token-id"),
    ({"input": "a", "bogus": 1}, "bogus", "unknown field"),
    ({"input": "a", "dimensions": "32"}, "dimensions", "integer"),
    ({"input": "a", "dimensions": 32.5}, "dimensions", "integer"),
    ({"input": "a", "dimensions": 0}, "dimensions", "dim must be"),
    ({"input": "a", "dimensions": 4096}, "dimensions", "dim must be"),
    ({"input": "a", "dimensions": True}, "dimensions", "integer"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format", "float"),
    ({"input": "a", "task": "poetry"}, "task", "unknown task"),
    ({"input": "a", "task": 5}, "task", "string"),
    ({"input": "a", "model": 5}, "model", "string"),
    ({"input": LONG_TEXT}, "input", "tokens"),
    (b'{"input": "\\ud800"}', "input", "unicode"),
    (b'{"input": ["ok", "a\\udfffb"]}', "input", "input[1]"),
    (b"[" * 100_000, None, ""),
    (b"\xff\xfe", None, ""),
]


@pytest.mark.parametrize(("body", "param", "text"), BAD_REQUESTS, ids=lambda v: repr(v)[:40])
def test_bad_requests_get_400_with_openai_error_body(server, body, param, text):
    assert_error(post(server, body), 400, param=param, text=text)


def test_context_length_code(server):
    error = assert_error(post(server, {"input": ["ok", LONG_TEXT]}), 400, param="input", text="input[1]")
    assert error["code"] == "context_length_exceeded"


def test_unknown_path_method_and_content_type(server):
    assert_error(httpx.get(server.url + "/v2/nothing"), 404, text="unknown path")
    assert_error(httpx.get(server.url + "/v1/embeddings"), 405, text="not allowed")
    response = httpx.post(
        server.url + "/v1/embeddings", content=b"input=a", headers={"Content-Type": "text/plain"}
    )
    assert 400 <= response.status_code < 500
    assert set(response.json()["error"]) == ERROR_KEYS


def test_openai_client_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="tiny", input=[], encoding_format="float")
    assert "empty" in info.value.message


@pytest.fixture(scope="module")
def limited(tiny_embedder):
    settings = ServerSettings(max_inputs=4, max_request_tokens=200, max_body_bytes=4096)
    with BackgroundServer(create_app(tiny_embedder, settings)) as running:
        yield running


def test_limits(limited):
    assert_error(post(limited, {"input": ["a"] * 5}), 400, param="input", text="limit is 4")
    many_tokens = ["The quick brown fox jumps over the lazy dog. " * 6] * 4
    error = assert_error(post(limited, {"input": many_tokens}), 400, text="limit is 200")
    assert error["code"] == "request_too_large"
    assert_error(post(limited, {"input": "x" * 5000}), 413, text="4096-byte limit")

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"input": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    response = httpx.post(limited.url + "/v1/embeddings", content=chunks(), timeout=60)
    assert_error(response, 413)
    assert post(limited, {"input": ["a", "b"]}).status_code == 200


def test_server_still_answers_after_every_error(client, tiny_embedder):
    response = client.embeddings.create(model="tiny", input=TEXTS, encoding_format="float")
    np.testing.assert_allclose(vectors(response), tiny_embedder.encode_document(TEXTS), atol=1e-5)


# -- API key and CORS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tiny_embedder):
    settings = ServerSettings(api_key="s3cret-key", cors_origins=("http://localhost:3000",))
    with BackgroundServer(create_app(tiny_embedder, settings)) as running:
        yield running


def test_api_key(keyed, tiny_embedder):
    body = {"input": "a"}
    assert_error(post(keyed, body), 401, text="missing api key")
    error = assert_error(post(keyed, body, headers={"Authorization": "Bearer wrong"}), 401, text="invalid")
    assert error["code"] == "invalid_api_key"
    assert_error(post(keyed, body, headers={"Authorization": "Basic s3cret-key"}), 401)
    assert_error(httpx.get(keyed.url + "/metrics"), 401)
    assert httpx.get(keyed.url + "/health").json() == {"status": "ok", "auth": True}  # no names without key
    full = httpx.get(keyed.url + "/health", headers={"Authorization": "Bearer s3cret-key"}).json()
    assert full["auth"] is True and full["model"] == "tiny"
    for docs in ("/docs", "/openapi.json", "/redoc"):
        assert_error(httpx.get(keyed.url + docs), 401)
    assert (
        httpx.get(keyed.url + "/openapi.json", headers={"Authorization": "Bearer s3cret-key"}).status_code
        == 200
    )
    assert httpx.get(keyed.url + "/").status_code == 200
    good = openai.OpenAI(base_url=keyed.url + "/v1", api_key="s3cret-key", max_retries=0)
    response = good.embeddings.create(model="tiny", input="a", encoding_format="float")
    np.testing.assert_allclose(vectors(response)[0], tiny_embedder.encode_document("a"), atol=1e-5)
    bad = openai.OpenAI(base_url=keyed.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="tiny", input="a")


def preflight(server, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    return httpx.options(server.url + "/v1/embeddings", headers=headers)


def test_cors_only_when_asked(server, keyed):
    assert "access-control-allow-origin" not in preflight(server, "http://localhost:3000").headers
    allowed = preflight(keyed, "http://localhost:3000")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "access-control-allow-origin" not in preflight(keyed, "http://evil.example").headers


# -- load: many concurrent clients, zero errors, requests merged into batches ----------------------


def metric(server, name: str, headers: dict | None = None) -> float:
    text = httpx.get(server.url + "/metrics", headers=headers).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_bounded_load_zero_errors_and_batching(tiny_embedder):
    clients, per_client = 64, 20
    texts = [f"request {i} about the quick brown fox" for i in range(clients * per_client)]

    async def run(url: str) -> list[tuple[int, int, list[float] | None]]:
        # httpx's own idle expiry (5 s, as the OpenAI SDK's): the server keeps idle connections
        # longer (ServerSettings.keep_alive_s), so none is closed under a request going out on it
        # (with both at 5 s, CI once hit that race as a ReadError)
        limits = httpx.Limits(max_connections=clients)
        assert limits.keepalive_expiry < ServerSettings().keep_alive_s
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:

            async def one_client(c: int) -> list[tuple[int, int, list[float] | None]]:
                out = []
                for r in range(per_client):
                    i = c * per_client + r
                    response = await http.post(
                        "/v1/embeddings", json={"input": texts[i], "encoding_format": "float"}
                    )
                    ok = response.status_code == 200
                    out.append(
                        (i, response.status_code, response.json()["data"][0]["embedding"] if ok else None)
                    )
                return out

            results = await asyncio.gather(*(one_client(c) for c in range(clients)))
        return [item for part in results for item in part]

    with BackgroundServer(create_app(tiny_embedder)) as running:
        results = asyncio.run(run(running.url))
        batches = metric(running, "gemvec_batch_requests_count")
        merged = metric(running, "gemvec_batch_requests_sum")
        health = httpx.get(running.url + "/health").json()
    assert [status for _, status, _ in results] == [200] * len(texts)
    got = np.array([vector for _, _, vector in sorted(results, key=lambda r: r[0])], dtype=np.float32)
    sample = slice(None, None, 16)  # every answer went to its own request: check a sample of them
    np.testing.assert_allclose(got[sample], tiny_embedder.encode_document(texts[sample]), atol=1e-4)
    assert merged == len(texts)
    assert batches < len(texts)  # concurrent requests were merged into shared batches
    assert health["status"] == "ok"


def test_metrics_prometheus_text(server):
    post(server, {"input": ["a", "b"]})
    text = httpx.get(server.url + "/metrics").text
    assert httpx.get(server.url + "/metrics").headers["content-type"].startswith("text/plain")
    for family in (
        "gemvec_http_requests_total",
        "gemvec_http_request_duration_seconds",
        "gemvec_batch_size",
        "gemvec_batch_tokens",
        "gemvec_embedded_tokens_total",
    ):
        assert f"# TYPE {family} " in text
    assert re.search(
        r'gemvec_http_requests_total\{method="POST",path="/v1/embeddings",status="200"\} \d+', text
    )
    assert re.search(
        r'gemvec_http_requests_total\{method="POST",path="/v1/embeddings",status="400"\} \d+', text
    )
    assert re.search(
        r'gemvec_http_request_duration_seconds_bucket\{path="/v1/embeddings",le="\+Inf"\} \d+', text
    )
    assert metric(server, "gemvec_embedded_inputs_total") >= 2
    # every sample line is NAME{labels} VALUE
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? [-+0-9.eInf]+", line), line


def test_json_error_body_is_json(server):
    response = post(server, b"{")
    assert response.headers["content-type"] == "application/json"
    json.loads(response.text)


@pytest.mark.real_model
def test_real_model_through_the_server_reproduces_the_model_card(real_embedder):
    planets = [
        "Venus is often called Earth's twin because of its similar size and proximity.",
        "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
        "Jupiter, the largest planet in our solar system, has a prominent red spot.",
        "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
    ]
    with BackgroundServer(create_app(real_embedder)) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
        query = vectors(
            client.embeddings.create(
                model="embeddinggemma-300m",
                input="Which planet is known as the Red Planet?",
                extra_body={"task": "query"},
            )
        )
        docs = vectors(client.embeddings.create(model="embeddinggemma-300m", input=planets))
    np.testing.assert_allclose(query @ docs.T, [[0.3011, 0.6359, 0.4930, 0.4889]], atol=2e-3)

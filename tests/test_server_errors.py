"""gemvec errors answer with the status and code their class carries (gemvec.errors)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import FastAPI
from fastapi.testclient import TestClient

from gemvec import errors
from gemvec.server import create_app
from gemvec.server.errors import install_error_handlers

pytestmark = pytest.mark.filterwarnings("ignore:dim=64")  # the tiny model's size is not a trained one


@pytest.mark.parametrize(
    ("error", "status", "code", "kind"),
    [
        (errors.InputError("bad input"), 400, "invalid_value", "invalid_request_error"),
        (errors.CollectionNotFoundError("missing"), 404, "collection_not_found", "not_found_error"),
        (errors.CollectionLockedError("locked"), 409, "collection_locked", "conflict_error"),
        (errors.LLMError("the LLM is down"), 502, "llm_error", "upstream_error"),
        (errors.WorkerStoppedError("stopping"), 503, "shutting_down", "service_unavailable"),
        (errors.MissingExtraError("faiss", "search", "Search"), 501, "missing_extra", "server_error"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_each_error_class_brings_its_status_and_code(error, status, code, kind):
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fail")
    async def fail() -> None:
        raise error

    response = TestClient(app).get("/fail")
    assert response.status_code == status
    assert response.json()["error"] == {"message": str(error), "type": kind, "param": None, "code": code}


class LockedCollection:
    """A collection another process is writing: every search is refused."""

    name = "busy"

    def search(self, query: str, **options):
        raise errors.CollectionLockedError("Collection 'busy' is being written by another process.")


def test_a_locked_collection_answers_409_and_the_worker_keeps_serving(tiny_embedder):
    app = create_app(tiny_embedder, collection=LockedCollection())
    with TestClient(app) as client:
        response = client.post("/v1/search", json={"query": "fox"})
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "collection_locked"
        assert "another process" in response.json()["error"]["message"]
        assert client.post("/v1/embeddings", json={"input": "still here"}).status_code == 200

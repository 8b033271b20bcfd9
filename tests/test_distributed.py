"""gemvec.distributed without a cluster: pool sizing, the actor's batches, the ordered stream, the
collection's embed hook, error mapping and the CLI's refusals. The Ray cluster tests are in
test_distributed_cluster.py."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_store import write_docs
from typer.testing import CliRunner

from gemvec import Embedder
from gemvec.cli.app import app
from gemvec.distributed.actor import Columns, EmbedBatches, EmbedSpec
from gemvec.distributed.cluster import ActorPool
from gemvec.distributed.errors import RayJobError, ray_failure
from gemvec.distributed.files import input_format
from gemvec.distributed.indexing import OrderedVectors
from gemvec.errors import GemvecError, InputError, ModelNotFoundError
from gemvec.store import Collection

pa = pytest.importorskip("pyarrow")


def test_the_pool_fills_the_cluster_by_cpus_or_gpus() -> None:
    assert ActorPool().resolve({"CPU": 8.0}) == (8, 1.0, 0.0)
    assert ActorPool(cpus=2).resolve({"CPU": 7.0}) == (3, 2, 0.0)
    assert ActorPool().resolve({"CPU": 32.0, "GPU": 4.0}) == (4, 1.0, 1.0)
    assert ActorPool(cpus=8, gpus=0.5).resolve({"CPU": 32.0, "GPU": 4.0}) == (4, 8, 0.5)
    assert ActorPool(gpus=0).resolve({"CPU": 3.0, "GPU": 1.0}) == (3, 1.0, 0)
    assert ActorPool(actors=5).resolve({"CPU": 2.0}) == (5, 1.0, 0.0)
    assert ActorPool(cpus=4).resolve({"CPU": 2.0}) == (1, 4, 0.0)  # one actor waits for a bigger node
    for bad in (ActorPool(actors=0), ActorPool(cpus=0), ActorPool(gpus=-1)):
        with pytest.raises(InputError):
            bad.resolve({"CPU": 2.0})


def test_the_spec_refuses_bad_combinations_before_any_actor_starts() -> None:
    EmbedSpec().check(with_titles=True)
    EmbedSpec(task="query").check(with_titles=False)
    EmbedSpec(prompt="custom: ").check(with_titles=False)
    for spec, titles in [
        (EmbedSpec(task="query", prompt="x: "), False),
        (EmbedSpec(task="query"), True),
        (EmbedSpec(prompt="x: "), True),
        (EmbedSpec(task="no such task"), False),
        (EmbedSpec(max_batch_tokens=0), False),
    ]:
        with pytest.raises(InputError):
            spec.check(with_titles=titles)


def table(texts: list, titles: list | None = None):
    columns = {"id": list(range(10, 10 + len(texts))), "text": texts}
    if titles is not None:
        columns["title"] = titles
    return pa.table(columns)


@pytest.mark.filterwarnings("ignore:dim=32")  # the tiny model is 64-d: no trained dim below it
def test_the_actor_embeds_a_batch_as_the_embedder_does(tiny_model_dir: Path, tiny_embedder: Embedder) -> None:
    texts, titles = ["The quick brown fox.", "Mars is red.", "Le renard."], ["Fox", None, "Renard"]
    spec = EmbedSpec(model=str(tiny_model_dir), precision="float32", dim=32)
    actor = EmbedBatches(spec, Columns(title="title", keep=("id",)), use_gpu=False)
    out = actor(table(texts, titles))
    assert out.column_names == ["id", "embedding"]
    assert out.column("id").to_pylist() == [10, 11, 12]
    vectors = np.asarray(out.column("embedding").to_pylist(), dtype=np.float32)
    expected = tiny_embedder.encode_document(texts, titles=titles, dim=32)
    assert vectors.shape == (3, 32)
    assert np.allclose(vectors, expected, atol=1e-5)

    query = EmbedBatches(EmbedSpec(model=str(tiny_model_dir), task="query"), Columns(), use_gpu=False)
    out = query(table(texts))
    assert out.column_names == ["id", "text", "embedding"]  # every input column kept by default
    got = np.asarray(out.column("embedding").to_pylist(), dtype=np.float32)
    assert np.allclose(got, tiny_embedder.encode_query(texts), atol=1e-5)

    with pytest.raises(InputError, match="must hold strings"):
        actor(table(["fine", None]))
    with pytest.raises(InputError, match="no column 'body'"):
        EmbedBatches(spec, Columns(text="body"), use_gpu=False)(table(texts))


def batch(rows: range, dim: int = 2, node: str = "n1"):
    vectors = np.arange(len(rows) * dim, dtype=np.float32).reshape(len(rows), dim) + 100 * rows.start
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.table(
        {
            "row": pa.array(list(rows), type=pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
            "node": [node] * len(rows),
        }
    )


def test_the_stream_hands_out_vectors_in_plan_order_across_batch_edges() -> None:
    texts = [f"t{i}" for i in range(7)]
    titles: list[str | None] = [None] * 7
    nodes: Counter[str] = Counter()
    early_first = iter([batch(range(3, 7), node="n2"), batch(range(0, 3))])  # an actor ran them so
    stream = OrderedVectors(texts, titles, early_first, nodes)
    first = stream(texts[:2], titles[:2])
    rest = stream(texts[2:], titles[2:])
    assert np.array_equal(first, [[0.0, 1.0], [2.0, 3.0]])
    assert rest.shape == (5, 2)
    assert np.array_equal(rest[0], [4.0, 5.0]) and np.array_equal(rest[1], [300.0, 301.0])
    assert nodes == {"n1": 3, "n2": 4}


def test_early_batches_past_the_memory_budget_wait_on_disk_and_are_removed() -> None:
    texts = [f"t{i}" for i in range(8)]
    titles: list[str | None] = [None] * 8
    late_first_batch = iter([batch(range(2, 4)), batch(range(4, 6)), batch(range(6, 8)), batch(range(0, 2))])
    one_batch = 2 * 2 * 4  # rows x dim x float32
    stream = OrderedVectors(texts, titles, late_first_batch, Counter(), early_memory_bytes=one_batch)
    first = stream(texts[:1], titles[:1])  # waits for rows 0..1: rows 2..7 arrive first
    early = stream._early
    spilled = sorted(p.name for p in Path(early._folder.name).iterdir())
    assert early.in_memory_bytes == one_batch and spilled == ["4.npy", "6.npy"]
    rest = stream(texts[1:], titles[1:])
    assert np.array_equal(first, [[0.0, 1.0]])
    assert np.array_equal(rest[:, 0], [2.0, 200.0, 202.0, 400.0, 402.0, 600.0, 602.0])
    folder = Path(early._folder.name)
    assert not list(folder.iterdir()) and early.in_memory_bytes == 0
    stream.close()
    assert not folder.exists()


@pytest.mark.parametrize(
    ("batches", "asked", "message"),
    [
        ([batch(range(0, 2)), batch(range(1, 3))], ["t0", "t1", "t2"], "rows 1..2 twice"),
        ([batch(range(0, 1)), batch(range(2, 3))], ["t0", "t1"], "without rows 1.. of 3"),  # a gap
        ([batch(range(0, 2))], ["t0", "t1", "t2"], "without rows 2.. of 3"),
        ([batch(range(0, 3))], ["t0", "other"], "other chunks than it planned"),
    ],
)
def test_the_stream_refuses_lost_repeated_or_unplanned_rows(batches, asked, message) -> None:
    texts = ["t0", "t1", "t2"]
    stream = OrderedVectors(texts, [None] * 3, iter(batches), Counter())
    with pytest.raises(GemvecError, match=message):
        stream(asked, [None] * len(asked))


def test_the_collection_hook_sees_every_chunk_first_and_gives_the_same_collection(
    tmp_path: Path, tiny_embedder: Embedder
) -> None:
    write_docs(tmp_path / "docs", 12)
    (tmp_path / "docs" / "long.txt").write_text(" ".join(f"Sentence {i} is here." for i in range(300)))
    planned: list[tuple[list[str], list[str | None]]] = []
    asked: list[str] = []

    def embed_documents(texts: list[str], titles: list[str | None]):
        planned.append((texts, titles))

        def embed(batch: list[str], batch_titles: list[str | None]) -> np.ndarray:
            asked.extend(batch)
            return tiny_embedder.encode_document(batch, titles=batch_titles)

        return embed

    rows = []
    for name, hook in (("plain", None), ("hooked", embed_documents)):
        with Collection.create(tmp_path / name, embedder=tiny_embedder, chunk_tokens=32, overlap=4) as coll:
            report = coll.add([tmp_path / "docs"], embed_documents=hook)
            assert report.added == 13
            rows.append(coll.conn.execute("SELECT id, document_id, position, vector FROM chunks").fetchall())
    assert len(planned) == 1 and planned[0][0] == asked and len(asked) == len(rows[0]) > 13
    plain, hooked = rows
    assert [r[:3] for r in plain] == [r[:3] for r in hooked]
    cosines = [
        np.frombuffer(a[3], np.float32) @ np.frombuffer(b[3], np.float32)
        for a, b in zip(plain, hooked, strict=True)
    ]
    assert min(cosines) > 0.9999


def test_errors_raised_on_a_node_keep_their_class_and_message() -> None:
    user = (
        "ray::MapWorker.submit()\n  File ...\ngemvec.errors.InputError: Column 'text' must hold strings.\n\n"
    )
    found = ray_failure(RuntimeError(user + "ray.exceptions.UserCodeException: UDF failed.\nTo change retry"))
    assert type(found) is InputError and str(found) == "Column 'text' must hold strings."
    died = "The actor died: error raised in its creation task\ngemvec.errors.ModelNotFoundError: No model."
    assert type(ray_failure(RuntimeError(died))) is ModelNotFoundError
    own = InputError("as raised")
    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = own
    assert ray_failure(wrapped) is own
    other = ray_failure(RuntimeError("Traceback ...\nray.exceptions.NodeDiedError: node 1 died\nmore advice"))
    assert isinstance(other, RayJobError) and "NodeDiedError: node 1 died" in str(other)


def test_inputs_are_parquet_or_json_lines(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    (tmp_path / "a").mkdir()
    pq.write_table(table(["x"]), tmp_path / "a" / "part.parquet")
    (tmp_path / "a" / "_SUCCESS").write_text("")  # markers some writers leave are ignored
    (tmp_path / "b.jsonl").write_text('{"id": 1, "text": "x"}\n')
    (tmp_path / "c.csv").write_text("id,text\n")
    assert input_format([tmp_path / "a"]) == "read_parquet"
    assert input_format([tmp_path / "b.jsonl"]) == "read_json"
    for bad in ([tmp_path / "a", tmp_path / "b.jsonl"], [tmp_path / "missing"], [tmp_path / "c.csv"]):
        with pytest.raises(InputError):
            input_format(bad)


def gemvec(*args: str):
    return CliRunner().invoke(app, list(args))


def test_without_ray_installed_the_commands_say_how_to_install_it(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import fails as if not installed
    write_docs(tmp_path / "docs", 2)
    result = gemvec(
        "index", str(tmp_path / "docs"), "-c", str(tmp_path / "c"), "-m", str(tiny_model_dir), "--ray"
    )
    assert result.exit_code == 2
    assert "pip install 'gemvec[ray]'" in result.output
    assert "optional 'ray' dependencies" in result.output
    assert not (tmp_path / "c").exists()  # nothing created before Ray was found
    result = gemvec("embed", "--ray", "-i", str(tmp_path / "docs"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "pip install 'gemvec[ray]'" in result.output


def test_ray_options_go_with_ray(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_docs(tmp_path / "docs", 2)
    result = gemvec("index", str(tmp_path / "docs"), "-c", str(tmp_path / "c"), "--ray-actors", "2")
    assert result.exit_code == 2 and "go with --ray" in result.output
    result = gemvec("embed", "--ray", "some text")
    assert result.exit_code == 2 and "-i FILE_OR_FOLDER" in result.output


def test_an_address_nothing_listens_at_is_refused_at_once() -> None:
    pytest.importorskip("ray")
    import socket

    from gemvec.distributed import connect

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InputError, match=f"Cannot reach a Ray cluster at 127.0.0.1:{port}"):
        connect(f"127.0.0.1:{port}")

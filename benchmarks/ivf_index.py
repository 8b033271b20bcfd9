"""IVF benchmark: gemvec.store.ivf built the distributed way (train, shards, merge on disk), searched mmapped.

Data (``--data``):

* ``clustered``: ``--n`` synthetic vectors, exactly those of ``ann_index.py`` (2,000 random unit
  centres plus noise, seed 0), so recall compares with its HNSW figures;
* ``scifact``: the 5,183 SciFact abstracts embedded by the real model (``$EMBEDDINGGEMMA_DIR``,
  at ``--precision``, documents cut at ``--max-tokens``, cached at 768-d under ``--cache``,
  default the gemvec cache), queried by the 300 claims;
* ``scifact-gaussian``: ``--n`` vectors drawn from the Gaussian with the SciFact documents' mean
  and covariance (their anisotropy, not their clusters), queried by draws from the claims'
  Gaussian: a continuum that IVF lists cut through, harder for IVF than real data;
* ``random``: random unit vectors, for build time, size and latency only: in 256 dims they have
  no neighbour structure, every vector is about as far as any other, and recall means nothing.

Ground truth is exact inner-product search. The index is trained on a sample, filled by
``--shards`` shard files, merged into one data file and opened memory-mapped in a fresh state;
each query (one thread, one at a time) fetches ``k × factor + 5`` candidates over ``nprobe``
lists and rescores them with the float32 vectors, as a collection does from SQLite (here from
RAM). Prints build time, bytes per vector, memory while searching, and per nprobe the p50/p95
latency and recall@10 after rescoring (and of the codes alone).

    python benchmarks/ivf_index.py --n 1000000 --dim 256 --factory auto --nprobe 8,16,32,64,128
    python benchmarks/ivf_index.py --data scifact --dim 256 --factory IVF128,SQ8 --precision bfloat16 \\
        --cache /tmp/gemvec-bench --nprobe 8,16,24,32,40,48,64,128
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
from ann_index import clustered  # the same data as the HNSW benchmark

from gemvec.home import cache_home
from gemvec.model.head import truncate_and_normalize
from gemvec.store import ivf
from gemvec.store.vectors import IndexSpec, VectorIndex, rescore

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def scifact_vectors(
    model_dir: str, dim: int, max_tokens: int, precision: str | None, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """(documents, claims) of SciFact embedded by the real model, cached at full size (768-d).

    Documents are ``title | text`` cut at ``max_tokens`` (CPU time); claims use the query prompt.
    The cache (``cache_dir``, default the gemvec cache) is named by precision and token limit.
    """
    from gemvec import Embedder

    if precision is None:  # name the cache by the precision this CPU would pick
        from gemvec.precision import default_precision

        precision = default_precision().value
    folder = cache_dir or cache_home() / "bench"
    cache = folder / f"scifact-768d-{max_tokens}tok-{precision}.npz"
    if not cache.exists():
        corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines()]
        claims = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").read_text().splitlines()]
        embedder = Embedder.load(model_dir, precision, max_tokens=max_tokens)
        start, cpu = time.perf_counter(), time.process_time()
        docs = embedder.encode_document(
            [d["text"] for d in corpus],
            titles=[d["title"] for d in corpus],
            batch_size=16,
            show_progress=False,
        )
        queries = embedder.encode_query(claims, batch_size=16, show_progress=False)
        print(
            f"embedded SciFact ({len(corpus)} documents, {len(claims)} claims, {embedder.precision.value}) "
            f"in {time.perf_counter() - start:.0f} s, {time.process_time() - cpu:.0f} CPU s",
            flush=True,
        )
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(cache, docs=docs, queries=queries)
    data = np.load(cache)
    return truncate_and_normalize(data["docs"], dim), truncate_and_normalize(data["queries"], dim)


def gaussian_like(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors drawn from the Gaussian with ``real``'s mean and covariance."""
    mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
    out = np.empty((n, real.shape[1]), np.float32)
    for start in range(0, n, 100_000):
        block = rng.multivariate_normal(mean, cov, size=min(100_000, n - start), method="cholesky")
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def load_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(args.seed)
    if args.data in ("scifact", "scifact-gaussian"):
        model = args.model or os.environ.get("EMBEDDINGGEMMA_DIR")
        if not model:
            raise SystemExit(f"--data {args.data} needs --model or $EMBEDDINGGEMMA_DIR")
        docs, claims = scifact_vectors(model, args.dim, args.max_tokens, args.precision, args.cache)
        if args.data == "scifact":
            return docs, claims
        return gaussian_like(docs, args.n, rng), gaussian_like(claims, args.queries, rng)
    if args.data == "random":
        centres = rng.standard_normal((args.n + args.queries, args.dim), dtype=np.float32)
        data = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        return data[: args.n], data[args.n :]
    centres = rng.standard_normal((2000, args.dim), dtype=np.float32)  # as ann_index.py, step by step
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return clustered(args.n, args.dim, centres, rng), clustered(args.queries, args.dim, centres, rng)


def memory_kib() -> dict[str, int]:
    """Anonymous (heap) and file-backed (mapped pages touched) resident memory of this process."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile"):
                fields[name] = int(value.split()[0])
    return fields


def build(base: np.ndarray, factory: str, shards: int, folder: Path) -> tuple[Path, dict[str, float]]:
    """Train, write shards (as workers would), merge on disk; the header path and the time of each step."""
    ids = np.arange(len(base), dtype=np.int64)
    times = {}
    start = time.perf_counter()
    rows = np.random.default_rng(1).permutation(len(base))[: ivf.train_size(factory)]
    trained = ivf.train_ivf(base[np.sort(rows)], base.shape[1], factory)
    faiss.write_index(trained, str(folder / "trained.faiss"))
    times["train_s"] = time.perf_counter() - start
    start = time.perf_counter()
    paths = []
    for i, part in enumerate(np.array_split(ids, shards)):
        paths.append(folder / f"shard-{i}.faiss")
        ivf.write_shard(folder / "trained.faiss", part, base[part], paths[-1])
    times["shards_s"] = time.perf_counter() - start
    start = time.perf_counter()
    header = ivf.merge_shards(folder / "trained.faiss", paths, folder)
    times["merge_s"] = time.perf_counter() - start
    for path in paths:
        path.unlink()
    return header, times


def measure(
    search: Callable[[np.ndarray, int], np.ndarray],
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    factor: int,
    k: int = 10,
) -> dict:
    """Latency (one query at a time) and recall@10 of ``search(query, n) -> candidate ids``, rescored."""
    latencies, hits, code_hits = [], 0, 0
    fetch = k * factor + 5
    for qi in range(len(queries)):
        q = queries[qi : qi + 1]
        start = time.perf_counter()
        cand = search(q, fetch)
        cand = cand[cand >= 0]
        _, top = rescore(q[0], cand, base[cand], k)
        latencies.append(time.perf_counter() - start)
        hits += len(set(top.tolist()) & set(truth[qi].tolist()))
        code_hits += len(set(cand[:k].tolist()) & set(truth[qi].tolist()))
    lat = np.array(latencies) * 1000
    return {
        "candidates": fetch,
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p95_ms": round(float(np.percentile(lat, 95)), 3),
        "recall_at_10": round(hits / (k * len(queries)), 4),
        "recall_at_10_codes_only": round(code_hits / (k * len(queries)), 4),
    }


def run_ivf(args: argparse.Namespace, base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    n = len(base)
    factory = ivf.auto_factory(n) if args.factory == "auto" else args.factory
    factor = args.rescore_factor or ivf.rescore_factor(factory)
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        header, times = build(base, factory, args.shards, Path(tmp))
        build_s = sum(times.values())
        print(
            f"{factory} built in {build_s:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in times.items())})",
            flush=True,
        )
        before = memory_kib()
        index = ivf.open_ondisk(header)
        data_bytes = (header.parent / ivf.data_name(index)).stat().st_size
        header_bytes = header.stat().st_size
        faiss.omp_set_num_threads(1)
        results = []
        for nprobe in [int(x) for x in args.nprobe.split(",")]:
            search = lambda q, fetch, nprobe=nprobe: ivf.search(index, q, fetch, nprobe)[1][0]  # noqa: E731
            results.append({"nprobe": nprobe, **measure(search, base, queries, truth, factor)})
            print(json.dumps(results[-1]), flush=True)
        searched = memory_kib()
        faiss.omp_set_num_threads(os.cpu_count() or 1)
    return {
        "index": factory,
        "rescore_factor": factor,
        "default_nprobe": ivf.default_nprobe(ivf.factory_nlist(factory)),
        "shards": args.shards,
        **{k: round(v, 1) for k, v in times.items()},
        "build_s": round(build_s, 1),
        "bytes_per_vector": round(data_bytes / n, 1),
        "header_mib": round(header_bytes / 2**20, 2),
        "rss_anon_search_mib": round((searched["RssAnon"] - before["RssAnon"]) / 1024, 1),
        "rss_file_search_mib": round((searched["RssFile"] - before["RssFile"]) / 1024, 1),
        "search": results,
    }


def run_hnsw(base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    """The collection's HNSW index (float32, defaults of IndexSpec), for comparison on the same data."""
    before = memory_kib()
    start = time.perf_counter()
    index = VectorIndex.build(IndexSpec(base.shape[1], choice="hnsw"), np.arange(len(base)), base)
    build_s = time.perf_counter() - start
    print(f"hnsw built in {build_s:.0f} s", flush=True)
    faiss.omp_set_num_threads(1)
    search = lambda q, fetch: index.search(q, fetch)[1][0]  # noqa: E731
    result = {"ef_search": index.spec.ef_search, **measure(search, base, queries, truth, factor=1)}
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return {
        "index": f"HNSW{index.spec.hnsw_m},Flat",
        "rescore_factor": 1,
        "build_s": round(build_s, 1),
        "bytes_per_vector": round(len(index.to_bytes()) / len(base), 1),
        "rss_anon_search_mib": round((memory_kib()["RssAnon"] - before["RssAnon"]) / 1024, 1),
        "search": [result],
    }


def print_table(rows: list[dict]) -> None:
    head = ["index", "nprobe / efSearch", "candidates", "recall@10", "p50 ms", "p95 ms", "bytes/vector"]
    print("| " + " | ".join([*head, "build s", "RAM MiB"]) + " |")
    print("|---" + "|---:" * (len(head) + 1) + "|")
    for row in rows:
        for r in row["search"]:
            cells = [row["index"], r.get("nprobe", r.get("ef_search")), r["candidates"]]
            cells += [f"{r['recall_at_10']:.3f}", f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}"]
            cells += [f"{row[key]:.0f}" for key in ("bytes_per_vector", "build_s", "rss_anon_search_mib")]
            print("| " + " | ".join(str(c) for c in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", choices=("clustered", "scifact", "scifact-gaussian", "random"), default="clustered"
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors (all but scifact)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000, help="queries (all but scifact)")
    parser.add_argument(
        "--factory", default="auto", help="'auto' (ivf.auto_factory), a factory string, or 'none'"
    )
    parser.add_argument("--nprobe", default="8,16,32,64,128")
    parser.add_argument("--rescore-factor", type=int, help="default: ivf.rescore_factor(factory)")
    parser.add_argument("--hnsw", action="store_true", help="also build the collection's HNSW index")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--model", help="checkpoint for --data scifact (default $EMBEDDINGGEMMA_DIR)")
    parser.add_argument("--max-tokens", type=int, default=128, help="SciFact documents are cut here")
    parser.add_argument("--precision", help="--data scifact: compute precision (default: this CPU's)")
    parser.add_argument("--cache", type=Path, help="--data scifact: where the vectors are cached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, help="where to build (default: a temporary folder)")
    parser.add_argument("--jsonl", help="append the results to this file")
    args = parser.parse_args()

    base, queries = load_data(args)
    print(f"data: {args.data}, {base.shape[0]} x {base.shape[1]}, {len(queries)} queries", flush=True)
    if args.data == "random":
        print("random unit vectors have no neighbour structure: read size and speed, not recall", flush=True)
    start = time.perf_counter()
    exact = faiss.IndexFlatIP(base.shape[1])
    exact.add(base)
    _, truth = exact.search(queries, 10)
    del exact
    print(f"exact ground truth: {time.perf_counter() - start:.1f} s", flush=True)
    rows = []
    if args.factory != "none":
        rows.append(run_ivf(args, base, queries, truth))
    if args.hnsw:
        rows.append(run_hnsw(base, queries, truth))
    common = {"data": args.data, "n": base.shape[0], "dim": base.shape[1], "queries": len(queries)}
    if args.data.startswith("scifact"):
        common.update(max_tokens=args.max_tokens, precision=args.precision or "default")
    common.update(date=time.strftime("%Y-%m-%d"), load=[round(x, 2) for x in os.getloadavg()])
    for row in rows:
        print(json.dumps({**common, **row}))
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps({**common, **row}) + "\n")
    print_table(rows)


if __name__ == "__main__":
    main()

"""ANN benchmark: the collection's own index (gemvec.store.vectors) on 1,000,000 synthetic vectors.

The vectors are *synthetic and clustered*, not real embeddings: 2,000 random unit centres in
``--dim`` dimensions, each point a centre plus Gaussian noise of the same norm scale, then
L2-normalised (same-cluster cosine about 0.6). Queries are fresh draws from the same mixture.
Ground truth is exact inner-product search (faiss.IndexFlatIP) over the same vectors.

Prints, per efSearch: single-query latency p50/p95 (one thread, one query at a time) and
recall@10 against exact search, plus build time and memory.

    python benchmarks/ann_index.py --n 1000000 --dim 256 --precision float32
"""

from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np

from gemvec.store.vectors import RESCORE_FACTOR, IndexSpec, VectorIndex, parse_vector_precision, rescore


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def clustered(
    n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, noise: float = 0.8
) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        labels = rng.integers(0, len(centres), m)
        block = centres[labels] + noise * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--ef", default="32,64,128,256")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((2000, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    base = clustered(args.n, args.dim, centres, rng)
    queries = clustered(args.queries, args.dim, centres, rng)
    ids = np.arange(args.n, dtype=np.int64)
    print(f"data: {args.n} x {args.dim} clustered synthetic vectors, {args.queries} queries", flush=True)

    t0 = time.perf_counter()
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(base)
    _, truth = exact.search(queries, 10)
    del exact
    print(f"exact ground truth: {time.perf_counter() - t0:.1f} s", flush=True)

    precision = parse_vector_precision(args.precision)
    rss_before = rss_mib()
    t0 = time.perf_counter()
    index = VectorIndex.build(IndexSpec(args.dim, precision), ids, base)
    build_s = time.perf_counter() - t0
    index_mib = len(index.to_bytes()) / 2**20
    rss_delta = rss_mib() - rss_before
    print(
        f"built {index.spec.kind} ({precision.value}, M={index.spec.hnsw_m}, "
        f"efConstruction={index.spec.ef_construction}) in {build_s:.0f} s; serialised {index_mib:.0f} MiB, "
        f"RSS +{rss_delta:.0f} MiB",
        flush=True,
    )

    faiss.omp_set_num_threads(1)
    factor = RESCORE_FACTOR[precision.value]
    results = []
    for ef in [int(x) for x in args.ef.split(",")]:
        latencies, hits = [], 0
        for qi in range(args.queries):
            q = queries[qi : qi + 1]
            start = time.perf_counter()
            _, cand = index.search(q, 10 * factor, ef_search=max(ef, 10 * factor))
            if factor > 1:
                cand = cand[0][cand[0] >= 0]
                _, top = rescore(q[0], cand, base[cand], 10)
            else:
                top = cand[0]
            latencies.append(time.perf_counter() - start)
            hits += len(set(top.tolist()) & set(truth[qi].tolist()))
        lat = np.array(latencies) * 1000
        row = {
            "ef_search": ef,
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3),
            "recall_at_10": round(hits / (10 * args.queries), 4),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "n": args.n,
        "dim": args.dim,
        "precision": precision.value,
        "kind": index.spec.kind,
        "hnsw_m": index.spec.hnsw_m,
        "ef_construction": index.spec.ef_construction,
        "build_s": round(build_s, 1),
        "index_mib": round(index_mib, 1),
        "rss_delta_mib": round(rss_delta, 1),
        "base_vectors_mib": round(base.nbytes / 2**20, 1),
        "search": results,
    }
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()

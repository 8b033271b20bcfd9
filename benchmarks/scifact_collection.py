"""SciFact through a collection (ingest the corpus, search the queries) vs direct evaluation.

Direct: embed every document as ``title: T | text: X`` and every claim with the query
prompt, rank the whole corpus by cosine, nDCG@10 (the data README's project convention).
Collection: ``Collection.add`` of ``corpus.jsonl`` (chunked, stored in SQLite, indexed by
FAISS, FTS5 for BM25), then ``Collection.search`` per claim in dense, hybrid and keyword
mode; a document ranks by its best chunk.

CPU time is scarce, so both paths share one embedding cache (the eval harness's, keyed by
the exact prompted text): a text is embedded once, whichever path asks first. With chunks
as long as the abstracts the collection embeds the same texts as the direct path, and the
comparison isolates what the collection adds (storage, index, FTS, ranking by chunk);
shorter chunks embed new texts.

    python benchmarks/scifact_collection.py --chunk-tokens 1024 --precisions float32,int8,binary
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from gemvec import Embedder
from gemvec.eval.cache import EmbeddingCache, default_cache_dir
from gemvec.eval.metrics import ndcg_at_k, recall_at_k
from gemvec.ingest.loaders import TableOptions
from gemvec.model.head import truncate_and_normalize
from gemvec.prompts import Task, document_prompt
from gemvec.store import Collection

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


class CachedEmbedder:
    """The real Embedder, with encode_document/encode_query served from the eval cache when possible."""

    def __init__(self, embedder: Embedder, cache: EmbeddingCache) -> None:
        self._embedder = embedder
        self._cache = cache

    def __getattr__(self, name: str):
        return getattr(self._embedder, name)

    def _embed(self, prompted: list[str], dim: int | None) -> np.ndarray:
        full = self._cache.embed(
            prompted,
            lambda texts: self._embedder.encode(texts, batch_size=16, show_progress=False),
            chunk_size=16,
        )
        return truncate_and_normalize(full, dim or self._embedder.dim)

    def encode_document(self, texts, titles=None, *, dim=None, **_: object) -> np.ndarray:
        titles = titles if titles is not None else [None] * len(texts)
        return self._embed([document_prompt(t) + x for t, x in zip(titles, texts, strict=True)], dim)

    def encode_query(self, texts, *, dim=None, **_: object) -> np.ndarray:
        return self._embed([Task.QUERY.prompt + x for x in texts], dim)


def load(max_docs: int | None, max_queries: int | None = None, seed: int = 0):
    corpus = [json.loads(line) for line in (DATA / "corpus.jsonl").read_text().splitlines()]
    queries = {q["id"]: q["text"] for q in map(json.loads, (DATA / "queries.jsonl").read_text().splitlines())}
    qrels: dict[str, dict[str, int]] = {}
    for line in (DATA / "qrels.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.rstrip("\n").split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    if max_queries:
        qrels = dict(list(qrels.items())[:max_queries])
    if max_docs and max_docs < len(corpus):
        relevant = {d for rel in qrels.values() for d in rel}
        others = [d for d in corpus if d["id"] not in relevant]
        rng = np.random.default_rng(seed)
        keep = {d["id"] for d in corpus if d["id"] in relevant}
        keep |= {others[i]["id"] for i in rng.permutation(len(others))[: max(0, max_docs - len(keep))]}
        corpus = [d for d in corpus if d["id"] in keep]
    return corpus, queries, qrels


def scores(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    qids = [q for q in qrels if q in rankings]
    return {
        "ndcg@10": round(100 * float(np.mean([ndcg_at_k(rankings[q], qrels[q], 10) for q in qids])), 2),
        "recall@100": round(100 * float(np.mean([recall_at_k(rankings[q], qrels[q], 100) for q in qids])), 2),
    }


def direct(emb: CachedEmbedder, corpus, queries, qrels, dim: int) -> dict[str, float]:
    docs = emb.encode_document([d["text"] for d in corpus], titles=[d["title"] for d in corpus], dim=dim)
    qids = list(qrels)
    q = emb.encode_query([queries[i] for i in qids], dim=dim)
    sim = q @ docs.T
    order = np.argsort(-sim, axis=1)[:, :100]
    return scores({qid: [corpus[j]["id"] for j in order[i]] for i, qid in enumerate(qids)}, qrels)


def through_collection(emb, corpus_file: Path, queries, qrels, args, precision: str) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="scifact-coll-"))
    coll = Collection.create(
        folder / "c",
        embedder=emb,
        dim=args.dim,
        vectors=precision,
        chunk_tokens=args.chunk_tokens,
        overlap=args.overlap,
    )
    start = time.perf_counter()
    report = coll.add([corpus_file], table=TableOptions(metadata_fields=()))
    ingest_s = time.perf_counter() - start
    out = {"precision": precision, "ingest_s": round(ingest_s, 1), **coll.info()}
    out.pop("roots"), out.pop("path")
    out["report"] = report.to_dict()
    for mode in args.modes.split(","):
        rankings, latencies = {}, []
        for qid in qrels:
            t0 = time.perf_counter()
            hits = coll.search(queries[qid], k=args.depth, mode=mode)
            latencies.append(time.perf_counter() - t0)
            rankings[qid] = list(dict.fromkeys(h.metadata["id"] for h in hits))
        out[mode] = {**scores(rankings, qrels), "search_p50_ms": round(1000 * float(np.median(latencies)), 1)}
        print(precision, mode, out[mode], flush=True)
    coll.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--chunk-tokens", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--precisions", default="float32")
    parser.add_argument("--modes", default="dense,hybrid,keyword")
    parser.add_argument("--depth", type=int, default=100, help="chunks retrieved per query")
    parser.add_argument("--max-docs", type=int, default=None, help="subset: all judged docs + random others")
    parser.add_argument("--max-queries", type=int, default=None, help="subset: the first N judged queries")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    real = Embedder.load(args.model, "float32")
    cache = EmbeddingCache.for_model(default_cache_dir(), real.folder, "float32")
    emb = CachedEmbedder(real, cache)
    corpus, queries, qrels = load(args.max_docs, args.max_queries)
    work = Path(tempfile.mkdtemp(prefix="scifact-"))
    corpus_file = work / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in corpus))
    print(
        f"corpus {len(corpus)} docs, {len(qrels)} queries, dim {args.dim}, chunks {args.chunk_tokens}",
        flush=True,
    )
    t0 = time.perf_counter()
    result = {"docs": len(corpus), "queries": len(qrels), "dim": args.dim, "chunk_tokens": args.chunk_tokens}
    result["direct"] = direct(emb, corpus, queries, qrels, args.dim)
    print("direct", result["direct"], f"({time.perf_counter() - t0:.0f} s)", flush=True)
    result["collection"] = [
        through_collection(emb, corpus_file, queries, qrels, args, p) for p in args.precisions.split(",")
    ]
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

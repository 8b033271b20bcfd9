"""RAG answer quality on XQuAD: does the answer hold the gold span, cite real sources, and speak
the question's language?

Per language, the first ``--passages`` XQuAD contexts become a collection (real SQLite + FAISS,
the real checkpoint); ``--questions`` of their questions are sampled (seeded) and asked with
``gemvec.rag.ask`` in each ``--mode``:

* ``generated``: the LLM's answer, its invalid ``[n]`` removed;
* ``extractive``: no LLM, the retrieved sentences closest to the question (the embedder ranks them);
* ``auto``: the LLM's answer when it is grounded, else the extractive one.

Per language and mode it prints the share of answers that: contain the gold span (case-folded);
cite a source and had no invalid ``[n]`` removed (``cites_valid``; for the LLM's own text, also
where auto replaced it); had an invalid ``[n]`` removed; cite the gold passage; are in the
question's language (``language_ok``; unknown counts as no); are grounded; fell back to
extraction; and the retrieval recall@k of the gold passage. Every answer is a JSONL line in
``--out``, after a ``run`` line (command, CPU time) and before a ``summary`` line per language
and mode.

Any OpenAI-compatible server plugs in with ``--llm openai:MODEL@URL``. CPU time is bounded by
``--cpu-minutes``: questions are taken in turn across languages and the run stops (with what it
has) once the process has used that much. Embeddings go through the eval cache, so a rerun does
not embed again, and each LLM answer is generated once for all modes.

    python benchmarks/rag_quality.py --languages en,de,zh --questions 50 \
        --model $HOME/.cache/embeddinggemma-300m --llm openai:MODEL@http://127.0.0.1:8080/v1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scifact_collection import CachedEmbedder

from gemvec import Embedder
from gemvec.eval.cache import EmbeddingCache, default_cache_dir
from gemvec.llm import Generator, Message, make_generator
from gemvec.llm.gguf import THREADS_ENV
from gemvec.rag import ANSWER_MODES, EmbedderRanker, Passage, ask, parse_citations
from gemvec.store import Collection

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "xquad"
RESULTS = Path(__file__).resolve().parent / "results"


class OnceGenerator:
    """The LLM, with each prompt answered once: ``auto`` reuses what ``generated`` got."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.name = generator.name
        self.answers: dict[str, str] = {}

    def stream(
        self, messages: list[Message], *, max_tokens: int = 512, temperature: float = 0.0
    ) -> Iterator[str]:
        key = json.dumps([messages, max_tokens, temperature], ensure_ascii=False)
        if key not in self.answers:
            self.answers[key] = "".join(
                self.generator.stream(messages, max_tokens=max_tokens, temperature=temperature)
            )
        yield self.answers[key]


@dataclass
class OnceRetriever:
    """A collection whose search results are kept per query (one retrieval for all modes)."""

    collection: Collection

    def __post_init__(self) -> None:
        self.results: dict[tuple, list[Any]] = {}

    def search(
        self, query: str, k: int = 4, mode: str = "hybrid", filters: dict[str, Any] | None = None
    ) -> Sequence[Passage]:
        key = (query, k, mode)
        if key not in self.results:
            self.results[key] = self.collection.search(query, k=k, mode=mode, filters=filters)
        return self.results[key]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def language_setup(language: str, args: argparse.Namespace, embedder: CachedEmbedder, work: Path):
    """The collection of the language's first ``--passages`` contexts and a sample of their questions."""
    passages = read_jsonl(DATA / language / "passages.jsonl")[: args.passages]
    kept = {p["id"] for p in passages}
    questions = [q for q in read_jsonl(DATA / language / "questions.jsonl") if q["passage_id"] in kept]
    sample = random.Random(args.seed).sample(questions, min(args.questions, len(questions)))
    coll = Collection.create(work / language, embedder=embedder)
    coll.add_texts([p["text"] for p in passages], ids=[p["id"] for p in passages])
    return OnceRetriever(coll), sample


def record(language: str, mode: str, item: dict, answer: Any, hits: Sequence[Any]) -> dict:
    gold = item["answers"][0]
    # the LLM's own text (kept when auto replaced it); extractive answers have none
    llm_text = answer.generated_text if answer.generated_text is not None else None
    if llm_text is None and answer.mode == "generated":
        llm_text = answer.text
    cited = parse_citations(llm_text, len(hits)) if llm_text is not None else answer.citations
    return {
        "language": language,
        "mode": mode,
        "id": item["id"],
        "question": item["question"],
        "gold": gold,
        "answer": answer.text,
        "answer_mode": answer.mode,
        "generated_answer": answer.generated_text,
        "contains_gold": gold.casefold() in answer.text.casefold(),
        "citations": answer.citations,
        "invalid_citations": answer.invalid_citations,
        "cites_valid": bool(cited) and not answer.invalid_citations,
        "cites_gold": item["passage_id"] in {hits[n - 1].source for n in answer.citations},
        "retrieved_gold": item["passage_id"] in {h.source for h in hits},
        "grounded": answer.grounded,
        "support": round(answer.support, 3),
        "question_language": answer.question_language,
        "answer_language": answer.answer_language,
        "language_ok": answer.language_ok is True,
    }


SUMMARY_KEYS = (
    "contains_gold",
    "cites_valid",
    "invalid_citations",
    "cites_gold",
    "language_ok",
    "grounded",
    "retrieved_gold",
)


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Percentages of ``rows`` (plus how many fell back to extraction), and their number."""
    out: dict[str, Any] = {
        key: round(100 * sum(bool(r[key]) for r in rows) / len(rows), 1) for key in SUMMARY_KEYS
    }
    out["extractive"] = round(100 * sum(r["answer_mode"] == "extractive" for r in rows) / len(rows), 1)
    out["n"] = len(rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--languages", default="en,de,zh", help="XQuAD languages, comma-separated")
    parser.add_argument("--questions", type=int, default=50, help="questions sampled per language")
    parser.add_argument("--passages", type=int, default=240, help="the first N contexts form the collection")
    parser.add_argument("--llm", default="smollm2", help="smollm2, gguf:PATH or openai:MODEL@URL")
    parser.add_argument(
        "--mode", default="generated,extractive,auto", help=f"any of {', '.join(ANSWER_MODES)}"
    )
    parser.add_argument("--search", default="hybrid", help="retrieval mode: dense, keyword or hybrid")
    parser.add_argument("-k", type=int, default=4, help="sources per question")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--llm-threads", type=int, default=None, help="threads of a local GGUF model")
    parser.add_argument("--model", default=None, help="EmbeddingGemma checkpoint (folder or hub id)")
    parser.add_argument("--cpu-minutes", type=float, default=15.0, help="stop asking after this much CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSONL (default: results/rag_quality_<llm>.jsonl)"
    )
    args = parser.parse_args()
    modes = args.mode.split(",")
    if unknown := set(modes) - set(ANSWER_MODES):
        parser.error(f"unknown --mode {', '.join(sorted(unknown))}")

    if args.llm_threads:
        os.environ[THREADS_ENV] = str(args.llm_threads)
    real = Embedder.load(args.model, "float32")
    embedder = CachedEmbedder(real, EmbeddingCache.for_model(default_cache_dir(), real.folder, "float32"))
    generator = None if modes == ["extractive"] else OnceGenerator(make_generator(args.llm))
    ranker = EmbedderRanker(embedder)
    work = Path(tempfile.mkdtemp(prefix="rag-quality-"))
    setups = {lang: language_setup(lang, args, embedder, work) for lang in args.languages.split(",")}
    print(f"collections ready: {time.process_time() / 60:.1f} CPU minutes", flush=True)

    rows: list[dict] = []
    stopped = None
    for turn in range(args.questions):
        if time.process_time() > 60 * args.cpu_minutes:
            stopped = f"CPU budget of {args.cpu_minutes} minutes reached after {turn} questions per language"
            break
        for lang, (retriever, sample) in setups.items():
            if turn >= len(sample):
                continue
            item = sample[turn]
            for mode in modes:
                answer = ask(
                    retriever,
                    item["question"],
                    generator,
                    k=args.k,
                    mode=args.search,
                    max_tokens=args.max_tokens,
                    answer_mode=mode,
                    ranker=ranker,
                )
                hits = retriever.search(item["question"], k=args.k, mode=args.search)
                rows.append(record(lang, mode, item, answer, hits))

    out = args.out or RESULTS / f"rag_quality_{args.llm.split(':')[0].split('@')[0]}.jsonl"
    summaries = []
    llm = generator.name if generator else "no LLM"
    print(f"\n{llm}, k={args.k}, {args.search} search, {args.passages} passages per language")
    print(f"{'lang':5} {'mode':10} " + " ".join(f"{k:>16}" for k in (*SUMMARY_KEYS, "extractive", "n")))
    for lang in setups:
        for mode in modes:
            group = [r for r in rows if r["language"] == lang and r["mode"] == mode]
            if group:
                summary = summarize(group)
                summaries.append({"summary": True, "language": lang, "mode": mode, **summary})
                print(f"{lang:5} {mode:10} " + " ".join(f"{v:>16}" for v in summary.values()))
    meta = {
        "run": True,
        "command": vars(args) | {"out": str(out)},
        "llm": llm,
        "cpu_minutes": round(time.process_time() / 60, 1),
        "stopped": stopped,
    }
    print(json.dumps(meta, default=str))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as file:
        for row in [meta, *rows, *summaries]:
            file.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


if __name__ == "__main__":
    main()

"""Batches that mix text lengths, as a server merging requests builds them: what padding costs,
and what attending in groups of similar length (``gemvec.model.layout``) saves.

    python benchmarks/mixed_lengths.py --model $EMBEDDINGGEMMA_DIR [--texts 512] [--rounds 3]

Three measurements, each with attention grouping on (the default, ``GROUP_MAX_PADDING`` = 0.5)
and off (one padded grid per batch), in the same run because the machine is shared: call by call
where calls are timed, and with the side that goes first swapped every round.

1. Banking77 queries in shuffled (arrival) order, encoded in calls of 16 as the server's batches
   under 32 clients are, against the same texts in one call that sorts them all by length first
   (batches of 32 is the offline peer in ``server_load.py``). All texts get the document prompt,
   as the server's default task gives them.
2. Those queries in calls of 32, timed one by one: milliseconds per token of text by the call's
   longest text — how much a batch's spread of lengths costs.
3. One long document (about 2,048 tokens) with 15 queries in one call.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from server_load import load_texts

from gemvec import Embedder
from gemvec.model import layout


@contextmanager
def grouping(on: bool) -> Iterator[None]:
    saved = layout.GROUP_MAX_PADDING
    layout.GROUP_MAX_PADDING = saved if on else float("inf")
    try:
        yield
    finally:
        layout.GROUP_MAX_PADDING = saved


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def calls_of(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def alternating(round_: int) -> tuple[bool, bool]:
    """Grouping on then off, or off then on: neither side always runs first."""
    return (True, False) if round_ % 2 == 0 else (False, True)


def arrival_vs_sorted(embedder: Embedder, texts: list[str], rounds: int) -> None:
    calls = calls_of(texts, 16)
    arrival: dict[bool, list[float]] = {True: [], False: []}
    one_call: dict[int, dict[bool, list[float]]] = {16: {True: [], False: []}, 32: {True: [], False: []}}
    for r in range(rounds):
        spent = {True: 0.0, False: 0.0}
        for call in calls:  # on and off back to back, call by call
            for on in alternating(r):
                with grouping(on):
                    spent[on] += timed(lambda call=call: embedder.encode(call, "document", batch_size=16))
        for on in alternating(r):
            arrival[on].append(spent[on])
            with grouping(on):
                for size in one_call:
                    seconds = timed(lambda size=size: embedder.encode(texts, "document", batch_size=size))
                    one_call[size][on].append(seconds)
    print(f"\n{len(texts)} Banking77 queries as documents, {rounds} rounds (median texts/s):")
    print(f"  {'':40s} {'grouping on':>12s} {'grouping off':>12s}")
    rows = [("calls of 16 in arrival order", arrival)]
    rows += [(f"one call, sorted, batches of {size}", one_call[size]) for size in one_call]
    for name, seconds in rows:
        on, off = (len(texts) / statistics.median(seconds[g]) for g in (True, False))
        print(f"  {name:40s} {on:12.1f} {off:12.1f}")


def cost_by_spread(embedder: Embedder, texts: list[str], rounds: int) -> None:
    calls = calls_of(texts, 32)
    counts = [embedder.count_tokens(call) for call in calls]
    best_ms: dict[bool, list[float]] = {True: [float("inf")] * len(calls), False: [float("inf")] * len(calls)}
    for r in range(rounds):
        for i, call in enumerate(calls):
            for on in alternating(r):
                with grouping(on):
                    seconds = timed(lambda call=call: embedder.encode(call, "document", batch_size=32))
                best_ms[on][i] = min(best_ms[on][i], 1000 * seconds / sum(counts[i]))
    print("\nCalls of 32 in arrival order: ms per token of text (the prompt's not counted) by the")
    print("call's longest text before the prompt (each call's best of the rounds, median over calls):")
    print(f"  {'longest text':14s} {'calls':>5s} {'grouping on':>12s} {'grouping off':>12s}")
    for low, high in [(0, 29), (30, 44), (45, 10_000)]:
        members = [i for i, n in enumerate(counts) if low <= max(n) <= high]
        if members:
            on, off = (statistics.median(best_ms[g][i] for i in members) for g in (True, False))
            span = f"{low}-{high}" if high < 10_000 else f">= {low}"
            print(f"  {span + ' tokens':14s} {len(members):5d} {on:12.2f} {off:12.2f}")


def long_with_queries(embedder: Embedder, texts: list[str], rounds: int) -> None:
    document = " ".join(texts * (1 + 400 // len(texts)))  # truncated to the model's 2,048 tokens
    batch = [document, *texts[:15]]
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds):
        for on in alternating(r):
            with grouping(on):
                seconds[on].append(timed(lambda: embedder.encode(batch, "document", batch_size=16)))
    longest = min(max(embedder.count_tokens(batch)), embedder.tokenizer.max_tokens)
    print(f"\nOne {longest}-token document and 15 queries in one call (median seconds):")
    print(f"  grouping on  {statistics.median(seconds[True]):6.2f}")
    print(f"  grouping off {statistics.median(seconds[False]):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="checkpoint folder (default: $GEMVEC_MODEL or the hub id)"
    )
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*truncat")  # the long document is cut on purpose
    embedder = Embedder.load(args.model, precision="float32")
    texts = load_texts(args.texts)
    embedder.encode(texts[:32])  # warm-up
    arrival_vs_sorted(embedder, texts, args.rounds)
    cost_by_spread(embedder, texts, args.rounds)
    long_with_queries(embedder, texts, args.rounds)


if __name__ == "__main__":
    main()

"""Prometheus metrics, written by hand in the text exposition format (version 0.0.4).

Three kinds are enough here: counters, gauges and histograms, each optionally with
labels. Every metric holds its own lock because the batching worker thread and the
event loop both update them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

LabelValues = tuple[str, ...]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BATCH_TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> LabelValues:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A value that only goes up."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {} if labels else {(): 0.0}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    """A value that goes up and down (no labels needed here)."""

    kind = "gauge"

    def set(self, value: float) -> None:
        with self._lock:
            self._values[()] = float(value)


class Histogram(_Metric):
    """Observations counted into cumulative ``le`` buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, buckets: Iterable[float], labels: Sequence[str] = ()
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = (*sorted(float(b) for b in buckets), math.inf)
        self._series: dict[LabelValues, tuple[list[int], list[float]]] = {}
        if not labels:
            self._series[()] = ([0] * len(self.buckets), [0.0])

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * len(self.buckets), [0.0]))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            total[0] += value

    def count(self, *labels: str) -> int:
        with self._lock:
            series = self._series.get(self._key(labels))
            return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        lines = []
        with self._lock:
            items = sorted((k, (list(c), t[0])) for k, (c, t) in self._series.items())
        for key, (counts, total) in items:
            running = 0
            for bound, count in zip(self.buckets, counts, strict=True):
                running += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return lines


class ServerMetrics:
    """Every metric the server exposes at ``GET /metrics``; also the model worker's observer."""

    def __init__(self) -> None:
        self.requests = Counter(
            "gemvec_http_requests_total", "HTTP requests answered.", ("method", "path", "status")
        )
        self.latency = Histogram(
            "gemvec_http_request_duration_seconds",
            "Time from request start to the last response byte.",
            LATENCY_BUCKETS,
            ("path",),
        )
        self.in_flight = Gauge("gemvec_http_requests_in_flight", "HTTP requests being answered now.")
        self.queue_depth = Gauge("gemvec_queue_depth", "Embedding requests waiting for the model.")
        self.batch_size = Histogram(
            "gemvec_batch_size", "Inputs per model batch (after merging requests).", BATCH_SIZE_BUCKETS
        )
        self.batch_requests = Histogram(
            "gemvec_batch_requests", "Requests merged into one model batch.", BATCH_SIZE_BUCKETS
        )
        self.batch_tokens = Histogram("gemvec_batch_tokens", "Tokens per model batch.", BATCH_TOKEN_BUCKETS)
        self.inputs = Counter("gemvec_embedded_inputs_total", "Texts embedded.")
        self.tokens = Counter("gemvec_embedded_tokens_total", "Tokens embedded (prompts included).")
        self.model_busy = Counter(
            "gemvec_model_busy_seconds_total", "Seconds the model thread spent embedding (utilisation)."
        )
        self._all: list[_Metric] = [
            self.requests,
            self.latency,
            self.in_flight,
            self.queue_depth,
            self.model_busy,
            self.batch_size,
            self.batch_requests,
            self.batch_tokens,
            self.inputs,
            self.tokens,
        ]

    # -- gemvec.batching.BatchObserver: what the model worker reports ----------------------

    def on_queue(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def on_batch(self, *, inputs: int, jobs: int, tokens: int, busy_s: float) -> None:
        self.model_busy.inc(amount=busy_s)
        self.batch_size.observe(inputs)
        self.batch_requests.observe(jobs)
        self.batch_tokens.observe(tokens)
        self.inputs.inc(amount=inputs)
        self.tokens.inc(amount=tokens)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._all:
            lines += metric.header() + metric.samples()
        return "\n".join(lines) + "\n"

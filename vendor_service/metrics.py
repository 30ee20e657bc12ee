"""Prometheus metrics, per app (tests build many apps) or aggregated across worker processes.

With several uvicorn workers, ``serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` under the data dir
before the workers import prometheus_client; ``/metrics`` then sums every worker's files.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The vendor's metrics: requests, queries charged, batch sizes, latency, queue depth,
    abandoned requests and throttling."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vendor_requests_total",
            "HTTP requests by route and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.queries_charged = Counter(
            "vendor_queries_charged_total",
            "Queries charged (net of refunds) by endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "vendor_batch_size",
            "Items per model call.",
            ["kind"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.latency = Histogram(
            "vendor_request_latency_seconds",
            "Request latency by route.",
            ["route"],
            registry=self.registry,
        )
        self.abandoned = Counter(
            "vendor_abandoned_requests_total",
            "Charged requests whose client went away before the answer; refunded. stage: "
            "queued (dropped before the model ran) or running (the model's answer discarded).",
            ["stage"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "vendor_throttled_total",
            "Requests refused with 429 before any work, by reason (rate_limit, failed_auth, "
            "usage).",
            ["reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "vendor_inference_queue_depth",
            "Jobs waiting for the inference worker.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

    def render(self) -> tuple[bytes, str]:
        """Exposition text: this app's registry, or every worker's when multiprocess."""
        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

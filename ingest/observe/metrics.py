"""Prometheus metrics of uploads and hook deliveries, and their exposition.

Each app owns a `Metrics` on its own registry, so several apps in one process (tests, an
embedding program) never share counters. When several uvicorn workers run, `ingest serve`
sets PROMETHEUS_MULTIPROC_DIR before any worker starts; prometheus-client then keeps values
in per-process files there and `/metrics` merges them with its MultiProcessCollector
(https://prometheus.github.io/client_python/multiprocess/). Gauges use the `livesum` mode so
that a dead worker's uploads in progress stop counting.

The hot path is `received`, once per block (1 MiB by default), never per chunk.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

KiB = 1024
# Powers of four from 1 KiB to 64 GiB: uploads span that whole range.
SIZE_BUCKETS = tuple(float(KiB * 4**n) for n in range(14))
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # In multiprocess mode values live in files and are collected from there; the
        # metric objects are then not registered anywhere (prometheus-client's advice).
        self.registry = CollectorRegistry() if registry is None else registry
        target = None if multiprocess_enabled() else self.registry
        live: dict[str, Any] = {"multiprocess_mode": "livesum"}
        self.bytes_received = Counter(
            "ingest_received_bytes", "Bytes of file content received, by protocol",
            ["protocol"], registry=target)
        self.started = Counter(
            "ingest_uploads_started", "Uploads (one per file) that began, by protocol",
            ["protocol"], registry=target)
        self.finished = Counter(
            "ingest_uploads_finished", "Uploads stored and visible, by protocol",
            ["protocol"], registry=target)
        self.failed = Counter(
            "ingest_uploads_failed", "Uploads that ended without being stored, by protocol and error code",
            ["protocol", "error"], registry=target)
        self.in_progress = Gauge(
            "ingest_uploads_in_progress", "Uploads receiving bytes or waiting to be committed",
            ["protocol"], registry=target, **live)
        self.temp_bytes = Gauge(
            "ingest_temp_bytes", "Bytes received into temporary files not yet committed or discarded",
            registry=target, **live)
        self.size = Histogram(
            "ingest_upload_size_bytes", "Size of stored uploads", ["protocol"],
            buckets=SIZE_BUCKETS, registry=target)
        self.duration = Histogram(
            "ingest_upload_duration_seconds", "Time from an upload's start (tus: its creation) to its commit",
            ["protocol"], buckets=DURATION_BUCKETS, registry=target)
        self.digest_mismatches = Counter(
            "ingest_digest_mismatches", "Uploads whose bytes did not have the SHA-256 the client gave",
            ["protocol"], registry=target)
        self.requests = Counter(
            "ingest_requests", "HTTP requests by protocol, outcome (ok, error, disconnected) and error code",
            ["protocol", "outcome", "error"], registry=target)
        self.hook_deliveries = Counter(
            "ingest_hook_deliveries", "Hook deliveries by event, target and outcome "
            "(delivered, failed after every retry, dropped because the queue was full)",
            ["event", "target", "outcome"], registry=target)
        self.hook_retries = Counter(
            "ingest_hook_retries", "Hook delivery attempts that failed and were retried",
            ["event", "target"], registry=target)

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its media type."""
        if multiprocess_enabled():
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Drop a stopping worker's live gauges from the multiprocess files."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def multiprocess_registry() -> CollectorRegistry:
    """A registry reading every worker's files, for a metrics port served by the parent."""
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


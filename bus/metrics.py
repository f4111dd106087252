"""Prometheus metrics of a Praxis process (prometheus_client, its default registry): the
worker's turns, sessions, takeovers, redeliveries and dead letters, the edge's live
subscribers. Workers serve them on ``PRAXIS_METRICS_PORT``; the edge at ``GET /metrics``."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger("praxis.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST

TURNS = Counter(
    "praxis_turns",
    "Turns ended, by outcome (completed, failed, waiting: for a tool call's approval).",
    ["outcome"],
)
TURN_SECONDS = Histogram(
    "praxis_turn_seconds",
    "Seconds from a turn's start to its end, in the worker.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
COMMANDS = Counter("praxis_commands", "Commands a worker handled, by kind.", ["kind"])
ACTIVE_SESSIONS = Gauge("praxis_active_sessions", "Sessions this worker is running now.")
TAKEOVERS = Counter(
    "praxis_leases_taken_over",
    "Sessions this worker took over from another worker (one that released them, died, "
    "or lost its lease).",
)
REDELIVERIES = Counter(
    "praxis_redeliveries", "Work messages delivered again (not handled at the first delivery)."
)
DEAD_LETTERS = Counter("praxis_dead_letters", "Commands parked as dead letters.")
SUBSCRIBERS = Gauge(
    "praxis_subscribers",
    "Live event subscribers on this edge (SSE streams, GraphQL subscriptions).",
    ["interface"],
)


def exposition() -> bytes:
    """The metrics in Prometheus's text format."""
    return generate_latest()


def serve(port: int, host: str = "127.0.0.1") -> str:
    """Serve ``/metrics`` on ``host:port`` (0: a free port) in a thread; its URL."""
    server: Any
    server, _ = start_http_server(port, addr=host)
    bound = server.server_address[1]
    url = f"http://{host}:{bound}/metrics"
    log.info("metrics on %s", url)
    return url

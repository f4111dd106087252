"""Prometheus metrics of a Praxis process (prometheus_client): the worker's turns,
sessions, takeovers, redeliveries and dead letters (:data:`WORKER`), the edge's live
subscribers (:data:`EDGE`), each beside the process's own (CPU, memory, GC). Workers serve
theirs on ``PRAXIS_METRICS_PORT``; the edge its own at ``GET /metrics`` (and a worker's too
when it runs one in its process)."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger("praxis.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST

PROCESS = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    PROCESS.register(_collector)
WORKER = CollectorRegistry(auto_describe=True)
"""What a worker measures."""
EDGE = CollectorRegistry(auto_describe=True)
"""What an edge measures."""
worker_in_process = False
"""Set when this process runs a worker (an edge or CLI with its own): the edge then
exports the worker's metrics too."""

TURNS = Counter(
    "praxis_turns",
    "Turns ended, by outcome (completed, failed, waiting: for a tool call's approval).",
    ["outcome"],
    registry=WORKER,
)
TURN_SECONDS = Histogram(
    "praxis_turn_seconds",
    "Seconds from a turn's start to its end, in the worker.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=WORKER,
)
COMMANDS = Counter(
    "praxis_commands", "Commands a worker handled, by kind.", ["kind"], registry=WORKER
)
ACTIVE_SESSIONS = Gauge(
    "praxis_active_sessions", "Sessions this worker is running now.", registry=WORKER
)
TAKEOVERS = Counter(
    "praxis_leases_taken_over",
    "Sessions this worker took over from another worker (one that released them, died, "
    "or lost its lease).",
    registry=WORKER,
)
REDELIVERIES = Counter(
    "praxis_redeliveries",
    "Work messages delivered again (not handled at the first delivery).",
    registry=WORKER,
)
INPUTS_KNOWN = Counter(
    "praxis_inputs_known",
    "Inputs taken as their trigger delivered them, known to be their session's next (the "
    "rest are read from the stream).",
    registry=WORKER,
)
DEAD_LETTERS = Counter("praxis_dead_letters", "Commands parked as dead letters.", registry=WORKER)
SUBSCRIBERS = Gauge(
    "praxis_subscribers",
    "Live event subscribers on this edge (SSE streams, GraphQL subscriptions).",
    ["interface"],
    registry=EDGE,
)


def exposition(*registries: CollectorRegistry) -> bytes:
    """The process's metrics and those of ``registries``, in Prometheus's text format."""
    return b"".join(generate_latest(r) for r in (PROCESS, *registries))


def edge_exposition() -> bytes:
    """What an edge exports: its own metrics (and its worker's, if it runs one)."""
    return exposition(EDGE, WORKER) if worker_in_process else exposition(EDGE)


class _Worker:
    """The registry a worker's metrics server exports."""

    def collect(self) -> Any:
        for registry in (PROCESS, WORKER):
            yield from registry.collect()


def serve(port: int, host: str = "127.0.0.1") -> str:
    """Serve ``/metrics`` on ``host:port`` (0: a free port) in a thread; its URL."""
    server: Any
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Worker())
    server, _ = start_http_server(port, addr=host, registry=registry)
    bound = server.server_address[1]
    url = f"http://{host}:{bound}/metrics"
    log.info("metrics on %s", url)
    return url

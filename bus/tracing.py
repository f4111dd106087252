"""OpenTelemetry tracing, off unless ``PRAXIS_TRACING`` is set: the edge continues its
caller's trace (W3C ``traceparent``), every command carries its trace context in its NATS
headers, and the worker handles it in a child span and records the trace id in every event
the command causes. Spans carry the session and task ids."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind

TRACER = trace.get_tracer("praxis")
_enabled = False


def enabled() -> bool:
    return _enabled


def configure(exporter: str, service: str) -> None:
    """Export spans (``console``: to stderr, ``otlp``: to ``OTEL_EXPORTER_OTLP_*``, with
    ``pip install opentelemetry-exporter-otlp``); ``off``: none. Once per process."""
    global _enabled
    if exporter == "off" or _enabled:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter == "console":
        console = ConsoleSpanExporter(out=sys.stderr)
        provider.add_span_processor(SimpleSpanProcessor(console))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ValueError(
                "PRAXIS_TRACING=otlp needs the OTLP exporter: pip install "
                "opentelemetry-exporter-otlp"
            ) from None
        otlp: SpanExporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(otlp))
    trace.set_tracer_provider(provider)
    _enabled = True


def inject(headers: MutableMapping[str, str]) -> None:
    """Put the current trace context into ``headers`` (if tracing is on)."""
    if _enabled:
        propagate.inject(headers)


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    """The trace id a message's headers carry (``traceparent``), whether or not this
    process traces: the worker records it in the events either way."""
    if "traceparent" not in headers:
        return None
    span = trace.get_current_span(propagate.extract(dict(headers)))
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


@contextlib.contextmanager
def span(
    name: str,
    *,
    headers: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span (a child of the context in ``headers``, if given); ``None`` when off."""
    if not _enabled:
        yield None
        return
    parent = propagate.extract(dict(headers)) if headers is not None else None
    with TRACER.start_as_current_span(
        name, context=parent, kind=kind, attributes=dict(attributes or {})
    ) as current:
        yield current


@contextlib.contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    """Run in the trace a caller's headers carry (the edge, per request)."""
    if not _enabled or "traceparent" not in headers:
        yield
        return
    token = context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        context.detach(token)


def session_attributes(session_id: str, task_id: str | None) -> dict[str, str]:
    out = {"praxis.session_id": session_id}
    if task_id:
        out["praxis.task_id"] = task_id
    return out

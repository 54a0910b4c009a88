"""OpenTelemetry tracing: always propagates context; exports only when configured."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured = False


def configure_tracing(service: str, otlp_endpoint: str | None) -> None:
    """Export spans only when a collector is configured. FastAPI's native per-request spans
    are switched on only then too (see `fastapi_telemetry`): they cost a tenth of a request."""
    global _configured
    if _configured:
        return
    _configured = True
    # A real provider even without a collector, so every event gets a valid trace id; with
    # no processor its spans cost next to nothing and go nowhere.
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint}/v1/traces"))
        )
    trace.set_tracer_provider(provider)


def fastapi_telemetry(otlp_endpoint: str | None) -> dict[str, Any]:
    """FastAPI's native OpenTelemetry spans for HTTP, on only with a collector."""
    on = bool(otlp_endpoint)
    return {"tracing": on, "metrics": False, "logs": False}


def instrument_engine(engine: Any, otlp_endpoint: str | None) -> None:
    """SQL spans; skipped without a collector, where they would only cost."""
    if not otlp_endpoint:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine)


def inject_headers() -> dict[str, str]:
    """The W3C trace headers for an outgoing message; outside any trace, a new one starts
    here, so every event can be followed from its producer on."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    else:
        with tracer.start_as_current_span("event publish", kind=trace.SpanKind.PRODUCER):
            propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, Any]) -> Any:
    return propagate.extract({k: str(v) for k, v in headers.items()})


tracer = trace.get_tracer("shardz")

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
    """Record and export spans only when a collector is configured. Without one, the API's
    no-op provider still carries an incoming `traceparent` through HTTP and events, at no
    cost per request (a recording provider would also switch on FastAPI's native spans)."""
    global _configured
    if _configured or not otlp_endpoint:
        return
    _configured = True
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
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
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, Any]) -> Any:
    return propagate.extract({k: str(v) for k, v in headers.items()})


tracer = trace.get_tracer("shardz")

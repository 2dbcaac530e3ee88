"""OpenTelemetry tracing: a span per request and per upstream attempt, exported over OTLP.

Off unless an endpoint is configured (`tracing.otlp_endpoint` or OTEL_EXPORTER_OTLP_ENDPOINT):
then the gateway exports nothing, and `gateway.traceparent` alone gives each request its trace
id (the client's valid traceparent goes upstream as it came; without one, a fresh trace).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config import TracingSettings
from gateway.traceparent import TraceContext

_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    def __init__(self, settings: TracingSettings, exporter: SpanExporter | None = None) -> None:
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
        # The gateway's own provider, not the global one: tests and embedders keep theirs.
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("responses-gateway")

    def shutdown(self) -> None:
        self.provider.shutdown()

    @contextmanager
    def request_span(self, name: str, headers: Mapping[str, str]) -> Iterator[trace.Span]:
        parent = _PROPAGATOR.extract(dict(headers))
        with self.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
            yield span

    @contextmanager
    def upstream_span(
        self, provider: str, model: str, attempt: int, carrier: dict[str, str]
    ) -> Iterator[trace.Span]:
        """A client span for one upstream attempt; its context goes into `carrier`."""
        with self.tracer.start_as_current_span(
            f"upstream {provider}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.system": provider,
                "gen_ai.request.model": model,
                "gateway.attempt": attempt,
            },
        ) as span:
            _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span, Context()))
            yield span


def mark_error(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def span_trace(span: trace.Span) -> TraceContext:
    """The request's trace as its server span has it (the client's trace id when it sent a
    valid one), so that the log line and the upstream call name the same trace."""
    context = span.get_span_context()
    flags = "01" if context.trace_flags.sampled else "00"
    return TraceContext(f"{context.trace_id:032x}", flags, f"{context.span_id:016x}")

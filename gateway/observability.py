"""Logs as JSON lines (one per request, no secrets, no prompts) and per-request metrics."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from aiohttp import web

from gateway import metrics
from gateway.errors import GatewayError, RateLimitError
from gateway.keys import CALL, CLIENT_GONE, REQUEST_ID, TRACE
from gateway.models import Call
from gateway.redact import guard_library_loggers, printable, redact, suspect

access = logging.getLogger("gateway.access")

_QUIET = frozenset({"healthz", "readyz", "serve_metrics"})

# LogRecord attributes that are not caller-given `extra` fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {"message"}


class JSONFormatter(logging.Formatter):
    """One JSON object a line, whatever the record holds: secrets redacted, text that is not
    UTF-8 escaped, and a record that cannot be rendered still becomes a valid line."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception:
            return orjson.dumps(
                {
                    "ts": round(record.created, 3),
                    "level": record.levelname.lower(),
                    "logger": printable(record.name),
                    "msg": "unformattable log record",
                }
            ).decode()

    def _format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # a library logger's filter already rendered (and redacted) it
            line["exc"] = record.exc_text
        text = _dumps(line)
        # One look at the whole line; only a suspect one is redacted field by field.
        return _dumps(_scrub(line)) if suspect(text) else text


def _dumps(line: dict[str, Any]) -> str:
    try:
        return orjson.dumps(line, default=str).decode()
    except TypeError:
        # A lone surrogate (bytes a client sent that are not UTF-8) is not valid JSON text.
        clean = {k: printable(v) if isinstance(v, str) else v for k, v in line.items()}
        return orjson.dumps(clean, default=lambda v: printable(str(v))).decode()


def _scrub(value: Any, depth: int = 0) -> Any:
    """`value` (a field of a log line) with every text in it redacted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if depth > 8:
        return "..."
    if isinstance(value, dict):
        return {redact(str(k)): _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, depth + 1) for v in value]
    return redact(str(value))


def setup_logging(level: str, access_log: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    access.disabled = not access_log
    guard_library_loggers()


def trace_id(request: web.Request) -> str | None:
    return request[TRACE].trace_id if TRACE in request else None


def observe(
    request: web.Request,
    status: int,
    started: float,
    error: BaseException | None,
    operation: str | None = None,
) -> None:
    """Count the request and write its access line, after its answer (stream included) ended.
    `operation` names one of several requests made on one connection (a WebSocket's creates);
    by default it is the route's handler."""
    elapsed = time.monotonic() - started
    if operation is None:
        operation = getattr(request.match_info.handler, "__name__", "unknown")
    call: Call | None = request.get(CALL)
    gone = request.get(CLIENT_GONE, False) or (call is not None and call.client_gone)
    if gone:
        metrics.CLIENTS_GONE.inc()
        if call is not None and call.status:
            status = call.status  # 499, or 200 when the whole answer had gone out
    model = provider = ""
    if call is not None:
        model = call.route.name if call.route else _bounded(call.model, call)
        provider = call.target.provider.name if call.target else ""
        usage = call.usage
        if usage is not None:
            metrics.count_tokens(model, usage.input_tokens, usage.output_tokens)
        if call.overhead_s is not None:
            metrics.OVERHEAD.observe(call.overhead_s)
        elif call.upstream_s is not None:
            metrics.OVERHEAD.observe(max(elapsed - call.upstream_s, 0.0))
    metrics.count_request(operation, model, provider, status, elapsed)
    if isinstance(error, RateLimitError):
        metrics.LIMIT_REFUSALS.labels(error.code or "requests").inc()
    if operation in _QUIET:
        return
    if not access.disabled and access.isEnabledFor(logging.INFO):
        fields = _fields(request, call, operation, status, elapsed, error)
        if gone:
            fields["client_gone"] = True
        access.info("request", extra=fields)


def _bounded(model: str, call: Call) -> str:
    """A `provider/model` name is the caller's choice: label it by its provider only."""
    if call.target is not None and "/" in model:
        return f"{call.target.provider.name}/*"
    return "" if call.target is None else model


def _fields(
    request: web.Request,
    call: Call | None,
    operation: str,
    status: int,
    elapsed: float,
    error: BaseException | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": request.get(REQUEST_ID),
        "trace_id": trace_id(request),
        "method": request.method,
        "path": request.path,
        "operation": operation,
        "status": status,
        "latency_ms": round(elapsed * 1000, 2),
    }
    if isinstance(error, GatewayError):
        fields["error_code"] = error.code
    if call is not None:
        principal = call.principal
        fields.update(
            request_id=call.request_id,
            key_id=principal.id if principal else None,
            project=principal.project if principal else None,
            model=call.model or None,
            stream=call.stream,
            provider=call.target.provider.name if call.target else None,
            upstream_model=call.target.model if call.target else None,
        )
        if call.usage is not None:
            fields.update(
                input_tokens=call.usage.input_tokens, output_tokens=call.usage.output_tokens
            )
            if call.usage.estimated:
                fields["usage_estimated"] = True
        if call.guard is not None and call.guard.hits:
            fields["guardrails"] = call.guard.names  # rule names, never the text they matched
    return {k: v for k, v in fields.items() if v is not None}

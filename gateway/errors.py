"""Every error the gateway answers with, and the OpenAI envelope it renders to.

GatewayError                     500 server_error
├── InvalidRequestError          400 invalid_request_error (code varies)
│   └── UnsupportedMediaTypeError 415
├── AuthenticationError          401 invalid_api_key
├── PermissionDeniedError        403 (code varies: model_not_allowed, ...)
├── NotFoundError                404 (code varies: model_not_found, ...)
├── ConflictError                409, not retried
├── PayloadTooLargeError         413
├── RateLimitError               429 rate_limit_exceeded, with retry-after
├── NotImplementedByGatewayError 501, not retried
├── UpstreamError                502 upstream_error
├── ServiceUnavailableError      503 (code varies), with retry-after
└── UpstreamTimeoutError         504 upstream_timeout

Each class carries its status; `middleware.error_middleware` is the only place
one becomes an HTTP answer. This module also owns the shapes an error takes: the
envelope (`envelope`, `internal_error`), a stream's `error` event (`error_frame`), and a
failed Response's `error` and `response.failed` event (`response_error`, `failed_event`).
What an upstream's failure maps to lives in `errors_upstream`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from gateway.events import ERROR, FAILED


def envelope(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, object]:
    """The OpenAI error envelope: `{"error": {message, type, param, code}}`."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class GatewayError(Exception):
    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None
    # False: the official SDKs must not retry (they retry 409, 429 and 5xx by default).
    retryable: ClassVar[bool | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def envelope(self) -> dict[str, object]:
        return envelope(self.message, self.error_type, self.param, self.code)

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retryable is not None:
            headers.setdefault("x-should-retry", "true" if self.retryable else "false")
        return headers


class InvalidRequestError(GatewayError):
    status, error_type, default_code = 400, "invalid_request_error", "invalid_value"


class UnsupportedMediaTypeError(InvalidRequestError):
    status, default_code = 415, "unsupported_media_type"


class AuthenticationError(GatewayError):
    status, error_type, default_code = 401, "invalid_request_error", "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status, error_type, default_code = 403, "invalid_request_error", "permission_denied"


class NotFoundError(GatewayError):
    status, error_type, default_code = 404, "invalid_request_error", "not_found"


class ConflictError(GatewayError):
    status, error_type, default_code, retryable = 409, "invalid_request_error", "conflict", False


class PayloadTooLargeError(GatewayError):
    status, error_type, default_code = 413, "invalid_request_error", "request_too_large"


class RateLimitError(GatewayError):
    status, error_type, default_code = 429, "requests", "rate_limit_exceeded"


class NotImplementedByGatewayError(GatewayError):
    status, error_type, default_code, retryable = (
        501,
        "invalid_request_error",
        "not_implemented",
        False,
    )


# The gateway's and upstreams' failures keep GatewayError's type, server_error.
class UpstreamError(GatewayError):
    status, default_code = 502, "upstream_error"


class ServiceUnavailableError(GatewayError):
    status, default_code = 503, "service_unavailable"


class UpstreamTimeoutError(GatewayError):
    status, default_code = 504, "upstream_timeout"


def internal_error() -> dict[str, object]:
    """The 500 envelope of anything unexpected: it says nothing of what happened."""
    return envelope(
        "The gateway had an error while processing your request.",
        "server_error",
        None,
        "internal_error",
    )


def error_frame(error: GatewayError, sequence: int | None = None, code: str | None = None) -> bytes:
    """A stream's `error` event, for a failure before the stream had a Response (its code,
    message and param restated at the top, as the SDKs read them)."""
    code = code or error.code
    payload: dict[str, Any] = {"type": ERROR}
    if sequence is not None:
        payload["sequence_number"] = sequence
    payload["error"] = {
        "type": error.error_type,
        "code": code,
        "message": error.message,
        "param": error.param,
    }
    payload.update(code=code, message=error.message, param=error.param)
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


def response_error(
    error: GatewayError, default_code: str = "server_error", prefix: str = ""
) -> dict[str, str]:
    """The `error` of a Response that failed."""
    return {"code": error.code or default_code, "message": prefix + error.message}


def failed_event(response: dict[str, Any], sequence: int) -> dict[str, Any]:
    """The `response.failed` event that ends a stream with `response`."""
    return {"type": FAILED, "sequence_number": sequence, "response": response}


class ConfigError(Exception):
    """A config that cannot run: every problem as `path.in.file: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

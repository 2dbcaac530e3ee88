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
one becomes an HTTP answer.
"""

from __future__ import annotations

from typing import ClassVar


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
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

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


class UpstreamError(GatewayError):
    status, error_type, default_code = 502, "server_error", "upstream_error"


class ServiceUnavailableError(GatewayError):
    status, error_type, default_code = 503, "server_error", "service_unavailable"


class UpstreamTimeoutError(GatewayError):
    status, error_type, default_code = 504, "server_error", "upstream_timeout"


class ConfigError(Exception):
    """A config that cannot run: every problem as `path.in.file: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

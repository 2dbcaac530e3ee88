"""Every error class: its status, its envelope, and whether the SDKs may retry it."""

from __future__ import annotations

import pytest

from gateway import errors

ALL = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.GatewayError)
]
EXPECTED = {
    "GatewayError": 500,
    "InvalidRequestError": 400,
    "UnsupportedMediaTypeError": 415,
    "AuthenticationError": 401,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "ConflictError": 409,
    "PayloadTooLargeError": 413,
    "RateLimitError": 429,
    "NotImplementedByGatewayError": 501,
    "UpstreamError": 502,
    "ServiceUnavailableError": 503,
    "UpstreamTimeoutError": 504,
}


def test_every_class_is_covered() -> None:
    assert {cls.__name__ for cls in ALL} == set(EXPECTED)


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_status_and_envelope(cls: type[errors.GatewayError]) -> None:
    err = cls("something went wrong", param="input[0]")
    assert err.status == EXPECTED[cls.__name__]
    body = err.envelope()["error"]
    assert isinstance(body, dict)
    assert body == {
        "message": "something went wrong",
        "type": cls.error_type,
        "param": "input[0]",
        "code": cls.default_code,
    }


@pytest.mark.parametrize("cls", [errors.ConflictError, errors.NotImplementedByGatewayError])
def test_answers_that_cannot_help_on_retry_say_so(cls: type[errors.GatewayError]) -> None:
    assert cls("x").response_headers()["x-should-retry"] == "false"


def test_code_can_be_given() -> None:
    err = errors.NotFoundError("x", code="model_not_found")
    assert err.envelope()["error"] == {
        "message": "x",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }

"""The client's failures as the gateway's upstream errors, and which origins go by proxy."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeoutError
from gateway.errors_upstream import UPSTREAM_ERRORS, upstream_failure
from gateway.upstream_http import (
    ConnectError,
    ConnectTimeout,
    DisconnectedError,
    ProtocolError,
    ReadTimeout,
    UpstreamHTTPError,
    env_proxy,
)


@pytest.mark.parametrize(
    ("exc", "kind", "says"),
    [
        (ConnectError("cannot connect to 10.0.0.7:443"), UpstreamError, "could not be reached"),
        (ConnectTimeout("no connection"), UpstreamTimeoutError, "did not answer in time"),
        (ReadTimeout("no data"), UpstreamTimeoutError, "did not answer in time"),
        (
            DisconnectedError("lost"),
            UpstreamError,
            "closed the connection before its answer was complete",
        ),
        (ProtocolError("garbage"), UpstreamError, "failed (ProtocolError)"),
    ],
)
def test_each_failure_maps_to_the_gateways_class(
    exc: UpstreamHTTPError, kind: type[GatewayError], says: str
) -> None:
    assert isinstance(exc, UPSTREAM_ERRORS)
    failure = upstream_failure(exc, "openai")
    assert type(failure) is kind
    assert says in failure.message
    assert "10.0.0.7" not in failure.message  # hosts behind the gateway stay behind it


def test_the_environments_proxy_applies_unless_excluded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert env_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.svc.cluster.local")
    assert env_proxy("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert env_proxy("http://api.openai.com/v1") is None  # no HTTP_PROXY
    assert env_proxy("https://vllm.models.svc.cluster.local:8000/v1") is None
    assert env_proxy("https://localhost:8443/v1") is None

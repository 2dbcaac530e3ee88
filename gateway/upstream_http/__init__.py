"""A small HTTP/1.1 client for upstream calls: keep-alive pools per origin on asyncio
protocols, httptools parsing the answers, TLS with verification, streamed bodies with flow
control. Proxied origins are not its business (see proxy.env_proxy)."""

from gateway.upstream_http.errors import (
    ConnectError,
    ConnectTimeout,
    DisconnectedError,
    ProtocolError,
    ReadTimeout,
    UpstreamHTTPError,
)
from gateway.upstream_http.pool import Client
from gateway.upstream_http.proxy import env_proxy
from gateway.upstream_http.response import Response

__all__ = [
    "Client",
    "ConnectError",
    "ConnectTimeout",
    "DisconnectedError",
    "ProtocolError",
    "ReadTimeout",
    "Response",
    "UpstreamHTTPError",
    "env_proxy",
]

"""What the upstream client raises: each says how far the exchange got."""

from __future__ import annotations


class UpstreamHTTPError(Exception):
    """Anything that went wrong talking to an upstream over HTTP."""


class ConnectError(UpstreamHTTPError):
    """No connection: the name did not resolve, the port refused, or TLS failed."""


class ConnectTimeout(ConnectError, TimeoutError):
    """The connection (TLS handshake included) was not made within the connect timeout."""


class DisconnectedError(UpstreamHTTPError):
    """The upstream closed or reset the connection before its answer was complete."""


class ReadTimeout(UpstreamHTTPError, TimeoutError):
    """The upstream sent nothing for longer than the read timeout while an answer was due."""


class ProtocolError(UpstreamHTTPError):
    """The upstream's bytes are not an HTTP/1.1 answer."""

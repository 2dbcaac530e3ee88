"""Keep-alive connection pools, one per origin, and the client that routes requests to them."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from typing import Final
from urllib.parse import urljoin, urlsplit

from gateway.upstream_http.connection import Connection
from gateway.upstream_http.errors import ConnectError, ConnectTimeout, DisconnectedError
from gateway.upstream_http.resolve import Addresses
from gateway.upstream_http.response import Response

# How long a connection may sit idle in a pool before the pool closes it.
KEEPALIVE_S: Final = 30.0
# Same-origin 307/308 redirects followed for one request.
MAX_REDIRECTS: Final = 10
_PEEK: Final = socket.MSG_PEEK | socket.MSG_DONTWAIT
# Headers the client writes itself.
_OWN: Final = frozenset(("host", "content-length", "transfer-encoding"))


class OriginPool:
    """Idle connections to one scheme://host:port, most recently used first."""

    def __init__(self, client: Client, scheme: str, host: str, port: int) -> None:
        self.client = client
        self.host, self.port = host, port
        self.tls = scheme == "https"
        default = 443 if self.tls else 80
        name = f"[{host}]" if ":" in host else host
        self.host_header = name if port == default else f"{name}:{port}"
        self.addresses = Addresses(host, port)
        # Insertion-ordered: the oldest first for the sweep, the newest popped for reuse, and
        # any one removed at once when it is lost (thousands may go when an upstream restarts).
        self.idle: dict[Connection, None] = {}
        self.connections: set[Connection] = set()
        self.sweeper: asyncio.TimerHandle | None = None

    async def acquire(self) -> Connection:
        """An idle connection that is still open, or a new one. A connection the upstream
        closed while it sat idle is found out here, before any of a request is written."""
        idle = self.idle
        while idle:
            conn = idle.popitem()[0]
            if alive(conn):
                return conn
            conn.close()
        return await self.connect()

    async def connect(self) -> Connection:
        client = self.client
        try:
            async with asyncio.timeout(client.connect_timeout):
                return await self._connect()
        except TimeoutError as exc:
            raise ConnectTimeout(
                f"no connection to {self.host}:{self.port} in {client.connect_timeout:g} s"
            ) from exc

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for family, kind, proto, address in await self.addresses.get():
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return await self._handshake(sock)
        raise ConnectError(f"cannot connect to {self.host}:{self.port}: {error}")

    async def _handshake(self, sock: socket.socket) -> Connection:
        loop = asyncio.get_running_loop()
        client = self.client
        conn = Connection(self.forget, client.read_timeout)
        conn.sock = sock
        try:
            await loop.create_connection(
                lambda: conn,
                sock=sock,
                ssl=client.ssl_context if self.tls else None,
                server_hostname=self.host if self.tls else None,
            )
        except (OSError, ssl.SSLError) as exc:  # a certificate that does not verify, too
            sock.close()
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        except BaseException:
            sock.close()
            raise
        self.connections.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        """Back into the pool when the exchange on it finished cleanly; closed otherwise."""
        conn.busy = False
        if not conn.reusable() or self.client.closed:
            conn.close()
            return
        conn.idle_since = conn.loop.time()
        self.idle[conn] = None
        if self.sweeper is None:
            self.sweeper = conn.loop.call_later(KEEPALIVE_S, self.sweep)

    def forget(self, conn: Connection) -> None:
        """A connection was lost: it is no longer the pool's."""
        self.connections.discard(conn)
        self.idle.pop(conn, None)

    def sweep(self) -> None:
        """Close the connections idle for longer than KEEPALIVE_S (the oldest sit first)."""
        self.sweeper = None
        idle = self.idle
        while idle:
            oldest = next(iter(idle))
            now = oldest.loop.time()
            if now - oldest.idle_since < KEEPALIVE_S:
                wait = oldest.idle_since + KEEPALIVE_S - now
                self.sweeper = oldest.loop.call_later(wait, self.sweep)
                return
            del idle[oldest]
            oldest.close()

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        self.idle.clear()
        for conn in list(self.connections):
            conn.close()


def alive(conn: Connection) -> bool:
    """Whether an idle connection is still open and quiet: the socket is asked directly, so
    that a close the event loop has not yet reported is seen before a request goes out."""
    if conn.lost or conn.transport is None or conn.transport.is_closing():
        return False
    sock = conn.sock
    if sock is None:
        return True
    try:
        sock.recv(1, _PEEK)
    except BlockingIOError:
        return True  # open, and nothing unasked-for waiting
    except OSError:
        return False
    return False  # end of stream, or bytes nobody asked for


class Client:
    """Requests to any number of origins over pooled keep-alive connections.

    connect_timeout bounds making a connection (TLS included); read_timeout bounds each wait
    for the upstream's next bytes while an answer is due (None: no bound). There is no total
    timeout: a stream may run for an hour.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float | None = 600.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.pools: dict[tuple[str, str, int], OriginPool] = {}
        self.routes: dict[str, tuple[OriginPool, str]] = {}
        self.closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        return await self.request("POST", url, body, headers)

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Response:
        """Send the request and wait for the answer's status and headers; the body is the
        Response's to read. Raises the errors of gateway.upstream_http.errors.

        A 307 or 308 to the same origin is followed (the same method and body: a server that
        adds or drops a trailing slash); any other redirect is the answer.
        """
        resp = await self._exchange(method, url, body, headers)
        hops = 0
        while resp.status in (307, 308) and hops < MAX_REDIRECTS:
            location = resp.headers.get("Location")
            if location is None:
                break
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                break  # another origin: the account's key does not travel there
            await resp.read()
            url, hops = target, hops + 1
            resp = await self._exchange(method, url, body, headers)
        return resp

    async def _exchange(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Response:
        if self.closed:
            raise RuntimeError("the client is closed")
        route = self.routes.get(url)
        if route is None:
            route = self._route(url)
        pool, target = route
        head = _head(method, target, pool.host_header, len(body), headers)
        conn = await pool.acquire()
        if not conn.send(head, body):
            # Closed before any of the request was written: once more, on a new connection.
            conn.close()
            conn = await pool.connect()
            if not conn.send(head, body):
                conn.close()
                raise DisconnectedError("the upstream closed a new connection at once")
        try:
            await conn.wait_headers()
        except BaseException:
            pool.release(conn)  # unfinished: closed, not pooled
            raise
        return Response(conn, pool.release)

    def _route(self, url: str) -> tuple[OriginPool, str]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, parts.hostname, port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = OriginPool(self, scheme, parts.hostname, port)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        route = (pool, target)
        if len(self.routes) < 1024:  # a provider calls a handful of fixed URLs
            self.routes[url] = route
        return route

    async def close(self) -> None:
        """Close every connection, idle or in use."""
        self.closed = True
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
        self.routes.clear()
        await asyncio.sleep(0)  # let the transports finish closing


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)


def _head(method: str, target: str, host: str, length: int, headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"invalid character in the header {name!r}")
        if name.lower() in _OWN:
            continue
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")

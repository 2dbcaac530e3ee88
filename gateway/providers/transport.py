"""How providers reach their upstream: the pooled protocol client (gateway.upstream_http) for
origins reached directly, aiohttp's ClientSession for origins the environment sends through a
proxy (HTTP_PROXY / HTTPS_PROXY, unless NO_PROXY names them). Both answer the same way."""

from __future__ import annotations

import io
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from functools import cache
from typing import Final, Protocol

import aiohttp

from gateway.config import ProviderSettings
from gateway.upstream_http import Client, env_proxy

# aiohttp warns that bodies above 1 MiB given as bytes block the loop; BytesIO streams them.
LARGE_BODY: Final = 1024 * 1024


class Answer(Protocol):
    """An upstream's answer, its body read whole or as it arrives; release() when done
    (a body not read to its end closes the connection: the upstream learns nobody listens)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content_type(self) -> str: ...

    async def read(self) -> bytes: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def release(self) -> None: ...


class LazyHeaders(Mapping[str, str]):
    """An answer's headers, decoded from its raw lines only if something reads them: a
    success's never are (a refusal's Retry-After is)."""

    __slots__ = ("_answer", "_headers")

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._headers: Mapping[str, str] | None = None

    def _decoded(self) -> Mapping[str, str]:
        if self._headers is None:
            self._headers = self._answer.headers
        return self._headers

    def __getitem__(self, name: str) -> str:
        return self._decoded()[name]  # case-insensitive, as the answer's own

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())


class Transport(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer: ...

    async def close(self) -> None: ...


class ProxiedAnswer:
    """aiohttp's response behind the Answer interface."""

    __slots__ = ("_resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    @property
    def content_type(self) -> str:
        return self._resp.content_type

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        finally:
            self._resp.release()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._resp.content.iter_any()

    def release(self) -> None:
        self._resp.release()


class ProxiedTransport:
    """aiohttp's ClientSession, which honours the environment's proxy settings."""

    def __init__(self, settings: ProviderSettings) -> None:
        # limit=0: the default pool of 100 would queue the 101st concurrent stream silently.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        # No total timeout: a stream may run for an hour. Idle reads are bounded instead.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout_s, sock_read=settings.timeout_s
        )
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=True)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        data = body if len(body) < LARGE_BODY else io.BytesIO(body)
        return ProxiedAnswer(
            await self.session.post(url, data=data, headers=headers, allow_redirects=False)
        )

    async def close(self) -> None:
        await self.session.close()


@cache
def tls_context() -> ssl.SSLContext:
    """The system's trust store (SSL_CERT_FILE / SSL_CERT_DIR honoured), loaded once."""
    return ssl.create_default_context()


def new_transport(settings: ProviderSettings) -> Transport:
    """The transport for a provider's origin, chosen once when the provider is made."""
    if env_proxy(settings.base_url):
        return ProxiedTransport(settings)
    return Client(
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.timeout_s,
        ssl_context=tls_context(),
    )

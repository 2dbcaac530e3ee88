"""The upstream client runs under both event loops the gateway may use."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
import trustme
import uvloop

from gateway.upstream_http import Client
from tests.support.stub import StubUpstream
from tests.support.upstream_http_servers import Handler, RawServer


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Any]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for localhost and 127.0.0.1, from the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts the test CA."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    http = Client(connect_timeout=2.0, read_timeout=5.0)
    yield http
    await http.close()


@pytest.fixture
def stub_url(stub: StubUpstream) -> str:
    return stub.url + "/v1/responses"


Serve = Callable[..., Awaitable[RawServer]]
MakeClient = Callable[..., Client]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a scripted server (handler, tls=None); every one is closed after the test."""
    servers: list[RawServer] = []

    async def start(handler: Handler, tls: ssl.SSLContext | None = None) -> RawServer:
        server = await RawServer(handler, tls=tls).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """A client with the given settings; every one is closed after the test."""
    clients: list[Client] = []

    def make(**settings: Any) -> Client:
        client = Client(**settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()

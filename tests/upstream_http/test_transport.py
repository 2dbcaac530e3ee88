"""Providers reach a direct origin through the protocol client, a proxied one through aiohttp."""

from __future__ import annotations

import pytest

from gateway.config import ProviderSettings
from gateway.providers.transport import ProxiedTransport, Transport, new_transport
from gateway.upstream_http import Client
from tests.support.upstream_http_servers import Peer, keep_alive
from tests.upstream_http.conftest import Serve

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def settings(base_url: str) -> ProviderSettings:
    return ProviderSettings(name="p", api="responses", base_url=base_url)


async def test_a_direct_origin_gets_the_protocol_client(no_proxy_env: pytest.MonkeyPatch) -> None:
    transport = new_transport(settings("https://api.openai.com/v1"))
    try:
        assert isinstance(transport, Client)
    finally:
        await transport.close()


async def test_an_origin_named_in_no_proxy_goes_direct(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    no_proxy_env.setenv("NO_PROXY", "vllm.internal")
    transport = new_transport(settings("https://vllm.internal/v1"))
    try:
        assert isinstance(transport, Client)
    finally:
        await transport.close()


async def test_a_proxied_origin_goes_through_the_proxy(
    serve: Serve, no_proxy_env: pytest.MonkeyPatch
) -> None:
    async def proxy(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
            b'{"via": 1}\n'
        )
        await peer.writer.drain()
        await peer.request()

    server = await serve(proxy)
    no_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    transport = new_transport(settings("http://upstream.example/v1"))
    try:
        assert isinstance(transport, ProxiedTransport)
        answer = await transport.post(
            "http://upstream.example/v1/responses", b"{}", {"Content-Type": "application/json"}
        )
        assert answer.status == 200
        assert answer.content_type == "application/json"
        assert answer.headers["content-length"] == "11"
        assert await answer.read() == b'{"via": 1}\n'
        (seen,) = server.requests
        assert seen.startswith(b"POST http://upstream.example/v1/responses HTTP/1.1\r\n")
    finally:
        await transport.close()


@pytest.mark.parametrize("proxied", [False, True])
async def test_both_transports_stream_alike(
    serve: Serve, no_proxy_env: pytest.MonkeyPatch, proxied: bool
) -> None:
    async def chunked(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        await peer.writer.drain()
        peer.writer.write(b"3\r\ndef\r\n0\r\n\r\n")
        await keep_alive(peer)

    server = await serve(chunked)
    target = "http://upstream.example/v1" if proxied else server.url("/v1")
    if proxied:
        no_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    transport: Transport = new_transport(settings(target))
    try:
        answer = await transport.post(target + "/responses", b"{}", {})
        assert answer.content_type == "text/event-stream"
        assert b"".join([chunk async for chunk in answer]) == b"abcdef"
        answer.release()
    finally:
        await transport.close()

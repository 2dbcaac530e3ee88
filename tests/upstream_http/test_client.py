"""The upstream client against real servers: answers whole and streamed, keep-alive, TLS."""

from __future__ import annotations

import asyncio
import gzip
import ssl

import orjson
import pytest
import trustme

from gateway.upstream_http import Client, ConnectError
from gateway.upstream_http.resolve import Address, Addresses
from tests.support.stub import StubUpstream
from tests.support.upstream_http_servers import Peer, keep_alive
from tests.upstream_http.conftest import MakeClient, Serve

JSON = {"Content-Type": "application/json"}


async def test_json_answer_from_the_stub(client: Client, stub: StubUpstream, stub_url: str) -> None:
    body = orjson.dumps({"model": "m", "input": "hi"})
    resp = await client.post(stub_url, body, {**JSON, "X-Client-Request-Id": "req-1"})
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["CONTENT-TYPE"] == resp.headers["Content-Type"]
    answer = orjson.loads(await resp.read())
    assert answer["object"] == "response"
    assert stub.last.json == {"model": "m", "input": "hi"}
    assert stub.last.headers["X-Client-Request-Id"] == "req-1"
    assert stub.last.headers["Host"] == stub_url.split("/")[2]


async def test_the_connection_is_reused(client: Client, stub: StubUpstream, stub_url: str) -> None:
    for _ in range(3):
        resp = await client.post(stub_url, b'{"model": "m", "input": "x"}', JSON)
        assert resp.status == 200
        await resp.read()
    (pool,) = client.pools.values()
    assert len(pool.connections) == 1
    assert len(stub.requests) == 3


async def test_concurrent_requests_each_get_their_answer(stub: StubUpstream, stub_url: str) -> None:
    # 32 connections opened at once: on a loaded 2-core machine some connects take seconds,
    # and what is asserted here is which answer each request gets, not how fast.
    client = Client(connect_timeout=15.0, read_timeout=15.0)
    try:
        await _each_gets_its_answer(client, stub_url)
    finally:
        await client.close()


async def _each_gets_its_answer(client: Client, stub_url: str) -> None:
    async def one(i: int) -> str:
        resp = await client.post(stub_url, orjson.dumps({"model": f"m{i}", "input": "x"}), JSON)
        return str(orjson.loads(await resp.read())["model"])

    assert await asyncio.gather(*(one(i) for i in range(32))) == [f"m{i}" for i in range(32)]
    (pool,) = client.pools.values()
    assert 1 <= len(pool.idle) <= 32
    assert len(pool.idle) == len(pool.connections)


async def test_a_stream_arrives_in_chunks(
    client: Client, stub: StubUpstream, stub_url: str
) -> None:
    stub.behaviour.between_s = 0.01
    body = orjson.dumps({"model": "m", "input": "hello there", "stream": True})
    resp = await client.post(stub_url, body, JSON)
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    chunks = [chunk async for chunk in resp]
    assert len(chunks) > 1
    whole = b"".join(chunks)
    assert whole.startswith(b"event: response.created")
    assert b"event: response.completed" in whole
    (pool,) = client.pools.values()
    assert len(pool.idle) == 1  # read to its end: pooled


async def test_an_error_status_is_an_answer(
    client: Client, stub: StubUpstream, stub_url: str
) -> None:
    stub.behaviour.status, stub.behaviour.body = 429, b'{"error": {"message": "slow down"}}'
    resp = await client.post(stub_url, b"{}", JSON)
    assert resp.status == 429
    assert await resp.read() == b'{"error": {"message": "slow down"}}'


async def test_chunked_and_length_bodies_on_one_connection(serve: Serve, client: Client) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await peer.writer.drain()
        await asyncio.sleep(0.01)
        peer.writer.write(b"6\r\n world\r\n0\r\n\r\n")
        await peer.request()
        await peer.answer(b"second")

    server = await serve(handler)
    first = await client.post(server.url(), b"{}", JSON)
    assert await first.read() == b"hello world"
    second = await client.post(server.url(), b"{}", JSON)
    assert await second.read() == b"second"
    assert server.connections == 1


async def test_a_body_without_length_ends_with_the_connection(serve: Serve, client: Client) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await peer.writer.drain()
        peer.writer.close()

    server = await serve(handler)
    resp = await client.post(server.url(), b"{}", JSON)
    assert await resp.read() == b"until the end"
    (pool,) = client.pools.values()
    assert not pool.idle  # the connection ended with the body: never pooled


async def test_an_interim_answer_is_skipped(serve: Serve, client: Client) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await peer.answer(b"final", headers="X-Final: yes\r\n")
        await peer.request()

    server = await serve(handler)
    resp = await client.post(server.url(), b"{}", JSON)
    assert resp.status == 200
    assert resp.headers["x-final"] == "yes"
    assert await resp.read() == b"final"


async def test_a_gzipped_body_is_decoded(serve: Serve, client: Client) -> None:
    packed = gzip.compress(b'{"ok": true}')

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.answer(packed, headers="Content-Encoding: gzip\r\n")
        await peer.request()

    server = await serve(handler)
    resp = await client.post(server.url(), b"{}", JSON)
    assert await resp.read() == b'{"ok": true}'


async def test_header_injection_is_refused(client: Client, stub_url: str) -> None:
    with pytest.raises(ValueError, match="invalid character"):
        await client.post(stub_url, b"{}", {"X-Evil": "a\r\nX-Injected: 1"})


async def test_a_large_body_goes_whole(client: Client, stub: StubUpstream, stub_url: str) -> None:
    body = orjson.dumps({"model": "m", "input": "x" * (3 * 1024 * 1024)})
    resp = await client.post(stub_url, body, JSON)
    assert resp.status == 200
    await resp.read()
    assert stub.last.body == body


async def test_tls_verifies_the_certificate_and_sends_sni(
    serve: Serve, make_client: MakeClient, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    names: list[str | None] = []
    server_tls.sni_callback = lambda _sock, name, _ctx: names.append(name)
    server = await serve(keep_alive, tls=server_tls)
    http = make_client(connect_timeout=2.0, read_timeout=5.0, ssl_context=client_tls)
    for _ in range(2):
        resp = await http.post(server.url(host="localhost"), b"{}", JSON)
        assert await resp.read() == b"ok"
    assert names == ["localhost"]  # one handshake: the second request reused it
    assert server.connections == 1


async def test_tls_refuses_an_unknown_certificate(
    serve: Serve, make_client: MakeClient, server_tls: ssl.SSLContext
) -> None:
    server = await serve(keep_alive, tls=server_tls)
    http = make_client(connect_timeout=2.0, read_timeout=5.0)  # the system's CAs only
    with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await http.post(server.url(host="localhost"), b"{}", JSON)
    assert server.requests == []


async def test_tls_refuses_a_certificate_for_another_name(
    serve: Serve, make_client: MakeClient, ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.test").configure_cert(context)
    server = await serve(keep_alive, tls=context)
    http = make_client(connect_timeout=2.0, read_timeout=5.0, ssl_context=client_tls)
    with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await http.post(server.url(host="localhost"), b"{}", JSON)
    assert server.requests == []


async def test_a_burst_of_new_connections_looks_the_name_up_once(
    serve: Serve, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = 0
    look_up = Addresses._look_up

    async def counted(self: Addresses) -> list[Address]:
        nonlocal lookups
        lookups += 1
        return await look_up(self)

    monkeypatch.setattr(Addresses, "_look_up", counted)
    server = await serve(keep_alive)
    url = server.url(host="localhost")

    async def one() -> bytes:
        return await (await client.post(url, b"{}", JSON)).read()

    assert await asyncio.gather(*(one() for _ in range(16))) == [b"ok"] * 16
    assert server.connections == 16
    assert lookups == 1


async def test_a_name_that_does_not_resolve_is_a_connect_error(client: Client) -> None:
    with pytest.raises(ConnectError, match="cannot resolve"):
        await client.post("http://no-such-host.invalid/v1/responses", b"{}", JSON)


async def test_a_same_origin_307_is_followed_with_the_body(serve: Serve, client: Client) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /v1/responses/\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        await peer.request()
        await peer.answer(b"moved")
        await peer.request()

    server = await serve(handler)
    resp = await client.post(server.url(), b'{"input": "x"}', JSON)
    assert resp.status == 200
    assert await resp.read() == b"moved"
    _, second = server.requests
    assert second.startswith(b"POST /v1/responses/ HTTP/1.1\r\n")
    assert second.endswith(b'\r\n\r\n{"input": "x"}')
    assert server.connections == 1  # the redirect's connection was reused


async def test_a_redirect_to_another_origin_is_the_answer(serve: Serve, client: Client) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(
            b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://elsewhere.example/v1\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        await peer.request()

    server = await serve(handler)
    resp = await client.post(server.url(), b"{}", JSON)
    assert resp.status == 308
    await resp.read()
    assert len(server.requests) == 1

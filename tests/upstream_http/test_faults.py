"""The upstream client when servers misbehave: resets, stalls, idle closes, refusals."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.upstream_http import (
    Client,
    ConnectError,
    ConnectTimeout,
    DisconnectedError,
    ProtocolError,
    ReadTimeout,
    pool as pool_module,
)
from tests.support.upstream_http_servers import Peer, keep_alive, poll
from tests.upstream_http.conftest import MakeClient, Serve

JSON = {"Content-Type": "application/json"}


async def test_a_refused_port_is_a_connect_error(client: Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        with pytest.raises(ConnectError):
            await client.post(f"http://127.0.0.1:{port}/v1/responses", b"{}", JSON)


async def test_a_tls_handshake_that_stalls_is_a_connect_timeout(
    serve: Serve, make_client: MakeClient
) -> None:
    async def silent(peer: Peer) -> None:
        await peer.reader.read()  # accepts, never speaks TLS

    server = await serve(silent)
    http = make_client(connect_timeout=0.2, read_timeout=5.0)
    with pytest.raises(ConnectTimeout) as caught:
        await http.post(server.url().replace("http:", "https:"), b"{}", JSON)
    assert isinstance(caught.value, TimeoutError)


async def test_a_reset_before_the_headers(serve: Serve, client: Client) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.reset()

    server = await serve(handler)
    with pytest.raises(DisconnectedError):
        await client.post(server.url(), b"{}", JSON)
    assert len(server.requests) == 1


async def test_a_reset_mid_body_when_reading_whole(serve: Serve, client: Client) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await peer.writer.drain()
        peer.reset()

    server = await serve(handler)
    resp = await client.post(server.url(), b"{}", JSON)
    assert resp.status == 200
    with pytest.raises(DisconnectedError):
        await resp.read()
    (pool,) = client.pools.values()
    assert not pool.idle


async def test_a_cut_mid_stream_hands_out_what_came_then_fails(
    serve: Serve, client: Client
) -> None:
    sent = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await peer.writer.drain()
        await sent.wait()
        peer.writer.close()  # an orderly close, but the chunked body never ended

    server = await serve(handler)
    resp = await client.post(server.url(), b"{}", JSON)
    assert await anext(resp) == b"first"
    sent.set()
    with pytest.raises(DisconnectedError):
        await anext(resp)


async def test_stalled_headers_are_a_read_timeout(serve: Serve, make_client: MakeClient) -> None:
    async def stall(peer: Peer) -> None:
        await peer.request()
        await peer.reader.read()  # never answers

    server = await serve(stall)
    http = make_client(connect_timeout=2.0, read_timeout=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ReadTimeout) as caught:
        await http.post(server.url(), b"{}", JSON)
    assert isinstance(caught.value, TimeoutError)
    assert 0.19 <= loop.time() - started < 2.0
    await asyncio.wait_for(server.closed.wait(), 5)  # the stalled connection was dropped


async def test_a_stream_that_stalls_is_a_read_timeout_but_a_slow_one_is_not(
    serve: Serve, make_client: MakeClient
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):  # a piece every 0.1 s: slower in all than the timeout, never idle
            peer.writer.write(b"1\r\nx\r\n")
            await peer.writer.drain()
            await asyncio.sleep(0.1)
        await peer.reader.read()  # then stalls

    server = await serve(handler)
    http = make_client(connect_timeout=2.0, read_timeout=0.3)
    resp = await http.post(server.url(), b"{}", JSON)
    got = b""
    with pytest.raises(ReadTimeout):
        async for chunk in resp:
            got += chunk
    assert got == b"xxxx"


async def test_a_consumer_that_pauses_is_not_timed_out(
    serve: Serve, make_client: MakeClient
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.answer(b"whole")
        await peer.request()

    server = await serve(handler)
    http = make_client(connect_timeout=2.0, read_timeout=0.1)
    resp = await http.post(server.url(), b"{}", JSON)
    await asyncio.sleep(0.3)  # the time under test: longer than the read timeout
    assert await resp.read() == b"whole"


async def test_garbage_is_a_protocol_error(serve: Serve, client: Client) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await peer.reader.read()

    server = await serve(handler)
    with pytest.raises(ProtocolError):
        await client.post(server.url(), b"{}", JSON)


async def test_a_server_that_closes_idle_connections(serve: Serve, client: Client) -> None:
    async def one_then_close_when_idle(peer: Peer) -> None:
        await peer.request()
        await peer.answer()
        await asyncio.sleep(0.05)  # the server's keep-alive timeout
        peer.writer.close()

    server = await serve(one_then_close_when_idle)
    resp = await client.post(server.url(), b"{}", JSON)
    assert await resp.read() == b"ok"
    (pool,) = client.pools.values()
    await poll(lambda: not pool.idle)  # the close was seen, the connection dropped
    resp = await client.post(server.url(), b"{}", JSON)
    assert await resp.read() == b"ok"
    assert server.connections == 2
    assert len(server.requests) == 2


async def test_a_close_the_loop_has_not_reported_is_found_before_writing(
    serve: Serve, client: Client
) -> None:
    """The race: the upstream closed an idle connection and the event loop has not yet read
    the close. The request must go on a new connection, with nothing written on the old."""
    close_now = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.answer()
        if server.connections == 1:
            await close_now.wait()
            peer.writer.close()
            return
        await peer.request()

    server = await serve(handler)
    resp = await client.post(server.url(), b"{}", JSON)
    assert await resp.read() == b"ok"
    (pool,) = client.pools.values()
    (stale,) = pool.idle
    assert stale.transport is not None
    stale.transport.pause_reading()  # the loop does not look at this socket any more
    close_now.set()
    await asyncio.wait_for(server.closed.wait(), 5)  # on loopback the FIN is queued by now
    assert list(pool.idle) == [stale]  # still pooled: only the socket knows
    resp = await client.post(server.url(), b"{}", JSON)
    assert await resp.read() == b"ok"
    assert server.connections == 2
    assert len(server.requests) == 2


async def test_no_retry_once_the_request_was_written(serve: Serve, client: Client) -> None:
    """A pooled connection that breaks after the request went out: the server may have acted
    on it, so the failure is raised, never retried."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.answer()
        await peer.request()
        peer.reset()

    server = await serve(handler)
    resp = await client.post(server.url(), b"{}", JSON)
    assert await resp.read() == b"ok"
    with pytest.raises(DisconnectedError):
        await client.post(server.url(), b"{}", JSON)
    assert len(server.requests) == 2
    assert server.connections == 1


async def test_releasing_an_unread_stream_hangs_up(serve: Serve, client: Client) -> None:
    async def endless(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            peer.writer.write(b"4\r\ndata\r\n")
            await peer.writer.drain()
            await asyncio.sleep(0.01)

    server = await serve(endless)
    resp = await client.post(server.url(), b"{}", JSON)
    assert (await anext(resp)).startswith(b"data")
    resp.release()
    await asyncio.wait_for(server.closed.wait(), 5)
    (pool,) = client.pools.values()
    assert not pool.idle


async def test_idle_connections_expire(
    serve: Serve, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "KEEPALIVE_S", 0.05)
    server = await serve(keep_alive)
    resp = await client.post(server.url(), b"{}", JSON)
    await resp.read()
    (pool,) = client.pools.values()
    assert len(pool.idle) == 1
    await asyncio.wait_for(server.closed.wait(), 5)  # the client closed it
    assert not pool.idle

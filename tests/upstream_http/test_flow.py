"""Flow control: while the consumer of a stream lags, the client stops reading, so the
upstream's writes block instead of the client buffering the whole body."""

from __future__ import annotations

import asyncio

from gateway.upstream_http import Client
from gateway.upstream_http.connection import HIGH_WATER
from tests.support.upstream_http_servers import Peer, poll
from tests.upstream_http.conftest import Serve

JSON = {"Content-Type": "application/json"}
PIECE = 64 * 1024
TOTAL = 64 * 1024 * 1024


async def test_a_slow_consumer_makes_the_upstream_wait(serve: Serve, client: Client) -> None:
    written = 0
    peers: list[Peer] = []

    async def firehose(peer: Peer) -> None:
        nonlocal written
        peers.append(peer)
        await peer.request()
        peer.writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {TOTAL}\r\n\r\n".encode())
        piece = b"x" * PIECE
        while written < TOTAL:
            peer.writer.write(piece)
            written += PIECE
            await peer.writer.drain()
        await peer.request()

    server = await serve(firehose)
    resp = await client.post(server.url(), b"{}", JSON)
    got = len(await anext(resp))
    (pool,) = client.pools.values()
    (conn,) = pool.connections
    transport = conn.transport
    assert transport is not None
    await poll(lambda: not transport.is_reading())  # the consumer lags: reading stopped
    # The kernel's buffers fill, the upstream's own holds the rest, and it waits.
    await poll(lambda: peers[0].writer.transport.get_write_buffer_size() > 0)
    progress = -1
    while written != progress:  # settled: nothing moves while nobody reads
        progress = written
        await asyncio.sleep(0.1)
    assert written < TOTAL // 2
    assert conn.buffered <= HIGH_WATER + 1024 * 1024  # past the mark by a read at most
    async for chunk in resp:  # the consumer catches up: reading resumes to the end
        got += len(chunk)
    assert got == TOTAL
    assert written == TOTAL
    assert len(pool.idle) == 1


async def test_reading_whole_is_not_paused(serve: Serve, client: Client) -> None:
    size = 4 * HIGH_WATER

    async def big(peer: Peer) -> None:
        await peer.request()
        await peer.answer(b"y" * size)
        await peer.request()

    server = await serve(big)
    resp = await client.post(server.url(), b"{}", JSON)
    assert len(await asyncio.wait_for(resp.read(), 10)) == size


async def test_a_connection_left_paused_is_not_reused(serve: Serve) -> None:
    # The whole body arrives in the read that pauses reading; its consumer then stops. The
    # connection must not go back to the pool still paused: the next answer would never come.
    size = 2 * HIGH_WATER

    async def big(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            peer.writer.write(b"x" * size)
            await peer.writer.drain()

    server = await serve(big)
    client = Client(connect_timeout=2.0, read_timeout=2.0)
    try:
        first = await client.post(server.url(), b"{}", JSON)
        await anext(first)
        (pool,) = client.pools.values()
        (conn,) = pool.connections
        await poll(lambda: conn.complete and conn.paused)
        first.release()
        second = await client.post(server.url(), b"{}", JSON)
        assert len(await second.read()) == size
    finally:
        await client.close()

"""The benchmark's fixed-answer upstream gives every answer an id of its own, as a real
upstream does: a gateway storing responses must measure keeping new ones, not finding each
id already kept."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import orjson

from bench import upstream


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stream_ids(body: bytes) -> list[str]:
    ids = []
    for block in body.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                event = orjson.loads(line[len(b"data: ") :])
                if "response" in event:
                    ids.append(event["response"]["id"])
    return ids


async def test_raw_upstream_answers_each_request_with_a_new_id() -> None:
    port = _free_port()
    server = asyncio.create_task(upstream.serve_raw("127.0.0.1", port))
    try:
        url = f"http://127.0.0.1:{port}/v1/responses"
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # the server is up once it answers
                try:
                    async with session.post(url, data=b"{}") as r:
                        first = orjson.loads(await r.read())
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
            async with session.post(url, data=b"{}") as r:
                second = orjson.loads(await r.read())
            streams = []
            for _ in range(2):
                async with session.post(url, data=b'{"stream":true}') as r:
                    streams.append(_stream_ids(await r.read()))
    finally:
        server.cancel()
    ids = {first["id"], second["id"]}
    assert len(ids) == 2
    assert all(len(i) == len(upstream.RESPONSE_ID) for i in ids)
    # Each stream names one id in created, in_progress and completed; each stream its own.
    assert [len(s) for s in streams] == [3, 3]
    assert all(len(set(s)) == 1 for s in streams)
    assert len({s[0] for s in streams} | ids) == 4

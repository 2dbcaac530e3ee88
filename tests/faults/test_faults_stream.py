"""Streams whose upstream or client fails mid-request: every request is answered as well as it
can be, kept or not as it says, charged and logged exactly once, however it ended."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.keys import DEPS
from gateway.mockgen import build_response
from gateway.streaming.sse import SSEParser
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.processes import Replica
from tests.support.redis_server import RedisServer, usage_records
from tests.support.stream_faults import (
    RESET,
    SSE_HEAD,
    STALL,
    AccessLines,
    RawClient,
    ScriptedUpstream,
    cancelling_gateway,
    clients_gone,
    frames,
    on_scripted,
    wait_for,
)
from tests.support.stub import Behaviour, StubUpstream

AUTH = {"Authorization": f"Bearer {KEY_A}"}
Client = TestClient[Any, Any]
STREAM = {"model": "gpt-test", "input": "Tell me a story", "stream": True}
JSON = {"model": "gpt-test", "input": "Tell me a story"}


def canned() -> list[dict[str, Any]]:
    return build_response({"input": "Tell me a story"}, model="gpt-test").events()


def events_in(raw: bytes) -> list[dict[str, Any]]:
    """The events of a stream read whole by an HTTP client (no chunked framing left)."""
    return [orjson.loads(e.data) for e in SSEParser().feed(raw)]


def records(gateway: Client) -> list[dict[str, str]]:
    """The usage records (no Redis here: the governor's in-memory stream)."""
    return list(gateway.app[DEPS].governor.memory.stream)


async def settled(gateway: Client, access: AccessLines, count: int = 1) -> dict[str, Any]:
    """Wait until one request has been logged and its usage recorded; answers its log line."""
    await wait_for(lambda: len(access.lines) >= count)
    # Its ticket was handed to the settler before its line was logged: once the settler has
    # settled everything handed to it, a second record (or a missing one) shows.
    await gateway.app[DEPS].settler.flush()
    assert len(access.lines) == count, access.lines
    assert len(records(gateway)) == count, records(gateway)
    return access.lines[-1]


# -- clients that leave --------------------------------------------------------------------


async def test_client_leaving_before_the_headers_is_settled_logged_and_counted(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
) -> None:
    gateway, upstream = await on_scripted(make_gateway, config, scripted, [STALL])
    gone = clients_gone()
    client = RawClient(str(gateway.make_url("")))
    await client.leave("POST", "/v1/responses", AUTH, STREAM, when=upstream.received.wait)
    await asyncio.wait_for(upstream.hung_up.wait(), 5)
    line = await settled(gateway, access)
    assert line["status"] == 499
    assert line["client_gone"] is True
    assert clients_gone() == gone + 1
    (record,) = records(gateway)
    assert record["usage"] == "estimated"
    assert int(record["input_tokens"]) > 0
    assert record["output_tokens"] == "0"
    assert record["status"] == "499"
    assert float(record["cost_usd"]) > 0


async def test_client_leaving_after_created_is_charged_its_input(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, config)
    stub.behaviour = Behaviour(stall_after=2)
    gone = clients_gone()
    client = RawClient(str(gateway.make_url("")))
    read = await client.leave("POST", "/v1/responses", AUTH, STREAM, after=b"response.created")
    await asyncio.wait_for(stub.cancelled.wait(), 5)
    line = await settled(gateway, access)
    assert (line["status"], line["client_gone"]) == (499, True)
    assert clients_gone() == gone + 1
    (record,) = records(gateway)
    assert (record["usage"], record["output_tokens"]) == ("estimated", "0")
    assert int(record["input_tokens"]) > 0
    # Nothing was answered, so nothing is kept.
    rid = orjson.loads(read.split(b"data: ", 1)[1].split(b"\n", 1)[0])["response"]["id"]
    assert (await gateway.get(f"/v1/responses/{rid}", headers=AUTH)).status == 404


async def test_client_leaving_mid_delta_is_charged_the_output_it_was_sent(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, config)
    stub.behaviour = Behaviour(stall_after=7)  # three deltas out, then nothing
    gone = clients_gone()
    client = RawClient(str(gateway.make_url("")))
    await client.leave("POST", "/v1/responses", AUTH, STREAM, after=b"output_text.delta")
    await asyncio.wait_for(stub.cancelled.wait(), 5)
    line = await settled(gateway, access)
    assert (line["status"], line["client_gone"]) == (499, True)
    assert clients_gone() == gone + 1
    (record,) = records(gateway)
    assert record["usage"] == "estimated"
    assert int(record["output_tokens"]) >= 1
    assert line["output_tokens"] == int(record["output_tokens"])


async def test_client_leaving_gives_back_the_unused_token_reservation_at_once(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    config["auth"]["keys"][0]["tpm"] = 100_000
    gateway = await cancelling_gateway(make_gateway, config)
    stub.behaviour = Behaviour(stall_after=7)
    client = RawClient(str(gateway.make_url("")))
    await client.leave("POST", "/v1/responses", AUTH, STREAM, after=b"output_text.delta")
    await settled(gateway, access)
    (record,) = records(gateway)
    assert int(record["total_tokens"]) < int(record["estimated_tokens"])
    stub.behaviour = Behaviour()
    raw = orjson.dumps(JSON)
    after = await gateway.post(
        "/v1/responses", data=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    # Only what the departed request used is still counted, beside this one's reservation.
    reserved = len(raw) // 4 + 1024
    expected = 100_000 - int(record["total_tokens"]) - reserved
    assert after.headers["x-ratelimit-remaining-tokens"] == str(expected)


async def test_client_leaving_after_completed_is_charged_the_reported_usage(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
) -> None:
    """Codex CLI hangs up once it has read response.completed, before the upstream ends."""
    events = canned()
    gateway, upstream = await on_scripted(
        make_gateway, config, scripted, [SSE_HEAD, frames(events), STALL]
    )
    gone = clients_gone()
    client = RawClient(str(gateway.make_url("")))
    await client.leave("POST", "/v1/responses", AUTH, STREAM, after=b"event: response.completed")
    await asyncio.wait_for(upstream.hung_up.wait(), 5)
    line = await settled(gateway, access)
    # The whole answer went out: a success, whose client left early.
    assert (line["status"], line["client_gone"]) == (200, True)
    assert clients_gone() == gone + 1
    usage = events[-1]["response"]["usage"]
    (record,) = records(gateway)
    assert record["usage"] == "reported"
    assert int(record["input_tokens"]) == usage["input_tokens"]
    assert int(record["output_tokens"]) == usage["output_tokens"]
    assert line["output_tokens"] == usage["output_tokens"]
    kept = await gateway.get(f"/v1/responses/{events[0]['response']['id']}", headers=AUTH)
    assert (await kept.json())["status"] == "completed"


async def test_client_leaving_while_waiting_for_json_is_charged_its_input(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
) -> None:
    gateway, upstream = await on_scripted(make_gateway, config, scripted, [STALL])
    gone = clients_gone()
    client = RawClient(str(gateway.make_url("")))
    await client.leave("POST", "/v1/responses", AUTH, JSON, when=upstream.received.wait)
    await asyncio.wait_for(upstream.hung_up.wait(), 5)
    line = await settled(gateway, access)
    assert (line["status"], line["client_gone"]) == (499, True)
    assert clients_gone() == gone + 1
    (record,) = records(gateway)
    assert (record["usage"], record["output_tokens"]) == ("estimated", "0")
    assert int(record["input_tokens"]) > 0


async def test_client_leaving_a_resumed_background_stream_leaves_the_job_running(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, config)
    stub.behaviour = Behaviour(between_s=0.05)
    made = await gateway.post("/v1/responses", json={**JSON, "background": True}, headers=AUTH)
    rid = (await made.json())["id"]
    gone = clients_gone()
    client = RawClient(str(gateway.make_url("")))
    await client.leave("GET", f"/v1/responses/{rid}?stream=true", AUTH, after=b"event: ")
    await wait_for(lambda: len(access.lines) == 2)
    resumed = access.lines[1]
    assert resumed["operation"] == "retrieve_response"
    assert (resumed["status"], resumed["client_gone"]) == (499, True)
    assert clients_gone() == gone + 1

    async def completed() -> bool:
        found = await gateway.get(f"/v1/responses/{rid}", headers=AUTH)
        return bool((await found.json())["status"] == "completed")

    async with asyncio.timeout(10):
        while not await completed():
            await asyncio.sleep(0.05)
    # The job's own run charges it, once, with the upstream's usage.
    await wait_for(lambda: len(records(gateway)) == 1)
    assert records(gateway)[0]["usage"] == "reported"
    assert [x["status"] for x in access.lines].count(499) == 1


async def test_client_leaving_a_background_stream_it_created_is_charged_once(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, config)
    stub.behaviour = Behaviour(between_s=0.05)
    gone = clients_gone()
    client = RawClient(str(gateway.make_url("")))
    read = await client.leave(
        "POST", "/v1/responses", AUTH, {**STREAM, "background": True}, after=b"\n\n"
    )
    rid = orjson.loads(read.split(b"data: ", 1)[1].split(b"\n", 1)[0])["response"]["id"]
    await wait_for(lambda: len(access.lines) == 1)
    assert (access.lines[0]["status"], access.lines[0]["client_gone"]) == (499, True)
    assert clients_gone() == gone + 1

    async def status() -> str:
        found = await gateway.get(f"/v1/responses/{rid}", headers=AUTH)
        return str((await found.json())["status"])

    async with asyncio.timeout(10):
        while await status() != "completed":
            await asyncio.sleep(0.05)
    # The job charges its run; the request that queued it charges nothing besides (it would
    # have been settled first: one settler, in order).
    await wait_for(lambda: len(records(gateway)) >= 1)
    assert [r["usage"] for r in records(gateway)] == ["reported"]


# -- upstreams that fail -------------------------------------------------------------------


async def test_upstream_reset_before_headers_is_a_502_charged_nothing(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
) -> None:
    gateway, _ = await on_scripted(make_gateway, config, scripted, [RESET])
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_error"
    line = await settled(gateway, access)
    assert line["status"] == 502
    assert "client_gone" not in line
    (record,) = records(gateway)
    assert (record["usage"], record["cost_usd"]) == ("none", "0.0")


async def test_upstream_reset_mid_stream_ends_failed_kept_and_estimated(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
) -> None:
    events = canned()
    gateway, _ = await on_scripted(
        make_gateway, config, scripted, [SSE_HEAD, frames(events[:6]), RESET]
    )
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 200
    got = events_in(await resp.read())
    assert got[-1]["type"] == "response.failed"
    assert got[-1]["response"]["error"]["code"] == "upstream_error"
    line = await settled(gateway, access)
    assert line["status"] == 200
    (record,) = records(gateway)
    assert record["usage"] == "estimated"
    assert int(record["output_tokens"]) >= 2
    kept = await gateway.get(f"/v1/responses/{events[0]['response']['id']}", headers=AUTH)
    assert (await kept.json())["status"] == "failed"


async def test_upstream_garbage_instead_of_events_is_an_error_event(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
) -> None:
    gateway, _ = await on_scripted(
        make_gateway, config, scripted, [SSE_HEAD, b"<html>\x00\xff not an event stream"]
    )
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 200
    got = events_in(await resp.read())
    assert [e["type"] for e in got] == ["error"]
    assert got[0]["code"] == "upstream_error"
    line = await settled(gateway, access)
    assert line["status"] == 200
    (record,) = records(gateway)
    assert record["usage"] == "none"


async def test_upstream_terminal_event_with_invalid_json_ends_failed(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
) -> None:
    events = canned()
    broken = b'event: response.completed\ndata: {"type": "response.completed", "resp\n\n'
    gateway, _ = await on_scripted(
        make_gateway, config, scripted, [SSE_HEAD, frames(events[:-1]) + broken]
    )
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    raw = await resp.read()
    last = orjson.loads(raw.rsplit(b"data: ", 1)[1])
    assert last["type"] == "response.failed"
    assert last["sequence_number"] == events[-2]["sequence_number"] + 1
    await settled(gateway, access)
    (record,) = records(gateway)
    assert record["usage"] == "estimated"
    kept = await gateway.get(f"/v1/responses/{events[0]['response']['id']}", headers=AUTH)
    assert (await kept.json())["status"] == "failed"


async def test_upstream_stream_with_a_wrong_content_type_is_a_502(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, config)
    stub.behaviour = Behaviour(body=b"<html>busy</html>", content_type="text/html")
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_error"
    line = await settled(gateway, access)
    assert line["status"] == 502
    assert records(gateway)[0]["usage"] == "none"


async def test_upstream_stalling_its_headers_is_a_504_and_hung_up(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
) -> None:
    config["providers"][0]["timeout_s"] = 0.3
    gateway, upstream = await on_scripted(make_gateway, config, scripted, [STALL])
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "upstream_timeout"
    await asyncio.wait_for(upstream.hung_up.wait(), 5)
    line = await settled(gateway, access)
    assert line["status"] == 504
    assert records(gateway)[0]["usage"] == "none"


# -- as a process: `gateway serve` ------------------------------------------------------


@pytest.fixture
def served(
    config: dict[str, Any], redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[Replica, str]]:
    prefix = f"{tmp_path.name}:"
    config["store"] = {"url": redis_server.url, "prefix": prefix}
    config["server"]["access_log"] = True
    replica = Replica(config, tmp_path, "faults").start()
    yield replica, prefix
    replica.stop()


async def metric(replica: Replica, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{replica.url}/metrics") as resp:
        for text in (await resp.text()).splitlines():
            if text.startswith(name + " "):
                return float(text.split()[1])
    return 0.0


async def test_sdk_leaving_at_completed_is_charged_logged_and_counted_by_a_process(
    served: tuple[Replica, str], redis_server: RedisServer, stub: StubUpstream
) -> None:
    """The Codex way, on a real `gateway serve`: read up to response.completed, hang up."""
    replica, prefix = served
    events = canned()
    stub.behaviour = Behaviour(events=[*events, *events[:1]], stall_after=len(events))
    gone = await metric(replica, "gateway_clients_gone_total")
    async with openai.AsyncOpenAI(
        base_url=f"{replica.url}/v1", api_key=KEY_A, max_retries=0
    ) as sdk:
        stream = await sdk.responses.create(model="gpt-test", input="Tell me a story", stream=True)
        async for event in stream:
            if event.type == "response.completed":
                await stream.close()
                break
    await asyncio.wait_for(stub.cancelled.wait(), 5)
    async with asyncio.timeout(10):
        while not (await usage_records(redis_server, prefix) and replica.access_lines()):
            await asyncio.sleep(0.02)
    (record,) = await usage_records(redis_server, prefix)
    usage = events[-1]["response"]["usage"]
    assert record["usage"] == "reported"
    assert int(record["output_tokens"]) == usage["output_tokens"]
    (line,) = replica.access_lines()
    assert (line["status"], line["client_gone"]) == (200, True)
    assert line["output_tokens"] == usage["output_tokens"]
    assert await metric(replica, "gateway_clients_gone_total") == gone + 1
    assert "Traceback" not in replica.log_path.read_text()


async def test_client_leaving_mid_delta_is_settled_logged_and_counted_by_a_process(
    served: tuple[Replica, str], redis_server: RedisServer, stub: StubUpstream
) -> None:
    replica, prefix = served
    stub.behaviour = Behaviour(stall_after=7)
    gone = await metric(replica, "gateway_clients_gone_total")
    client = RawClient(replica.url)
    await client.leave("POST", "/v1/responses", AUTH, STREAM, after=b"output_text.delta")
    await asyncio.wait_for(stub.cancelled.wait(), 5)
    async with asyncio.timeout(10):
        while not (await usage_records(redis_server, prefix) and replica.access_lines()):
            await asyncio.sleep(0.02)
    (record,) = await usage_records(redis_server, prefix)
    assert record["usage"] == "estimated"
    assert int(record["input_tokens"]) > 0
    assert int(record["output_tokens"]) >= 1
    (line,) = replica.access_lines()
    assert (line["status"], line["client_gone"], line["usage_estimated"]) == (499, True, True)
    assert await metric(replica, "gateway_clients_gone_total") == gone + 1
    assert "Traceback" not in replica.log_path.read_text()

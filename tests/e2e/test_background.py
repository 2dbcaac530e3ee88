"""Background responses and x-bf-async jobs, on the memory store and on a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from gateway.keys import DEPS
from gateway.store.memory import MemoryStore
from tests.support.clock import FakeClock
from tests.support.configs import KEY_A, KEY_B
from tests.support.stub import Behaviour, StubUpstream

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}


@pytest.fixture
def bg_gateway(store_gateway: Client) -> Client:
    return store_gateway


@pytest.fixture
async def client(bg_gateway: Client) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=str(bg_gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as sdk:
        yield sdk


async def until_done(client: openai.AsyncOpenAI, rid: str, timeout: float = 10) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            response = await client.responses.retrieve(rid)
            if response.status not in ("queued", "in_progress"):
                return response
            await asyncio.sleep(0.05)


async def test_background_answers_at_once_and_completes(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(between_s=0.02)
    first = await client.responses.create(model="gpt-test", input="take your time", background=True)
    assert first.status == "queued"
    assert first.background is True
    assert first.output == []
    final = await until_done(client, first.id)
    assert final.status == "completed"
    assert final.id == first.id
    assert "take your time" in final.output_text
    assert stub.last.json["stream"] is True
    assert "background" not in stub.last.json


async def test_cancel_stops_the_upstream(client: openai.AsyncOpenAI, stub: StubUpstream) -> None:
    stub.behaviour = Behaviour(stall_after=3)
    first = await client.responses.create(model="gpt-test", input="long", background=True)
    async with asyncio.timeout(5):
        while (await client.responses.retrieve(first.id)).status != "in_progress":
            await asyncio.sleep(0.02)
    cancelled = await client.responses.cancel(first.id)
    assert cancelled.status == "cancelled"
    await asyncio.wait_for(stub.cancelled.wait(), timeout=1.5)
    again = await client.responses.cancel(first.id)
    assert again.status == "cancelled"
    assert (await client.responses.retrieve(first.id)).status == "cancelled"


async def test_cancel_rules(client: openai.AsyncOpenAI) -> None:
    foreground = await client.responses.create(model="gpt-test", input="x")
    with pytest.raises(openai.BadRequestError):
        await client.responses.cancel(foreground.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.cancel("resp_unknown")


async def test_background_stream_then_resume(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(between_s=0.01)
    stream = await client.responses.create(
        model="gpt-test", input="stream it", background=True, stream=True
    )
    live = [event async for event in stream]
    assert [e.sequence_number for e in live] == list(range(len(live)))
    assert live[-1].type == "response.completed"
    rid = live[0].response.id  # type: ignore[union-attr]
    assert all(getattr(getattr(e, "response", None), "id", rid) == rid for e in live)
    resumed = await client.responses.retrieve(rid, stream=True, starting_after=5)
    tail = [event async for event in resumed]
    assert [e.sequence_number for e in tail] == [e.sequence_number for e in live[6:]]
    async with client.responses.stream(response_id=rid) as helper:
        final = await helper.get_final_response()
    assert final.output_text == (await client.responses.retrieve(rid)).output_text


async def test_streaming_a_foreground_response_is_400(client: openai.AsyncOpenAI) -> None:
    foreground = await client.responses.create(model="gpt-test", input="x")
    with pytest.raises(openai.BadRequestError) as err:
        stream = await client.responses.retrieve(foreground.id, stream=True)
        async for _ in stream:
            pass
    assert err.value.param == "stream"


async def test_background_must_be_stored(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(model="gpt-test", input="x", background=True, store=False)
    assert err.value.param == "store"


async def test_async_job_headers(bg_gateway: Client, stub: StubUpstream) -> None:
    stub.behaviour = Behaviour(between_s=0.01)
    body = {"model": "gpt-test", "input": "async please"}
    resp = await bg_gateway.post("/v1/responses", json=body, headers={**AUTH, "x-bf-async": "true"})
    assert resp.status == 202
    accepted = await resp.json()
    assert accepted["status"] in ("queued", "in_progress")
    job_id = accepted["id"]
    assert resp.headers["x-bf-async-id"] == job_id
    async with asyncio.timeout(10):
        while True:
            polled = await bg_gateway.post(
                "/v1/responses", json=body, headers={**AUTH, "x-bf-async-id": job_id}
            )
            assert polled.status == 200
            data = await polled.json()
            if data["status"] == "completed":
                break
            assert set(data) == {"id", "status"}
            await asyncio.sleep(0.05)
    assert data["object"] == "response"
    assert "async please" in data["output"][0]["content"][0]["text"]
    other = await bg_gateway.post(
        "/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {KEY_B}", "x-bf-async-id": job_id},
    )
    assert other.status == 404


async def test_async_job_with_stream_is_400(bg_gateway: Client) -> None:
    resp = await bg_gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "x", "stream": True},
        headers={**AUTH, "x-bf-async": "true"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "stream"


async def test_async_result_expires(bg_gateway: Client) -> None:
    resp = await bg_gateway.post(
        "/v1/responses",
        json={"model": "mock-model", "input": "x"},
        headers={**AUTH, "x-bf-async": "true", "x-bf-async-job-result-ttl": "1"},
    )
    job_id = (await resp.json())["id"]
    async with asyncio.timeout(10):
        while True:
            polled = await bg_gateway.post(
                "/v1/responses", json={}, headers={**AUTH, "x-bf-async-id": job_id}
            )
            if (await polled.json()).get("status") not in ("queued", "in_progress"):
                break
            await asyncio.sleep(0.02)
    assert polled.status == 200
    store = bg_gateway.app[DEPS].store
    if isinstance(store, MemoryStore):  # its clock is moved past the result's TTL
        clock = FakeClock(time.time())
        store.clock = clock
        clock.now += 1.2
    else:  # Redis keeps the TTL by its own clock
        await asyncio.sleep(1.2)
    expired = await bg_gateway.post(
        "/v1/responses", json={}, headers={**AUTH, "x-bf-async-id": job_id}
    )
    assert expired.status == 404


async def test_failing_upstream_ends_failed_with_the_reason(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(status=503, body=b'{"error": {"message": "overloaded"}}')
    first = await client.responses.create(model="gpt-test", input="x", background=True)
    final = await until_done(client, first.id, timeout=15)
    assert final.status == "failed"
    assert final.error is not None
    assert "overloaded" in final.error.message
    assert len(stub.requests) == 3


async def test_background_job_sends_the_upstream_model_name(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    first = await client.responses.create(model="cheap", input="aliased", background=True)
    final = await until_done(client, first.id)
    assert final.status == "completed"
    assert stub.last.json["model"] == "gpt-cheap-upstream"

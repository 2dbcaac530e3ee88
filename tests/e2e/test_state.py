"""Stored responses, previous_response_id and conversations through the official SDK."""

from __future__ import annotations

import io
from typing import Any

import openai
import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.support.configs import KEY_A, KEY_B, UPSTREAM_KEY
from tests.support.redis_server import RedisServer, free_port
from tests.support.stub import StubUpstream


def texts(items: list[dict[str, Any]]) -> list[str]:
    out = []
    for item in items:
        content = item.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [part.get("text", "") for part in content]
    return out


async def test_retrieve_delete_and_input_items(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.responses.create(model="gpt-test", input="Remember me", metadata={"k": "v"})
    got = await sdk.responses.retrieve(created.id)
    assert got.id == created.id
    assert got.output_text == created.output_text
    assert got.metadata == {"k": "v"}
    items = await sdk.responses.input_items.list(created.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "Remember me"  # type: ignore[union-attr]
    await sdk.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.delete(created.id)


async def test_store_false_keeps_nothing(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.responses.create(model="gpt-test", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError) as err:
        await sdk.responses.create(model="gpt-test", input="y", previous_response_id=created.id)
    assert err.value.code == "previous_response_not_found"
    assert err.value.param == "previous_response_id"
    assert err.value.message.endswith(f"Previous response with id '{created.id}' not found.")


async def test_previous_response_id_sends_the_whole_context(
    sdk: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    first = await sdk.responses.create(model="gpt-test", input="one", instructions="be kind")
    second = await sdk.responses.create(
        model="gpt-test", input="two", previous_response_id=first.id
    )
    third = await sdk.responses.create(
        model="gpt-test", input="three", previous_response_id=second.id
    )
    assert third.previous_response_id == second.id
    sent = stub.last.json
    assert "previous_response_id" not in sent
    assert sent["store"] is False
    assert "instructions" not in sent
    assert texts(sent["input"]) == ["one", first.output_text, "two", second.output_text, "three"]
    assert sent["input"][1]["role"] == "assistant"


async def test_paging_input_items(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.responses.create(
        model="gpt-test", input=[{"role": "user", "content": f"m{i}"} for i in range(5)]
    )
    page = await sdk.responses.input_items.list(created.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["m0", "m1"]  # type: ignore[union-attr]
    assert page.has_more
    everything = [i async for i in sdk.responses.input_items.list(created.id, limit=2)]
    assert len(everything) == 5


async def test_conversation_lifecycle(sdk: openai.AsyncOpenAI, stub: StubUpstream) -> None:
    conv = await sdk.conversations.create(
        items=[{"role": "user", "content": "hello"}], metadata={"topic": "demo"}
    )
    assert conv.id.startswith("conv_")
    assert (await sdk.conversations.retrieve(conv.id)).metadata == {"topic": "demo"}
    response = await sdk.responses.create(model="gpt-test", input="next", conversation=conv.id)
    assert texts(stub.last.json["input"]) == ["hello", "next"]
    items = [i async for i in sdk.conversations.items.list(conv.id, order="asc")]
    assert [i.type for i in items] == ["message", "message", "message"]
    assert items[-1].content[0].text == response.output_text  # type: ignore[union-attr]
    added = await sdk.conversations.items.create(conv.id, items=[{"role": "user", "content": "z"}])
    one = await sdk.conversations.items.retrieve(added.data[0].id, conversation_id=conv.id)
    assert one.id == added.data[0].id
    after = await sdk.conversations.items.delete(added.data[0].id, conversation_id=conv.id)
    assert after.id == conv.id
    updated = await sdk.conversations.update(conv.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed"}
    deleted = await sdk.conversations.delete(conv.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        await sdk.conversations.retrieve(conv.id)


async def test_streamed_response_is_stored_before_the_end_event(sdk: openai.AsyncOpenAI) -> None:
    conv = await sdk.conversations.create()
    async with sdk.responses.stream(
        model="gpt-test", input="streamed", conversation=conv.id
    ) as stream:
        final = await stream.get_final_response()
        # The client has the terminal event: the response must already be there.
        stored = await sdk.responses.retrieve(final.id)
    assert stored.output_text == final.output_text
    items = [i async for i in sdk.conversations.items.list(conv.id)]
    assert len(items) == 2


async def test_previous_and_conversation_together_is_400(sdk: openai.AsyncOpenAI) -> None:
    first = await sdk.responses.create(model="gpt-test", input="x")
    conv = await sdk.conversations.create()
    with pytest.raises(openai.BadRequestError) as err:
        await sdk.responses.create(
            model="gpt-test", input="y", previous_response_id=first.id, conversation=conv.id
        )
    assert err.value.param in ("conversation", "previous_response_id")


async def test_conversation_with_too_many_items_is_400(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await sdk.conversations.create(items=[{"role": "user", "content": "x"}] * 21)
    assert err.value.param == "items"


async def test_huge_item_is_400(gateway: TestClient[Any, Any]) -> None:
    big = "x" * (5 * 1024 * 1024)
    body = orjson.dumps({"items": [{"role": "user", "content": big}]})
    resp = await gateway.post(
        "/v1/conversations", data=io.BytesIO(body), headers={"Authorization": f"Bearer {KEY_A}"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "items[0]"


async def test_another_tenant_sees_nothing(
    gateway: TestClient[Any, Any], sdk: openai.AsyncOpenAI
) -> None:
    created = await sdk.responses.create(model="mock-model", input="secret")
    conv = await sdk.conversations.create(items=[{"role": "user", "content": "secret"}])
    item_id = (await sdk.conversations.items.list(conv.id)).data[0].id
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_B, max_retries=0
    ) as other:
        calls = [
            other.responses.retrieve(created.id),
            other.responses.delete(created.id),
            other.responses.input_items.list(created.id),
            other.responses.cancel(created.id),
            other.conversations.retrieve(conv.id),
            other.conversations.update(conv.id, metadata={}),
            other.conversations.delete(conv.id),
            other.conversations.items.list(conv.id),
            other.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}]),
            other.conversations.items.retrieve(item_id, conversation_id=conv.id),
            other.conversations.items.delete(item_id, conversation_id=conv.id),
            other.responses.create(model="mock-model", input="x", conversation=conv.id),
        ]
        for call in calls:
            with pytest.raises(openai.NotFoundError):
                await call
        with pytest.raises(openai.BadRequestError) as err:
            await other.responses.create(
                model="mock-model", input="x", previous_response_id=created.id
            )
        assert err.value.code == "previous_response_not_found"
    assert (await sdk.responses.retrieve(created.id)).id == created.id


async def test_zero_data_retention_keeps_nothing(
    make_gateway: Any, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["auth"]["keys"][0]["zdr"] = True
    gateway = await make_gateway(config)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        created = await client.responses.create(model="gpt-test", input="x")
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(created.id)
        with pytest.raises(openai.BadRequestError) as store_err:
            await client.responses.create(model="gpt-test", input="x", store=True)
        assert store_err.value.param == "store"
        with pytest.raises(openai.BadRequestError) as prev_err:
            await client.responses.create(
                model="gpt-test", input="x", previous_response_id="resp_x"
            )
        assert prev_err.value.param == "previous_response_id"
        with pytest.raises(openai.BadRequestError) as conv_err:
            await client.responses.create(model="gpt-test", input="x", conversation="conv_x")
        assert conv_err.value.param == "conversation"


async def test_redis_down_is_503_then_recovers(make_gateway: Any, config: dict[str, Any]) -> None:
    redis = RedisServer()
    redis.port = free_port()
    config["store"]["url"] = redis.url
    gateway = await make_gateway(config)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        with pytest.raises(openai.InternalServerError) as err:
            await client.responses.retrieve("resp_x")
        assert err.value.status_code == 503
        assert err.value.response.headers["retry-after"] == "1"
        redis.start()
        try:
            created = await client.responses.create(model="gpt-test", input="x")
            assert (await client.responses.retrieve(created.id)).id == created.id
        finally:
            redis.stop()


async def test_input_tokens_forwarded_or_estimated(
    sdk: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    upstream = await sdk.responses.input_tokens.count(model="gpt-test", input="count these")
    assert upstream.input_tokens == 4242
    assert stub.last.path == "/v1/responses/input_tokens"
    assert stub.last.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    estimated = await sdk.responses.input_tokens.count(model="mock-model", input="x" * 400)
    assert 100 <= estimated.input_tokens <= 110
    first = await sdk.responses.create(model="gpt-test", input="one")
    chained = await sdk.responses.input_tokens.count(
        model="gpt-test", input="two", previous_response_id=first.id
    )
    # The stored context is sent along, so the upstream's count covers what create would send.
    assert chained.input_tokens == 4242
    assert "previous_response_id" not in stub.last.json
    assert texts(stub.last.json["input"]) == ["one", first.output_text, "two"]

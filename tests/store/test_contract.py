"""One contract, two stores: the same tests on MemoryStore and on a real Redis."""

from __future__ import annotations

from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisConnection, RedisStore
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer


def item(n: int) -> dict[str, object]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": f"item {n}"}],
    }


async def test_response_roundtrip_under_its_owner(store: Store) -> None:
    record = {"owner": "a", "response": {"id": "resp_1"}, "input": [item(1)], "chain": []}
    await store.put_response("resp_1", record, 60)
    assert await store.get_responses("a", ["resp_1"]) == [record]
    assert await store.get_responses("b", ["resp_1"]) == [None]
    assert await store.get_responses("a", ["resp_missing", "resp_1"]) == [None, record]


async def test_foreign_owner_cannot_delete(store: Store) -> None:
    await store.put_response("resp_1", {"owner": "a", "response": {}}, 60)
    assert not await store.delete_response("b", "resp_1")
    assert await store.delete_response("a", "resp_1")
    assert await store.get_responses("a", ["resp_1"]) == [None]
    assert not await store.delete_response("a", "resp_1")


async def test_conversation_items_in_order_with_paging(store: Store) -> None:
    await store.put_conversation("conv_1", {"owner": "a", "conversation": {"id": "conv_1"}}, 60)
    assert await store.add_items("a", "conv_1", [item(i) for i in range(5)], 60, 100)
    page = await store.list_items("a", "conv_1", after=None, limit=2, desc=False)
    assert page is not None
    assert [i["id"] for i in page.items] == ["msg_0", "msg_1"]
    assert page.has_more
    page = await store.list_items("a", "conv_1", after="msg_3", limit=2, desc=False)
    assert page is not None
    assert [i["id"] for i in page.items] == ["msg_4"]
    assert not page.has_more
    page = await store.list_items("a", "conv_1", after=None, limit=3, desc=True)
    assert page is not None
    assert [i["id"] for i in page.items] == ["msg_4", "msg_3", "msg_2"]
    everything = await store.all_items("a", "conv_1")
    assert everything is not None
    assert [i["id"] for i in everything] == [f"msg_{i}" for i in range(5)]


async def test_conversation_is_invisible_to_another_owner(store: Store) -> None:
    await store.put_conversation("conv_1", {"owner": "a", "conversation": {"id": "conv_1"}}, 60)
    await store.add_items("a", "conv_1", [item(1)], 60, 100)
    assert await store.get_conversation("b", "conv_1") is None
    assert await store.list_items("b", "conv_1", after=None, limit=10, desc=True) is None
    assert await store.all_items("b", "conv_1") is None
    assert await store.get_item("b", "conv_1", "msg_1") is None
    assert not await store.add_items("b", "conv_1", [item(2)], 60, 100)
    assert not await store.delete_item("b", "conv_1", "msg_1")
    assert not await store.delete_conversation("b", "conv_1")
    assert await store.get_item("a", "conv_1", "msg_1") == item(1)


async def test_item_delete_and_conversation_delete(store: Store) -> None:
    await store.put_conversation("conv_1", {"owner": "a", "conversation": {"id": "conv_1"}}, 60)
    await store.add_items("a", "conv_1", [item(1), item(2)], 60, 100)
    assert await store.delete_item("a", "conv_1", "msg_1")
    assert not await store.delete_item("a", "conv_1", "msg_1")
    remaining = await store.all_items("a", "conv_1")
    assert remaining == [item(2)]
    assert await store.delete_conversation("a", "conv_1")
    assert await store.get_conversation("a", "conv_1") is None
    assert await store.all_items("a", "conv_1") is None


async def test_conversation_cap(store: Store) -> None:
    await store.put_conversation("conv_1", {"owner": "a", "conversation": {"id": "conv_1"}}, 60)
    assert await store.add_items("a", "conv_1", [item(i) for i in range(3)], 60, 4)
    assert not await store.add_items("a", "conv_1", [item(8), item(9)], 60, 4)
    assert await store.add_items("a", "conv_1", [item(7)], 60, 4)


async def test_missing_conversation_takes_no_items(store: Store) -> None:
    assert not await store.add_items("a", "conv_none", [item(1)], 60, 100)
    assert await store.get_conversation("a", "conv_none") is None


async def test_memory_records_expire() -> None:
    clock = FakeClock()
    store = MemoryStore(clock)
    await store.put_response("resp_1", {"owner": "a"}, 10)
    await store.put_conversation("conv_1", {"owner": "a", "conversation": {}}, 10)
    clock.now += 11
    assert await store.get_responses("a", ["resp_1"]) == [None]
    assert await store.get_conversation("a", "conv_1") is None


async def test_redis_records_carry_a_ttl(redis_server: RedisServer) -> None:
    conn = RedisConnection(redis_server.url, "ttl:", 1.0)
    store = RedisStore(conn)
    try:
        await store.put_response("resp_1", {"owner": "a"}, 100)
        await store.put_conversation("conv_1", {"owner": "a", "conversation": {}}, 100)
        await store.add_items("a", "conv_1", [item(1)], 100, 10)
        keys = [k async for k in store.client.scan_iter("ttl:*")]
        assert len(keys) == 4
        for key in keys:
            assert 0 < await store.client.ttl(key) <= 100
            assert b"{" in key
            assert b"}" in key
    finally:
        await store.client.flushdb()
        await conn.close()

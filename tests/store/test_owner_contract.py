"""A stored response is never overwritten: put_response only creates, on both stores."""

from __future__ import annotations

from gateway.store import Store
from gateway.store.memory import MemoryStore
from tests.support.clock import FakeClock


def record(owner: str, text: str) -> dict[str, object]:
    return {"owner": owner, "response": {"id": "resp_x", "text": text}, "input": [], "chain": []}


async def test_another_owner_cannot_overwrite_a_response(store: Store) -> None:
    assert await store.put_response("resp_x", record("a", "alpha"), 60)
    assert not await store.put_response("resp_x", record("b", "beta"), 60)
    assert await store.get_responses("a", ["resp_x"]) == [record("a", "alpha")]
    assert await store.get_responses("b", ["resp_x"]) == [None]


async def test_the_same_owner_cannot_overwrite_a_response_either(store: Store) -> None:
    assert await store.put_response("resp_x", record("a", "first"), 60)
    assert not await store.put_response("resp_x", record("a", "second"), 60)
    assert await store.get_responses("a", ["resp_x"]) == [record("a", "first")]


async def test_a_deleted_response_id_can_be_kept_again(store: Store) -> None:
    assert await store.put_response("resp_x", record("a", "alpha"), 60)
    assert await store.delete_response("a", "resp_x")
    assert await store.put_response("resp_x", record("b", "beta"), 60)
    assert await store.get_responses("b", ["resp_x"]) == [record("b", "beta")]


async def test_an_expired_response_id_can_be_kept_again() -> None:
    clock = FakeClock()
    store = MemoryStore(clock)
    assert await store.put_response("resp_x", record("a", "alpha"), 10)
    clock.now += 11
    assert await store.put_response("resp_x", record("b", "beta"), 10)
    assert await store.get_responses("b", ["resp_x"]) == [record("b", "beta")]
    assert await store.get_responses("a", ["resp_x"]) == [None]

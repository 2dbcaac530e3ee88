"""Tenants never reach each other's stored state: not through an upstream that reuses a
response id, nor through a key deleted and made again under the same id. Memory and Redis."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.keystore import new_owner, stored_key
from tests.support.configs import ADMIN_KEY, KEY_A, KEY_B, base_config, settings_from
from tests.support.owner_upstream import answer_with_id
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
REUSED = "resp_reused_by_the_upstream"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def gw(store_gateway: Client) -> Client:
    return store_gateway


async def create(gw: Client, key: str, **body: Any) -> Any:
    resp = await gw.post("/v1/responses", json=body, headers=auth(key))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def status_of(gw: Client, method: str, path: str, key: str, **kwargs: Any) -> int:
    resp = await gw.request(method, path, headers=auth(key), **kwargs)
    return resp.status


def text_of(response: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "") for item in response["output"] for part in item.get("content", [])
    )


async def assert_a_keeps_its_record(gw: Client, expected: dict[str, Any]) -> None:
    resp = await gw.get(f"/v1/responses/{REUSED}", headers=auth(KEY_A))
    assert resp.status == 200, await resp.text()
    assert text_of(await resp.json()) == text_of(expected)
    items = await (await gw.get(f"/v1/responses/{REUSED}/input_items", headers=auth(KEY_A))).json()
    assert [part["text"] for part in items["data"][0]["content"]] == ["alpha secret plan"]


async def assert_b_sees_nothing(gw: Client) -> None:
    for method, path in (
        ("GET", f"/v1/responses/{REUSED}"),
        ("GET", f"/v1/responses/{REUSED}/input_items"),
        ("DELETE", f"/v1/responses/{REUSED}"),
    ):
        assert await status_of(gw, method, path, KEY_B) == 404, (method, path)
    chained = await gw.post(
        "/v1/responses",
        json={"model": "cheap", "input": "go on", "previous_response_id": REUSED},
        headers=auth(KEY_B),
    )
    assert chained.status == 400
    assert (await chained.json())["error"]["code"] == "previous_response_not_found"


async def test_an_upstream_reusing_an_id_cannot_overwrite_another_tenant(
    gw: Client, stub: StubUpstream
) -> None:
    first = answer_with_id(stub, REUSED, "alpha secret plan", stream=False)
    a = await create(gw, KEY_A, model="gpt-test", input="alpha secret plan")
    assert (a["id"], a["store"]) == (REUSED, True)
    answer_with_id(stub, REUSED, "beta", stream=False)
    b = await create(gw, KEY_B, model="cheap", input="beta")
    assert b["id"] == REUSED
    assert b["store"] is False  # the answer says truthfully that it was not kept
    assert text_of(b) == "Echo: beta"
    await assert_b_sees_nothing(gw)
    await assert_a_keeps_its_record(gw, first)


async def test_a_reused_id_on_a_stream_cannot_overwrite_another_tenant(
    gw: Client, stub: StubUpstream
) -> None:
    first = answer_with_id(stub, REUSED, "alpha secret plan", stream=False)
    await create(gw, KEY_A, model="gpt-test", input="alpha secret plan")
    answer_with_id(stub, REUSED, "beta", stream=True)
    resp = await gw.post(
        "/v1/responses",
        json={"model": "cheap", "input": "beta", "stream": True},
        headers=auth(KEY_B),
    )
    assert resp.status == 200
    streamed = await resp.text()
    events = [
        orjson.loads(line.removeprefix("data: "))
        for line in streamed.splitlines()
        if line.startswith("data: ")
    ]
    # The events said store true while the answer streamed; the end says what was kept.
    assert events[0]["response"]["store"] is True
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["store"] is False
    await assert_b_sees_nothing(gw)
    await assert_a_keeps_its_record(gw, first)


async def test_an_id_reused_for_the_same_tenant_keeps_the_first_answer(
    gw: Client, stub: StubUpstream
) -> None:
    first = answer_with_id(stub, REUSED, "alpha secret plan", stream=False)
    await create(gw, KEY_A, model="gpt-test", input="alpha secret plan")
    answer_with_id(stub, REUSED, "other", stream=False)
    again = await create(gw, KEY_A, model="gpt-test", input="other")
    assert again["store"] is False
    await assert_a_keeps_its_record(gw, first)


async def make_key(gw: Client, key_id: str, **fields: Any) -> str:
    resp = await gw.post("/admin/keys", json={"id": key_id, **fields}, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    secret: str = (await resp.json())["key"]
    return secret


async def test_a_key_made_again_under_a_deleted_id_reads_nothing_of_the_old_one(
    gw: Client, stub: StubUpstream
) -> None:
    old = await make_key(gw, "tenant-x")
    kept = await create(gw, old, model="gpt-test", input="the old tenant's secret")
    conv = await (
        await gw.post(
            "/v1/conversations",
            json={"items": [{"role": "user", "content": "old conversation"}]},
            headers=auth(old),
        )
    ).json()
    items = await (await gw.get(f"/v1/conversations/{conv['id']}/items", headers=auth(old))).json()
    item_id = items["data"][0]["id"]
    job = await create(gw, old, model="gpt-test", input="slow", background=True)
    # A change through PATCH keeps the key's records its own.
    patched = await gw.patch("/admin/keys/tenant-x", json={"rpm": 1000}, headers=ADMIN)
    assert patched.status == 200
    assert await status_of(gw, "GET", f"/v1/responses/{kept['id']}", old) == 200
    assert await status_of(gw, "GET", f"/v1/conversations/{conv['id']}", old) == 200

    assert (await gw.delete("/admin/keys/tenant-x", headers=ADMIN)).status == 200
    new = await make_key(gw, "tenant-x")
    for method, path in (
        ("GET", f"/v1/responses/{kept['id']}"),
        ("GET", f"/v1/responses/{kept['id']}/input_items"),
        ("DELETE", f"/v1/responses/{kept['id']}"),
        ("GET", f"/v1/responses/{job['id']}"),
        ("POST", f"/v1/responses/{job['id']}/cancel"),
        ("GET", f"/v1/conversations/{conv['id']}"),
        ("GET", f"/v1/conversations/{conv['id']}/items"),
        ("GET", f"/v1/conversations/{conv['id']}/items/{item_id}"),
        ("DELETE", f"/v1/conversations/{conv['id']}"),
    ):
        assert await status_of(gw, method, path, new) == 404, (method, path)
    polled = await gw.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "x"},
        headers={**auth(new), "x-bf-async-id": job["id"]},
    )
    assert polled.status == 404
    chained = await gw.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "go on", "previous_response_id": kept["id"]},
        headers=auth(new),
    )
    assert chained.status == 400
    in_conv = await gw.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "go on", "conversation": conv["id"]},
        headers=auth(new),
    )
    assert in_conv.status == 404
    # The new key's own state works as any key's does.
    mine = await create(gw, new, model="gpt-test", input="fresh")
    assert await status_of(gw, "GET", f"/v1/responses/{mine['id']}", new) == 200
    assert await status_of(gw, "GET", f"/v1/responses/{mine['id']}", KEY_A) == 404


def test_owner_ids_of_each_kind_of_key() -> None:
    # A key from the file owns under its id, so its state outlives a rotated secret.
    from_file = settings_from(base_config("http://127.0.0.1:9")).keys[0]
    assert (from_file.id, from_file.owner) == ("team-a", "team-a")
    # A key made through the admin API owns under the id minted with it.
    made = stored_key({"id": "k", "owner": "owner_1234", "sha256": "ab" * 32})
    assert (made.id, made.owner) == ("k", "owner_1234")
    # One kept from before owner ids existed keeps owning what it stored under its id.
    legacy = stored_key({"id": "k", "sha256": "ab" * 32})
    assert legacy.owner == "k"
    assert new_owner() != new_owner()

"""The admin API for keys, and keys made through it: in memory and on a real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.app import create_app
from gateway.auth import KeyRing
from gateway.config import digest
from gateway.errors import AuthenticationError
from gateway.keys import DEPS
from gateway.keystore import MemoryKeyStore, Record
from tests.conftest import MakeGateway
from tests.support.clock import FakeClock
from tests.support.configs import ADMIN_KEY, KEY_A, UPSTREAM_KEY, settings_from
from tests.support.redis_server import RedisServer, free_port

Client = TestClient[Any, Any]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(params=["memory", "redis"])
def store_config(
    request: pytest.FixtureRequest, config: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        config["store"] = {"url": server.url, "prefix": f"{tmp_path.name}:"}
    return config


@pytest.fixture
async def admin(make_gateway: MakeGateway, store_config: dict[str, Any]) -> Client:
    return await make_gateway(store_config)


def sdk(gateway: Client, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key=key, max_retries=0)


async def create(gateway: Client, **fields: Any) -> dict[str, Any]:
    resp = await gateway.post("/admin/keys", json=fields, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    error: dict[str, Any] = (await resp.json())["error"]
    return error


async def model_ids(gateway: Client, key: str) -> list[str]:
    async with sdk(gateway, key) as client:
        return sorted([m.id async for m in client.models.list()])


async def test_created_key_works_with_the_sdk_until_deleted(admin: Client) -> None:
    created = await create(admin, project="proj-x", models=["mock-*"])
    secret = created["key"]
    assert secret.startswith("sk-gw-")
    assert len(secret) == len("sk-gw-") + 43
    assert created["id"].startswith("key_")
    assert created["source"] == "api"
    assert created["project"] == "proj-x"
    assert await model_ids(admin, secret) == ["mock-model"]
    resp = await admin.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    assert resp.status == 200
    assert await resp.json() == {"id": created["id"], "deleted": True}
    async with sdk(admin, secret) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_list_and_retrieve_never_show_a_secret(admin: Client) -> None:
    created = await create(admin, id="ci-bot", rpm=10)
    secret = created["key"]
    resp = await admin.get("/admin/keys", headers=ADMIN)
    listing = await resp.json()
    text = await resp.text()
    assert [(k["id"], k["source"]) for k in listing["data"]] == [
        ("team-a", "config"),
        ("team-b", "config"),
        ("ci-bot", "api"),
    ]
    one = await (await admin.get("/admin/keys/ci-bot", headers=ADMIN)).json()
    assert one == listing["data"][2]
    assert one["rpm"] == 10
    assert one["created_at"] > 0
    config_key = await (await admin.get("/admin/keys/team-a", headers=ADMIN)).json()
    assert config_key["source"] == "config"
    assert config_key["project"] == "proj-a"
    for shown in (text, str(one), str(config_key)):
        for hidden in (secret, digest(secret), KEY_A, digest(KEY_A)):
            assert hidden not in shown
    assert all("key" not in k and "sha256" not in k for k in listing["data"])


async def test_disabling_a_key_stops_it_and_enabling_restores_it(admin: Client) -> None:
    created = await create(admin)
    secret = created["key"]
    assert await model_ids(admin, secret)
    resp = await admin.patch(f"/admin/keys/{created['id']}", json={"disabled": True}, headers=ADMIN)
    assert (await resp.json())["disabled"] is True
    async with sdk(admin, secret) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    await admin.patch(f"/admin/keys/{created['id']}", json={"disabled": False}, headers=ADMIN)
    assert await model_ids(admin, secret)


async def test_patch_changes_fields_and_null_restores_the_default(admin: Client) -> None:
    created = await create(admin, project="proj-x")
    path = f"/admin/keys/{created['id']}"
    resp = await admin.patch(path, json={"models": ["cheap"], "tpm": 5000}, headers=ADMIN)
    patched = await resp.json()
    assert (patched["models"], patched["tpm"], patched["project"]) == (["cheap"], 5000, "proj-x")
    assert await model_ids(admin, created["key"]) == ["cheap"]
    resp = await admin.patch(path, json={"models": None}, headers=ADMIN)
    assert (await resp.json())["models"] is None
    assert len(await model_ids(admin, created["key"])) == 3


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_config_keys_are_read_only(admin: Client, method: str) -> None:
    resp = await admin.request(method, "/admin/keys/team-a", json={"rpm": 1}, headers=ADMIN)
    error = await error_of(resp, 409)
    assert "config file" in error["message"]
    assert await model_ids(admin, KEY_A)


@pytest.mark.parametrize("taken", ["team-a", "mine"])
async def test_an_id_in_use_is_409(admin: Client, taken: str) -> None:
    await create(admin, id="mine")
    resp = await admin.post("/admin/keys", json={"id": taken}, headers=ADMIN)
    error = await error_of(resp, 409)
    assert error["param"] == "id"


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_id_is_404(admin: Client, method: str) -> None:
    resp = await admin.request(method, "/admin/keys/nope", json={"rpm": 1}, headers=ADMIN)
    error = await error_of(resp, 404)
    assert error["type"] == "invalid_request_error"
    assert "nope" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rpm": 0}, "rpm"),
        ({"key": "sk-chosen-by-me-1"}, "key"),
        ({"key_sha256": "0" * 64}, "key_sha256"),
        ({"budget_period": "year"}, "budget_period"),
        ({"nope": 1}, "nope"),
        ({"id": "jwt:alice"}, "id"),
        ({"id": "has space"}, "id"),
        ({"policy": {"store": "x"}}, "policy.store"),
    ],
    ids=["rpm", "key", "key_sha256", "period", "unknown", "jwt_id", "bad_id", "policy"],
)
async def test_bad_body_is_400_with_param(admin: Client, body: dict[str, Any], param: str) -> None:
    error = await error_of(await admin.post("/admin/keys", json=body, headers=ADMIN), 400)
    assert error["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [({"id": "other"}, "id"), ({"rpm": "many"}, "rpm"), ({"nope": None}, "nope")],
    ids=["rename", "type", "remove_unknown"],
)
async def test_bad_patch_is_400_with_param(admin: Client, body: dict[str, Any], param: str) -> None:
    created = await create(admin)
    resp = await admin.patch(f"/admin/keys/{created['id']}", json=body, headers=ADMIN)
    assert (await error_of(resp, 400))["param"] == param


@pytest.mark.parametrize(
    "key", [None, KEY_A, "sk-not-the-admin-key"], ids=["none", "user", "wrong"]
)
async def test_admin_routes_need_the_admin_key(gateway: Client, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for method, path in [
        ("POST", "/admin/keys"),
        ("GET", "/admin/keys"),
        ("GET", "/admin/keys/team-a"),
        ("PATCH", "/admin/keys/team-a"),
        ("DELETE", "/admin/keys/team-a"),
    ]:
        resp = await gateway.request(method, path, json={}, headers=headers)
        assert (await error_of(resp, 401))["type"] == "invalid_request_error"


@pytest.mark.parametrize("env_name", [None, "MY_ADMIN_KEY"], ids=["default", "named"])
async def test_no_admin_key_disables_the_admin_api(
    aiohttp_client: AiohttpClient, config: dict[str, Any], env_name: str | None
) -> None:
    if env_name:
        config["auth"]["admin_key_env"] = env_name
    settings = settings_from(config, {"UP_KEY": UPSTREAM_KEY})
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/admin/keys", headers=ADMIN)
    message = (await error_of(resp, 401))["message"]
    assert "disabled" in message
    assert (env_name or "GATEWAY_ADMIN_KEY") in message


async def test_redis_down_config_keys_work_and_others_are_503(
    make_gateway: MakeGateway, config: dict[str, Any]
) -> None:
    config["store"] = {"url": f"redis://127.0.0.1:{free_port()}/0"}
    gateway = await make_gateway(config)
    assert await model_ids(gateway, KEY_A)
    resp = await gateway.get("/v1/models", headers={"Authorization": "Bearer sk-gw-stored-000"})
    assert resp.status == 503
    assert resp.headers["retry-after"] == "1"
    resp = await gateway.post("/admin/keys", json={}, headers=ADMIN)
    assert resp.status == 503


async def test_a_change_reaches_another_replica_within_a_second(
    make_gateway: MakeGateway, config: dict[str, Any], redis_server: RedisServer, tmp_path: Path
) -> None:
    config["store"] = {"url": redis_server.url, "prefix": f"{tmp_path.name}:"}
    one, two = await make_gateway(config), await make_gateway(config)
    clock = FakeClock()
    two.app[DEPS].keys.clock = clock  # replica two's key cache runs on a clock the test moves
    created = await create(one, models=["mock-*"])
    secret, path = created["key"], f"/admin/keys/{created['id']}"
    assert await model_ids(two, secret) == ["mock-model"]  # `two` now holds it in its cache

    async def within_a_second(change: dict[str, Any] | None, expected: list[str] | None) -> None:
        if change is None:
            resp = await one.delete(path, headers=ADMIN)
        else:
            resp = await one.patch(path, json=change, headers=ADMIN)
        assert resp.status == 200
        clock.now += 1.0
        if expected is None:
            async with sdk(two, secret) as client:
                with pytest.raises(openai.AuthenticationError):
                    await client.models.list()
        else:
            assert await model_ids(two, secret) == expected

    await within_a_second({"models": ["cheap"]}, ["cheap"])
    await within_a_second({"disabled": True}, None)
    await one.patch(path, json={"disabled": False}, headers=ADMIN)
    clock.now += 1.0
    assert await model_ids(two, secret) == ["cheap"]
    await within_a_second(None, None)


class CountingKeyStore(MemoryKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.finds = 0

    async def find(self, sha256: str) -> Record | None:
        self.finds += 1
        await asyncio.sleep(0)  # let the other callers pile up behind this lookup
        return await super().find(sha256)


async def test_a_stored_key_costs_one_lookup_per_second_and_so_does_a_wrong_one() -> None:
    store, now = CountingKeyStore(), [100.0]
    secret = "sk-gw-" + "x" * 43
    await store.create({"id": "k", "sha256": digest(secret), "created_at": 1})
    ring = KeyRing([], store=store, clock=lambda: now[0])
    found = await asyncio.gather(*(ring.authenticate(f"Bearer {secret}") for _ in range(50)))
    assert {k.id for k in found} == {"k"}
    assert store.finds == 1
    now[0] += 0.99
    await ring.authenticate(f"Bearer {secret}")
    assert store.finds == 1
    now[0] += 0.01
    await ring.authenticate(f"Bearer {secret}")
    assert store.finds == 2
    for _ in range(20):
        with pytest.raises(AuthenticationError):
            await ring.authenticate("Bearer sk-gw-wrong-000000")
    assert store.finds == 3

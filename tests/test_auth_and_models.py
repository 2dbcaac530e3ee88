"""Keys (401s), model names, aliases, provider/model, per-key globs, x-provider, /models."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config import digest
from tests.support.configs import KEY_A, KEY_B
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    error: dict[str, Any] = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer sk-wrong-key-123456"},
    ],
    ids=["missing", "empty", "basic", "wrong"],
)
async def test_bad_or_missing_key_is_401(gateway: Client, headers: dict[str, str]) -> None:
    resp = await gateway.post(
        "/v1/responses", json={"model": "gpt-test", "input": "x"}, headers=headers
    )
    error = await error_of(resp, 401)
    assert error["type"] == "invalid_request_error"
    if headers.get("Authorization", "").startswith("Bearer sk-"):
        assert error["code"] == "invalid_api_key"
        assert "sk-wrong-key-123456" not in error["message"]


async def test_key_from_env_and_from_digest(make_gateway: Any, config: dict[str, Any]) -> None:
    config["auth"]["keys"] = [
        {"id": "env", "key_env": "UP_KEY"},
        {"id": "digest", "key_sha256": digest("sk-by-digest-000")},
    ]
    gateway = await make_gateway(config)
    for key in ("sk-upstream-secret-42", "sk-by-digest-000"):
        resp = await gateway.get("/v1/models", headers=auth(key))
        assert resp.status == 200


async def test_model_alias_resolves(gateway: Client, stub: StubUpstream) -> None:
    resp = await gateway.post(
        "/v1/responses",
        headers=auth(KEY_A),
        json={"model": "ri.language-model-service..language-model.gpt-test", "input": "x"},
    )
    assert resp.status == 200
    assert stub.last.json["model"] == "gpt-test"


async def test_provider_slash_model_resolves(gateway: Client, stub: StubUpstream) -> None:
    resp = await gateway.post(
        "/v1/responses", headers=auth(KEY_A), json={"model": "up/some-new-model", "input": "x"}
    )
    assert resp.status == 200
    assert stub.last.json["model"] == "some-new-model"


async def test_unknown_model_is_404(gateway: Client) -> None:
    resp = await gateway.post(
        "/v1/responses", headers=auth(KEY_A), json={"model": "nope", "input": "x"}
    )
    error = await error_of(resp, 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"


async def test_model_outside_the_keys_globs_is_403(gateway: Client) -> None:
    resp = await gateway.post(
        "/v1/responses", headers=auth(KEY_B), json={"model": "gpt-test", "input": "x"}
    )
    error = await error_of(resp, 403)
    assert error["code"] == "model_not_allowed"
    assert error["param"] == "model"


async def test_model_inside_the_keys_globs_is_served(gateway: Client) -> None:
    resp = await gateway.post(
        "/v1/responses", headers=auth(KEY_B), json={"model": "mock-model", "input": "x"}
    )
    assert resp.status == 200


@pytest.mark.parametrize("header", ["x-provider", "x-tfy-provider-name"])
async def test_unknown_provider_header_is_400(gateway: Client, header: str) -> None:
    resp = await gateway.post(
        "/v1/responses",
        headers={**auth(KEY_A), header: "nowhere"},
        json={"model": "gpt-test", "input": "x"},
    )
    error = await error_of(resp, 400)
    assert error["param"] == "x-provider"


async def test_provider_header_restricts_routing(gateway: Client) -> None:
    resp = await gateway.post(
        "/v1/responses",
        headers={**auth(KEY_A), "x-provider": "mock"},
        json={"model": "gpt-test", "input": "x"},
    )
    error = await error_of(resp, 400)
    assert error["param"] == "x-provider"
    served = await gateway.post(
        "/v1/responses",
        headers={**auth(KEY_A), "x-provider": "up"},
        json={"model": "gpt-test", "input": "x"},
    )
    assert served.headers["x-gateway-provider"] == "up"


async def test_region_outside_the_keys_is_403(make_gateway: Any, config: dict[str, Any]) -> None:
    config["auth"]["keys"][0]["regions"] = ["eu"]
    gateway = await make_gateway(config)
    resp = await gateway.post(
        "/v1/responses", headers=auth(KEY_A), json={"model": "gpt-test", "input": "x"}
    )
    error = await error_of(resp, 403)
    assert error["code"] == "region_not_allowed"


async def test_models_list_shows_only_what_the_key_may_use(gateway: Client) -> None:
    everything = await (await gateway.get("/v1/models", headers=auth(KEY_A))).json()
    assert [m["id"] for m in everything["data"]] == ["gpt-test", "cheap", "mock-model"]
    limited = await (await gateway.get("/v1/models", headers=auth(KEY_B))).json()
    assert [m["id"] for m in limited["data"]] == ["cheap", "mock-model"]
    assert limited["object"] == "list"


async def test_retrieve_model(gateway: Client) -> None:
    resp = await gateway.get("/v1/models/gpt-test", headers=auth(KEY_A))
    assert (await resp.json())["id"] == "gpt-test"
    slashed = await gateway.get("/v1/models/up/anything", headers=auth(KEY_A))
    assert (await slashed.json())["id"] == "up/anything"
    hidden = await gateway.get("/v1/models/gpt-test", headers=auth(KEY_B))
    assert (await error_of(hidden, 404))["code"] == "model_not_found"


async def test_models_need_a_key(gateway: Client) -> None:
    await error_of(await gateway.get("/v1/models"), 401)

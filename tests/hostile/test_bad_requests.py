"""Bad input always gets a clear OpenAI envelope: never a 500, HTML, plain text or a hang."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.configs import KEY_A

AUTH = {"Authorization": f"Bearer {KEY_A}"}
Client = TestClient[Any, Any]


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    assert resp.headers["x-request-id"]
    error: dict[str, Any] = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"", "application/json", 400),
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'"text"', "application/json", 400),
        (b"model=x", "application/x-www-form-urlencoded", 415),
        (b"\xff\xfe\x00", "application/json", 400),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400),
    ],
    ids=["empty", "broken", "array", "string", "form", "binary", "deep"],
)
async def test_body_that_is_not_a_json_object(
    gateway: Client, raw: bytes, content_type: str, status: int
) -> None:
    resp = await gateway.post(
        "/v1/responses", data=raw, headers={**AUTH, "Content-Type": content_type}
    )
    await error_of(resp, status)


async def test_body_over_the_limit_is_413(make_gateway: Any, config: dict[str, Any]) -> None:
    config["server"]["max_body_bytes"] = 2048
    gateway = await make_gateway(config)
    resp = await gateway.post(
        "/v1/responses", data=b'{"input": "' + b"x" * 4096 + b'"}', headers=AUTH
    )
    await error_of(resp, 413)


async def test_unknown_path_is_a_404_envelope(gateway: Client) -> None:
    error = await error_of(await gateway.get("/v1/nothing-here", headers=AUTH), 404)
    assert "nothing-here" in error["message"]


async def test_wrong_method_is_a_405_envelope(gateway: Client) -> None:
    await error_of(await gateway.put("/v1/responses", headers=AUTH), 405)


async def test_missing_model_is_400(gateway: Client) -> None:
    resp = await gateway.post("/v1/responses", json={"input": "hi"}, headers=AUTH)
    error = await error_of(resp, 400)
    assert error["param"] == "model"


async def test_non_string_model_is_400(gateway: Client) -> None:
    resp = await gateway.post("/v1/responses", json={"model": 5, "input": "hi"}, headers=AUTH)
    error = await error_of(resp, 400)
    assert error["param"] == "model"

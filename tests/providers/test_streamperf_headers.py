"""An upstream's answer headers are decoded only when something reads them: a 200 stream's or
a 200 JSON answer's never are, a refusal's Retry-After still is."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from gateway.upstream_http import response
from tests.support.configs import KEY_A
from tests.support.stub import Behaviour, StubUpstream

AUTH = {"Authorization": f"Bearer {KEY_A}"}
REQUEST = {"model": "gpt-test", "input": "Tell me a story"}


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times an upstream answer's headers were decoded."""
    made: list[int] = []

    class Counting(CIMultiDict[str]):
        def __init__(self, *args: Any) -> None:
            made.append(1)
            super().__init__(*args)

    monkeypatch.setattr(response, "CIMultiDict", Counting)
    return made


@pytest.mark.parametrize("stream", [True, False])
async def test_a_success_never_decodes_the_upstreams_headers(
    gateway: TestClient[Any, Any], stub: StubUpstream, decoded: list[int], stream: bool
) -> None:
    resp = await gateway.post("/v1/responses", json={**REQUEST, "stream": stream}, headers=AUTH)
    assert resp.status == 200
    body = await resp.read()
    assert (b"event: response.completed" in body) is stream
    assert decoded == []


async def test_a_refusals_retry_after_is_still_read(
    gateway: TestClient[Any, Any], stub: StubUpstream, decoded: list[int]
) -> None:
    error = {"error": {"message": "slow down", "type": "rate_limit", "param": None, "code": None}}
    stub.behaviour = Behaviour(status=429, body=orjson.dumps(error), headers={"Retry-After": "7"})
    resp = await gateway.post("/v1/responses", json=REQUEST, headers=AUTH)
    assert resp.status == 429
    assert resp.headers["retry-after"] == "7"
    assert decoded

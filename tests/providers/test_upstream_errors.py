"""What a client learns of an upstream's failure: its envelope's message, never its raw body."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.errors_upstream import scrub
from tests.support.configs import KEY_A
from tests.support.stub import Behaviour, StubUpstream

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
FAKE_SECRET = "sk-live-internal-0123456789abcdef"
INTERNAL_HOST = "db-7.internal.corp.example"
HTML_PAGE = (
    f"<html><body><h1>500 Internal Server Error</h1><pre>Traceback (most recent call last):\n"
    f'  File "/srv/app/handler.py", line 42\nConnectionError: {INTERNAL_HOST}:5432 '
    f"refused; Authorization: Bearer {FAKE_SECRET}</pre></body></html>"
).encode()
PLAIN_TEXT = f"upstream crashed talking to {INTERNAL_HOST} with key={FAKE_SECRET}".encode()
LEAKY = [
    pytest.param(HTML_PAGE, "text/html", id="html"),
    pytest.param(PLAIN_TEXT, "text/plain", id="plain-text"),
    pytest.param(
        orjson.dumps({"detail": f"{INTERNAL_HOST} down", "token": FAKE_SECRET}),
        "application/json",
        id="json-without-envelope",
    ),
]


def assert_no_leak(text: str) -> None:
    assert FAKE_SECRET not in text
    assert INTERNAL_HOST not in text
    assert "Traceback" not in text


async def create(gateway: Client, **extra: Any) -> Any:
    return await gateway.post(
        "/v1/responses", json={"model": "gpt-test", "input": "hi", **extra}, headers=AUTH
    )


@pytest.mark.parametrize(("body", "content_type"), LEAKY)
@pytest.mark.parametrize("status", [500, 503])
async def test_upstream_5xx_body_does_not_reach_the_client(
    gateway: Client, stub: StubUpstream, body: bytes, content_type: str, status: int
) -> None:
    stub.behaviour = Behaviour(status=status, body=body, content_type=content_type)
    resp = await create(gateway)
    assert resp.status == 502
    text = await resp.text()
    assert_no_leak(text)
    error = orjson.loads(text)["error"]
    assert error["code"] == "upstream_error"
    assert f"status {status}" in error["message"]


@pytest.mark.parametrize(("body", "content_type"), LEAKY)
async def test_upstream_5xx_before_a_stream_does_not_reach_the_client(
    gateway: Client, stub: StubUpstream, body: bytes, content_type: str
) -> None:
    stub.behaviour = Behaviour(status=500, body=body, content_type=content_type)
    resp = await create(gateway, stream=True)
    assert resp.status == 502
    assert_no_leak(await resp.text())


async def test_upstream_5xx_envelope_keeps_its_message(gateway: Client, stub: StubUpstream) -> None:
    envelope = {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    stub.behaviour = Behaviour(status=500, body=orjson.dumps(envelope))
    resp = await create(gateway)
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert "The server had an error while processing your request." in error["message"]
    assert error["code"] == "upstream_error"


@pytest.mark.parametrize(("body", "content_type"), LEAKY)
@pytest.mark.parametrize("status", [400, 404, 422])
async def test_upstream_4xx_body_without_envelope_does_not_reach_the_client(
    gateway: Client, stub: StubUpstream, body: bytes, content_type: str, status: int
) -> None:
    stub.behaviour = Behaviour(status=status, body=body, content_type=content_type)
    resp = await create(gateway)
    assert resp.status == status
    text = await resp.text()
    assert_no_leak(text)
    error = orjson.loads(text)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert f"status {status}" in error["message"]


async def test_upstream_4xx_envelope_keeps_message_param_and_code(
    gateway: Client, stub: StubUpstream
) -> None:
    envelope = {
        "error": {
            "message": "Invalid value for 'temperature'.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
            "debug": {"host": INTERNAL_HOST, "auth": FAKE_SECRET},
        }
    }
    stub.behaviour = Behaviour(status=400, body=orjson.dumps(envelope))
    resp = await create(gateway)
    assert resp.status == 400
    text = await resp.text()
    assert_no_leak(text)
    assert orjson.loads(text)["error"] == {
        "message": "Invalid value for 'temperature'.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "invalid_value",
    }


async def test_unreachable_upstream_names_no_address(
    make_gateway: Any, config: dict[str, Any]
) -> None:
    config["providers"][0]["base_url"] = "http://127.0.0.1:9/v1"
    gateway = await make_gateway(config)
    resp = await create(gateway)
    assert resp.status == 502
    message = (await resp.json())["error"]["message"]
    assert "127.0.0.1" not in message
    assert ":9" not in message


async def poll_job(gateway: Client, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            resp = await gateway.post(
                "/v1/responses", json={}, headers={**AUTH, "x-bf-async-id": job_id}
            )
            answer: dict[str, Any] = await resp.json()
            if answer.get("status") not in ("queued", "in_progress"):
                return answer
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "status", [pytest.param(400, id="refused"), pytest.param(500, id="failed")]
)
async def test_async_job_failure_does_not_carry_the_upstream_body(
    gateway: Client, stub: StubUpstream, status: int
) -> None:
    stub.behaviour = Behaviour(status=status, body=HTML_PAGE, content_type="text/html")
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "hi"},
        headers={**AUTH, "x-bf-async": "true"},
    )
    assert resp.status == 202
    final = await poll_job(gateway, (await resp.json())["id"])
    assert final["status"] == "failed"
    assert_no_leak(orjson.dumps(final).decode())
    assert f"status {status}" in final["error"]["message"]


async def test_async_job_failure_keeps_the_upstream_envelope_message(
    gateway: Client, stub: StubUpstream
) -> None:
    envelope = {"error": {"message": "Invalid value for 'temperature'.", "type": "x"}}
    stub.behaviour = Behaviour(status=400, body=orjson.dumps(envelope))
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "hi"},
        headers={**AUTH, "x-bf-async": "true"},
    )
    final = await poll_job(gateway, (await resp.json())["id"])
    assert final["status"] == "failed"
    assert "Invalid value for 'temperature'." in final["error"]["message"]


async def test_raw_body_is_logged_at_debug_without_its_secret(
    gateway: Client, stub: StubUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.upstream")
    stub.behaviour = Behaviour(status=500, body=HTML_PAGE, content_type="text/html")
    resp = await create(gateway)
    assert resp.status == 502
    debug = [r for r in caplog.records if r.name == "gateway.upstream"]
    assert debug
    assert all(r.levelno == logging.DEBUG for r in debug)
    assert any(INTERNAL_HOST in r.getMessage() for r in debug)
    assert FAKE_SECRET not in caplog.text
    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert_no_leak("\n".join(above_debug))


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {FAKE_SECRET}",
        f'{{"api_key": "{FAKE_SECRET}"}}',
        f"token={FAKE_SECRET}&x=1",
        f"postgres://admin:{FAKE_SECRET}@{INTERNAL_HOST}/db",
        f"key {FAKE_SECRET} rejected",
    ],
)
def test_scrub_hides_credentials(text: str) -> None:
    assert FAKE_SECRET not in scrub(text)

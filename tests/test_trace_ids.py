"""Every request has a W3C trace id: the client's, or a fresh one; upstream and in the log."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pytest_aiohttp import AiohttpClient

from gateway.app import create_app
from gateway.observability import JSONFormatter
from tests.support.configs import KEY_A, settings_from
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
W3C = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="gateway.access")
    return caplog


def logged_trace_ids(caplog: pytest.LogCaptureFixture) -> list[str | None]:
    """The trace_id field of each access log line, as the JSON formatter writes it."""
    formatter = JSONFormatter()
    lines = [
        orjson.loads(formatter.format(r)) for r in caplog.records if r.name == "gateway.access"
    ]
    return [line.get("trace_id") for line in lines]


def upstream_trace(stub: StubUpstream) -> tuple[str, str]:
    sent = {k.lower(): v for k, v in stub.last.headers.items()}
    found = W3C.fullmatch(sent["traceparent"])
    assert found is not None, sent["traceparent"]
    trace_id, span_id = found.group(1), found.group(2)
    assert trace_id != "0" * 32
    assert span_id != "0" * 16
    return trace_id, span_id


async def create(gateway: Client, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "hi", **extra},
        headers={**AUTH, **(headers or {})},
    )
    await resp.read()
    return resp


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_without_traceparent_a_fresh_trace_goes_upstream_and_into_the_log(
    gateway: Client, stub: StubUpstream, access_log: pytest.LogCaptureFixture, stream: bool
) -> None:
    resp = await create(gateway, stream=stream)
    assert resp.status == 200
    trace_id, _ = upstream_trace(stub)
    assert logged_trace_ids(access_log) == [trace_id]


async def test_each_request_gets_its_own_trace(gateway: Client, stub: StubUpstream) -> None:
    await create(gateway)
    first, _ = upstream_trace(stub)
    await create(gateway)
    second, _ = upstream_trace(stub)
    assert first != second


async def test_clients_trace_id_goes_upstream_and_into_the_log(
    gateway: Client, stub: StubUpstream, access_log: pytest.LogCaptureFixture
) -> None:
    resp = await create(gateway, {"traceparent": PARENT, "tracestate": "vendor=1"})
    assert resp.status == 200
    trace_id, _ = upstream_trace(stub)
    assert trace_id == TRACE_ID
    assert stub.last.headers["tracestate"] == "vendor=1"
    assert logged_trace_ids(access_log) == [TRACE_ID]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param(f"00-{'0' * 32}-00f067aa0ba902b7-01", id="zero-trace-id"),
        pytest.param(f"00-{TRACE_ID}-{'0' * 16}-01", id="zero-parent-id"),
        pytest.param(f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01", id="upper-case"),
        pytest.param(f"ff-{TRACE_ID}-00f067aa0ba902b7-01", id="version-ff"),
        pytest.param(f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra", id="version-00-with-more"),
        pytest.param(f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01", id="short-trace-id"),
        pytest.param(f"00-{TRACE_ID}-00f067aa0ba902b7-zz", id="bad-flags"),
    ],
)
async def test_invalid_traceparent_is_replaced_by_a_fresh_one(
    gateway: Client, stub: StubUpstream, access_log: pytest.LogCaptureFixture, bad: str
) -> None:
    resp = await create(gateway, {"traceparent": bad, "tracestate": "vendor=1"})
    assert resp.status == 200
    trace_id, _ = upstream_trace(stub)
    assert trace_id != TRACE_ID
    assert trace_id not in bad.lower()
    # tracestate belongs to the trace it came with, which was not taken.
    assert "tracestate" not in {k.lower() for k in stub.last.headers}
    assert logged_trace_ids(access_log) == [trace_id]


async def test_a_later_version_traceparent_keeps_its_trace_id(
    gateway: Client, stub: StubUpstream
) -> None:
    resp = await create(gateway, {"traceparent": f"cc-{TRACE_ID}-00f067aa0ba902b7-01-future"})
    assert resp.status == 200
    trace_id, _ = upstream_trace(stub)
    assert trace_id == TRACE_ID


async def test_refused_request_still_logs_a_trace_id(
    gateway: Client, stub: StubUpstream, access_log: pytest.LogCaptureFixture
) -> None:
    resp = await gateway.post("/v1/responses", json={"model": "gpt-test", "input": "hi"})
    assert resp.status == 401
    (logged,) = logged_trace_ids(access_log)
    assert logged is not None
    assert re.fullmatch(r"[0-9a-f]{32}", logged)


async def test_async_job_goes_upstream_under_its_requests_trace(
    gateway: Client, stub: StubUpstream, access_log: pytest.LogCaptureFixture
) -> None:
    resp = await create(gateway, {"x-bf-async": "true"})
    assert resp.status == 202
    (logged,) = logged_trace_ids(access_log)
    async with asyncio.timeout(10):
        while not stub.requests:
            await asyncio.sleep(0.02)
    trace_id, _ = upstream_trace(stub)
    assert trace_id == logged


async def test_with_tracing_on_the_log_has_the_spans_trace_id(
    aiohttp_client: AiohttpClient,
    config: dict[str, Any],
    stub: StubUpstream,
    access_log: pytest.LogCaptureFixture,
) -> None:
    exporter = InMemorySpanExporter()
    gateway = await aiohttp_client(create_app(settings_from(config), span_exporter=exporter))
    resp = await create(gateway)
    assert resp.status == 200
    trace_id, _ = upstream_trace(stub)
    assert logged_trace_ids(access_log) == [trace_id]


async def test_input_tokens_count_goes_upstream_under_the_requests_trace(
    gateway: Client, stub: StubUpstream, access_log: pytest.LogCaptureFixture
) -> None:
    resp = await gateway.post(
        "/v1/responses/input_tokens",
        json={"model": "gpt-test", "input": "hi"},
        headers={**AUTH, "traceparent": PARENT},
    )
    assert (await resp.json())["input_tokens"] == 4242
    assert stub.last.path == "/v1/responses/input_tokens"
    trace_id, _ = upstream_trace(stub)
    assert trace_id == TRACE_ID
    assert logged_trace_ids(access_log) == [TRACE_ID]

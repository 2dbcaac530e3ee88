"""/metrics after traffic, trace context through to the upstream, and logs without secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pytest_aiohttp import AiohttpClient

from gateway.app import create_app
from gateway.keys import DEPS
from tests.support.configs import KEY_A, UPSTREAM_KEY, settings_from
from tests.support.processes import Replica
from tests.support.stub import Behaviour, StubUpstream

AUTH = {"Authorization": f"Bearer {KEY_A}"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_move_with_traffic(gateway: Any, stub: StubUpstream) -> None:
    before = await (await gateway.get("/metrics")).text()
    await gateway.post("/v1/responses", json={"model": "gpt-test", "input": "hi"}, headers=AUTH)
    stream = await gateway.post(
        "/v1/responses", headers=AUTH, json={"model": "gpt-test", "input": "hi", "stream": True}
    )
    await stream.read()
    stub.behaviour = Behaviour(status=500, body=b"down")
    await gateway.post("/v1/responses", json={"model": "cheap", "input": "hi"}, headers=AUTH)
    resp = await gateway.get("/metrics")
    assert resp.headers["Content-Type"].startswith("text/plain")
    after = await resp.text()
    ok = {"operation": "create_response", "model": "gpt-test", "status_class": "2xx"}
    assert (
        sample(after, "gateway_requests_total", **ok)
        - sample(before, "gateway_requests_total", **ok)
        == 2
    )
    assert sample(after, "gateway_tokens_total", model="gpt-test", token_type="output") > sample(
        before, "gateway_tokens_total", model="gpt-test", token_type="output"
    )
    assert sample(after, "gateway_stream_time_to_first_byte_seconds_count", provider="up") >= 1
    assert sample(after, "gateway_upstream_errors_total", provider="up", kind="status_500") >= 1


async def test_limit_refusals_are_told_apart(make_gateway: Any, config: dict[str, Any]) -> None:
    config["auth"]["keys"][0]["rpm"] = 1
    gateway = await make_gateway(config)
    body = {"model": "mock-model", "input": "x"}
    await gateway.post("/v1/responses", json=body, headers=AUTH)
    refused = await gateway.post("/v1/responses", json=body, headers=AUTH)
    assert refused.status == 429
    text = await (await gateway.get("/metrics")).text()
    assert sample(text, "gateway_limit_refusals_total", kind="rate_limit_exceeded") >= 1


async def test_trace_context_reaches_the_upstream(
    aiohttp_client: AiohttpClient, config: dict[str, Any], stub: StubUpstream
) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(settings_from(config), span_exporter=exporter)
    gateway = await aiohttp_client(app)
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "hi"},
        headers={**AUTH, "traceparent": PARENT},
    )
    assert resp.status == 200
    tracing = app[DEPS].tracing
    assert tracing is not None
    tracing.provider.force_flush()
    spans = {span.kind: span for span in exporter.get_finished_spans()}
    server, client = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    sent = stub.last.headers["traceparent"]
    assert sent.split("-")[1] == TRACE_ID
    assert sent.split("-")[2] == f"{client.context.span_id:016x}"


async def test_without_tracing_the_clients_traceparent_goes_up(
    gateway: Any, stub: StubUpstream
) -> None:
    await gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "hi"},
        headers={**AUTH, "traceparent": PARENT},
    )
    assert stub.last.headers["traceparent"] == PARENT


async def test_logs_carry_no_key_and_no_prompt(
    config: dict[str, Any], tmp_path: Path, stub: StubUpstream
) -> None:
    config["server"]["access_log"] = True
    replica = Replica(config, tmp_path, "logged").start()
    secret_prompt = "my-very-private-prompt-text"
    try:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{replica.url}/v1/responses",
                headers=AUTH,
                json={"model": "gpt-test", "input": secret_prompt},
            ) as resp:
                answer = await resp.json()
            async with http.post(
                f"{replica.url}/v1/responses",
                headers={"Authorization": "Bearer sk-wrong-secret-key-1"},
                json={"model": "gpt-test", "input": secret_prompt},
            ) as resp:
                assert resp.status == 401
    finally:
        replica.stop()
    text = replica.log_path.read_text()
    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "gateway.access"]
    assert len(access) == 2
    assert access[0]["key_id"] == "team-a"
    assert access[0]["status"] == 200
    assert access[0]["input_tokens"] > 0
    assert access[1]["status"] == 401
    for forbidden in (
        KEY_A,
        UPSTREAM_KEY,
        secret_prompt,
        "sk-wrong-secret-key-1",
        answer["output"][0]["content"][0]["text"],
    ):
        assert forbidden not in text

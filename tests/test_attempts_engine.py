"""The one attempt engine: providers take a frozen UpstreamRequest, and a background job's
upstream attempts follow `routing.max_attempts` as the client path's do."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import openai
import orjson
import pytest

from gateway.config import Account, ProviderSettings
from gateway.jobs.run import JobRun
from gateway.keys import DEPS
from gateway.providers.base import UpstreamRequest
from gateway.providers.mock import MockProvider
from gateway.traceparent import new_trace
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.stub import Behaviour, StubUpstream


def upstream_request(**changes: Any) -> UpstreamRequest:
    request = UpstreamRequest(
        body={"model": "mock-model", "input": "hello"},
        raw=None,
        model="served-as",
        stream=False,
        headers={},
        request_id="req_1",
        trace=new_trace(),
        trace_headers=None,
        deadline=math.inf,
    )
    return request._replace(**changes)


async def test_a_provider_answers_an_upstream_request() -> None:
    provider = MockProvider(ProviderSettings(name="mock", api="mock"))
    async with provider.send(upstream_request(), Account(name="main")) as reply:
        answer = orjson.loads(reply.body)
    assert reply.status == 200
    assert answer["model"] == "served-as"


def test_an_upstream_request_is_frozen() -> None:
    request = upstream_request()
    with pytest.raises(AttributeError):
        request.stream = True  # type: ignore[misc]  # what the test is about


def test_an_upstream_request_sends_the_clients_bytes_unless_rewritten() -> None:
    assert upstream_request(raw=b'{"a": 1}').data() == b'{"a": 1}'
    assert orjson.loads(upstream_request().data()) == {"model": "mock-model", "input": "hello"}


async def test_job_upstream_attempts_follow_routing_max_attempts(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["routing"] = {"max_attempts": 2}
    gateway = await make_gateway(config)
    stub.behaviour = Behaviour(status=503, body=b'{"error": {"message": "overloaded"}}')
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        first = await client.responses.create(model="gpt-test", input="x", background=True)
        async with asyncio.timeout(15):
            while (final := await client.responses.retrieve(first.id)).status in (
                "queued",
                "in_progress",
            ):
                await asyncio.sleep(0.05)
    assert final.status == "failed"
    assert final.error is not None
    assert "gave up after 2 attempts" in final.error.message
    assert len(stub.requests) == 2


async def test_the_last_failed_answer_is_counted_once_and_keeps_its_retry_after(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["routing"] = {"max_attempts": 1}
    gateway = await make_gateway(config)
    stub.behaviour = Behaviour(status=503, body=b"busy", headers={"retry-after": "40"})
    metric = 'gateway_upstream_errors_total{kind="status_503",provider="up"}'

    async def errors() -> float:
        text = await (await gateway.get("/metrics")).text()
        found = [line for line in text.splitlines() if line.startswith(metric)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    before = await errors()
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "cheap", "input": "hi"},
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    assert resp.status == 502
    assert await errors() - before == 1
    router = gateway.app[DEPS].router
    _, targets = router.resolve("cheap", gateway.app[DEPS].keys.config_keys[0])
    # The upstream's retry-after (40 s), not the provider's default cooldown (30 s).
    assert router.health.soonest(targets) > 35


async def test_a_second_run_of_an_ended_job_charges_nothing(
    make_gateway: MakeGateway, config: dict[str, Any]
) -> None:
    # A copy of the job that reclaimed it after a lapsed lease ends without an attempt, and
    # settles nothing: the run that wrote the outcome charged it once.
    config["auth"]["keys"][0]["rpm"] = 1000  # admitted by the limits: the job holds a ticket
    gateway = await make_gateway(config)
    created = await gateway.post(
        "/v1/responses",
        json={"model": "mock-model", "input": "hi", "background": True},
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    job_id = (await created.json())["id"]
    deps = gateway.app[DEPS]
    async with asyncio.timeout(10):
        while await deps.jobs.status(job_id) != "completed":
            await asyncio.sleep(0.02)
    await deps.settler.flush()
    charged = len(deps.governor.memory.stream)
    job = await deps.jobs.get_job(job_id)
    assert job is not None
    assert job.get("ticket")
    again = JobRun(deps, deps.jobs, job_id, job)
    await again.run()
    await again.settle()
    await deps.settler.flush()
    assert len(deps.governor.memory.stream) == charged

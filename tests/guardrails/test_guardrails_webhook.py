"""A guardrail's external check: an endpoint in OpenAI's moderation shape, and its failures."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from gateway.keys import DEPS
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.redis_server import free_port
from tests.support.stub import StubUpstream


class Moderation:
    """A moderation endpoint: flags texts holding "forbidden"; sleeps `delay_s` first."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.seen: list[list[str]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/moderations", self.moderate)

    async def moderate(self, request: web.Request) -> web.Response:
        texts = (await request.json())["input"]
        self.seen.append(texts)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.json_response(
            {"id": "modr-1", "results": [{"flagged": "forbidden" in t} for t in texts]}
        )


@pytest.fixture
async def moderation(aiohttp_server: AiohttpServer) -> tuple[Moderation, str]:
    mod = Moderation()
    server = await aiohttp_server(mod.app)
    return mod, str(server.make_url("/v1/moderations"))


def rule(url: str, on_error: str, action: str = "block") -> dict[str, Any]:
    return {
        "name": "moderation",
        "apply_to": ["input"],
        "webhook": {"url": url, "timeout_ms": 200, "on_error": on_error},
        "action": action,
    }


async def sdk_for(
    make_gateway: MakeGateway, config: dict[str, Any], rules: list[dict[str, Any]]
) -> openai.AsyncOpenAI:
    config["guardrails"] = rules
    gw = await make_gateway(config)
    return openai.AsyncOpenAI(base_url=str(gw.make_url("/v1")), api_key=KEY_A, max_retries=0)


async def test_a_flagged_text_is_blocked_naming_its_field(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    moderation: tuple[Moderation, str],
    stub: StubUpstream,
) -> None:
    mod, url = moderation
    async with await sdk_for(make_gateway, config, [rule(url, "closed")]) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(
                model="gpt-test",
                instructions="be kind",
                input=[{"role": "user", "content": "something forbidden"}],
            )
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["code"] == "content_blocked"
        assert refused.value.body["param"] == "input[0].content"
        assert mod.seen[-1] == ["be kind", "something forbidden"]
        assert stub.requests == []
        ok = await client.responses.create(model="gpt-test", input="something fine")
        assert ok.status == "completed"


async def test_a_flagged_text_a_redact_rule_matches_is_replaced(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    moderation: tuple[Moderation, str],
    stub: StubUpstream,
) -> None:
    _, url = moderation
    async with await sdk_for(make_gateway, config, [rule(url, "closed", "redact")]) as client:
        raw = await client.responses.with_raw_response.create(
            model="gpt-test", input="something forbidden"
        )
        assert raw.headers["x-gateway-guardrails"] == "moderation"
        assert stub.last.json["input"] == "[REDACTED:moderation]"
        kept = await client.responses.input_items.list(raw.parse().id)
        assert "forbidden" not in kept.model_dump_json()
        assert "[REDACTED:moderation]" in kept.model_dump_json()


async def test_past_timeout_open_lets_the_request_through(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    moderation: tuple[Moderation, str],
    stub: StubUpstream,
) -> None:
    mod, url = moderation
    mod.delay_s = 5
    async with await sdk_for(make_gateway, config, [rule(url, "open")]) as client:
        started = asyncio.get_running_loop().time()
        answer = await client.responses.create(model="gpt-test", input="something forbidden")
        assert asyncio.get_running_loop().time() - started < 2
    assert answer.status == "completed"
    assert stub.last.json["input"] == "something forbidden"


async def test_past_timeout_closed_answers_503_guardrail_unavailable(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    moderation: tuple[Moderation, str],
    stub: StubUpstream,
) -> None:
    mod, url = moderation
    mod.delay_s = 5
    async with await sdk_for(make_gateway, config, [rule(url, "closed")]) as client:
        with pytest.raises(openai.InternalServerError) as refused:
            await client.responses.create(model="gpt-test", input="anything")
    assert refused.value.status_code == 503
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["code"] == "guardrail_unavailable"
    assert stub.requests == []


async def test_an_endpoint_that_is_down_follows_on_error(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1/moderations"
    rules = [rule(down, "closed")]
    async with await sdk_for(make_gateway, config, rules) as client:
        with pytest.raises(openai.InternalServerError):
            await client.responses.create(model="gpt-test", input="anything")
    rules = [rule(down, "open")]
    async with await sdk_for(make_gateway, config, rules) as client:
        assert (await client.responses.create(model="gpt-test", input="x")).status == "completed"


def output_rule(url: str, on_error: str, action: str) -> dict[str, Any]:
    return {**rule(url, on_error, action), "apply_to": ["output"]}


async def test_a_json_answer_goes_through_an_output_webhook(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    moderation: tuple[Moderation, str],
    stub: StubUpstream,
) -> None:
    mod, url = moderation
    async with await sdk_for(make_gateway, config, [output_rule(url, "open", "block")]) as client:
        blocked = await client.responses.create(model="gpt-test", input="something forbidden")
        # The request itself went upstream as it was: the rule is on output.
        assert stub.last.json["input"] == "something forbidden"
        assert mod.seen[-1] == ["Echo: something forbidden"]
        assert blocked.status == "incomplete"
        assert blocked.incomplete_details is not None
        assert blocked.incomplete_details.reason == "content_filter"
        assert blocked.output_text == ""
        fine = await client.responses.create(model="gpt-test", input="all good")
        assert fine.output_text == "Echo: all good"
    async with await sdk_for(make_gateway, config, [output_rule(url, "open", "redact")]) as client:
        redacted = await client.responses.create(model="gpt-test", input="something forbidden")
        assert redacted.status == "completed"
        assert redacted.output_text == "[REDACTED:moderation]"


async def test_an_answer_whose_check_failed_closed_is_withheld_and_charged(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    moderation: tuple[Moderation, str],
    stub: StubUpstream,
) -> None:
    mod, url = moderation
    mod.delay_s = 5
    config["guardrails"] = [output_rule(url, "closed", "block")]
    gw = await make_gateway(config)
    answer = await gw.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "anything"},
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    assert answer.status == 503
    assert (await answer.json())["error"]["code"] == "guardrail_unavailable"
    assert len(stub.requests) == 1
    deps = gw.app[DEPS]
    await deps.settler.flush()
    record = list(deps.governor.memory.stream)[-1]
    assert record["status"] == "503"
    assert record["usage"] == "reported"
    assert int(record["output_tokens"]) > 0

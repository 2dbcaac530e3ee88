"""POST /responses/compact: passed to a Responses upstream's own compaction under the model's
routing, the key's permissions, limits and accounting; state expanded as on create; a Chat
Completions upstream is a clear 400; a bad body is a clear 400."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.config import DEFAULT_MOUNTS
from gateway.keys import DEPS
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A, KEY_B, UPSTREAM_KEY
from tests.support.stub import Behaviour, StubUpstream

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
USAGE = {
    "input_tokens": 1000,
    "input_tokens_details": {"cached_tokens": 200},
    "output_tokens": 50,
    "output_tokens_details": {"reasoning_tokens": 10},
    "total_tokens": 1050,
}
COMPACTED = {
    "id": "cmp_fixed",
    "object": "response.compaction",
    "created_at": 1764000000,
    "output": [
        {
            "id": "msg_1",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_text", "text": "hello"}],
        },
        {"id": "cmp_item_1", "type": "compaction", "encrypted_content": "gAAAAopaque"},
    ],
    "usage": USAGE,
}


async def compact(
    gateway: Client, body: Any, key: str = KEY_A, path: str = "/v1/responses/compact"
) -> Any:
    return await gateway.post(
        path,
        data=body if isinstance(body, bytes) else orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    error: dict[str, Any] = (await resp.json())["error"]
    return error


def records(gateway: Client) -> list[dict[str, str]]:
    return list(gateway.app[DEPS].governor.memory.stream)


def with_chat_model(config: dict[str, Any], url: str) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config["providers"].append(
        {"name": "chatty", "api": "chat_completions", "base_url": f"{url}/v1", "timeout_s": 5}
    )
    config["models"].append(
        {"name": "chat-model", "targets": [{"provider": "chatty", "model": "c"}]}
    )
    return config


async def test_compact_reaches_the_upstreams_compaction(
    gateway: Client, stub: StubUpstream
) -> None:
    resp = await compact(
        gateway, {"model": "gpt-test", "input": "hello", "instructions": "Be kind"}
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["object"] == "response.compaction"
    assert data["output"][-1]["type"] == "compaction"
    assert data["output"][-1]["encrypted_content"]
    assert data["usage"]["input_tokens"] > 0
    assert stub.last.path == "/v1/responses/compact"
    assert stub.last.json == {"model": "gpt-test", "input": "hello", "instructions": "Be kind"}
    sent = {k.lower(): v for k, v in stub.last.headers.items()}
    assert sent["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert resp.headers["x-gateway-provider"] == "up"
    assert resp.headers["x-gateway-model"] == "gpt-test"


@pytest.mark.parametrize("mount", DEFAULT_MOUNTS)
async def test_compact_answers_on_every_mount(
    gateway: Client, stub: StubUpstream, mount: str
) -> None:
    resp = await compact(
        gateway, {"model": "gpt-test", "input": "hi"}, path=f"{mount}/responses/compact"
    )
    assert resp.status == 200, await resp.text()
    assert stub.last.path == "/v1/responses/compact"


async def test_compact_routes_an_alias_to_its_upstream_model(
    gateway: Client, stub: StubUpstream
) -> None:
    resp = await compact(gateway, {"model": "cheap", "input": "hi"})
    assert resp.status == 200, await resp.text()
    assert stub.last.json["model"] == "gpt-cheap-upstream"


async def test_compact_is_priced_settled_once_and_kept_nowhere(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(body=orjson.dumps(COMPACTED))
    resp = await compact(gateway, {"model": "gpt-test", "input": "hello"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["id"] == "cmp_fixed"
    # gpt-test: input 2.0, cached_input 0.5, output 8.0 USD per 1M tokens
    assert resp.headers["x-gateway-cost-usd"] == f"{(800 * 2 + 200 * 0.5 + 50 * 8) / 1e6:.8f}"
    await gateway.app[DEPS].settler.flush()
    (record,) = records(gateway)
    assert (record["input_tokens"], record["cached_tokens"], record["output_tokens"]) == (
        "1000",
        "200",
        "50",
    )
    assert record["status"] == "200"
    assert record["usage"] == "reported"
    assert record["provider"] == "up"
    kept = await gateway.get("/v1/responses/cmp_fixed", headers=AUTH)
    assert kept.status == 404


async def test_compact_obeys_the_keys_models(gateway: Client, stub: StubUpstream) -> None:
    error = await error_of(await compact(gateway, {"model": "gpt-test", "input": "x"}, KEY_B), 403)
    assert error["code"] == "model_not_allowed"
    assert stub.requests == []


async def test_compact_obeys_the_keys_rate_limit(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["auth"]["keys"][0]["rpm"] = 1
    gateway = await make_gateway(config)
    assert (await compact(gateway, {"model": "gpt-test", "input": "x"})).status == 200
    error = await error_of(await compact(gateway, {"model": "gpt-test", "input": "x"}), 429)
    assert error["type"] == "requests"
    assert len(stub.requests) == 1


async def test_previous_response_id_is_expanded_from_the_store(
    store_gateway: Client, stub: StubUpstream
) -> None:
    gateway = store_gateway
    first = await gateway.post(
        "/v1/responses", json={"model": "gpt-test", "input": "first question"}, headers=AUTH
    )
    kept = await first.json()
    resp = await compact(
        gateway, {"model": "gpt-test", "previous_response_id": kept["id"], "input": "and now?"}
    )
    assert resp.status == 200, await resp.text()
    sent = stub.last.json
    assert stub.last.path == "/v1/responses/compact"
    assert "previous_response_id" not in sent
    assert "store" not in sent
    texts = [part.get("text") for item in sent["input"] for part in item.get("content", [])]
    assert texts == ["first question", kept["output"][0]["content"][0]["text"], "and now?"]
    # The compaction is not a turn of the chain: the stored response is as it was.
    again = await gateway.get(f"/v1/responses/{kept['id']}", headers=AUTH)
    assert (await again.json())["output"] == kept["output"]


async def test_another_keys_previous_response_is_not_found(
    gateway: Client, stub: StubUpstream
) -> None:
    theirs = await gateway.post(
        "/v1/responses",
        json={"model": "cheap", "input": "secret"},
        headers={"Authorization": f"Bearer {KEY_B}"},
    )
    rid = (await theirs.json())["id"]
    error = await error_of(
        await compact(gateway, {"model": "gpt-test", "previous_response_id": rid}), 400
    )
    assert error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id"
    assert stub.last.path == "/v1/responses"  # only their create went upstream


async def test_chat_completions_upstream_is_a_clear_400(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    gateway = await make_gateway(with_chat_model(config, stub.url))
    resp = await compact(gateway, {"model": "chat-model", "input": "hi"})
    error = await error_of(resp, 400)
    assert error["code"] == "unsupported_endpoint"
    assert error["type"] == "invalid_request_error"
    assert "/v1/responses/compact" in error["message"]
    assert "'chatty'" in error["message"]
    assert stub.requests == []
    await gateway.app[DEPS].settler.flush()
    assert records(gateway) == []  # refused before any limit was taken


async def test_fallback_skips_a_model_that_cannot_compact(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    """A failing model falls back past a chat-only fallback to one that can compact."""
    config = with_chat_model(config, stub.url)
    config["models"][0]["fallbacks"] = ["chat-model", "cheap"]
    gateway = await make_gateway(config)
    stub.behaviour = Behaviour(fail_keys={UPSTREAM_KEY: 500})
    resp = await compact(gateway, {"model": "gpt-test", "input": "x"})
    # Both compacting attempts reached the upstream's compaction (and failed there).
    assert resp.status == 502, await resp.text()
    assert [r.json["model"] for r in stub.requests] == ["gpt-test", "gpt-cheap-upstream"]
    assert {r.path for r in stub.requests} == {"/v1/responses/compact"}


async def test_upstream_failure_is_a_502_settled_once(gateway: Client, stub: StubUpstream) -> None:
    stub.behaviour = Behaviour(fail_keys={UPSTREAM_KEY: 500})
    error = await error_of(await compact(gateway, {"model": "gpt-test", "input": "x"}), 502)
    assert error["type"] == "server_error"
    await gateway.app[DEPS].settler.flush()
    (record,) = records(gateway)
    assert record["status"] == "502"


async def test_upstream_refusal_passes_through(gateway: Client, stub: StubUpstream) -> None:
    refusal = {
        "error": {
            "message": "Compaction is not available for this model.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "unsupported_model",
        }
    }
    stub.behaviour = Behaviour(status=400, body=orjson.dumps(refusal))
    error = await error_of(await compact(gateway, {"model": "gpt-test", "input": "x"}), 400)
    assert error["code"] == "unsupported_model"
    assert error["param"] == "model"


async def test_mock_provider_answers_a_synthetic_compaction(gateway: Client) -> None:
    resp = await compact(
        gateway,
        {
            "model": "mock-model",
            "input": [
                {"role": "user", "content": "plan a trip"},
                {"role": "assistant", "content": "Where to?"},
                {"role": "user", "content": "Lisbon"},
            ],
        },
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["object"] == "response.compaction"
    kinds = [(item["type"], item.get("role")) for item in data["output"]]
    assert kinds == [("message", "user"), ("message", "user"), ("compaction", None)]
    assert data["usage"]["total_tokens"] == (
        data["usage"]["input_tokens"] + data["usage"]["output_tokens"]
    )


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "x"}, "model", "missing_required_parameter"),
        ({"model": None, "input": "x"}, "model", "missing_required_parameter"),
        ({"model": 7, "input": "x"}, "model", None),
        ({"model": "gpt-test", "input": 5}, "input", None),
        ({"model": "gpt-test", "input": [{"role": "user", "content": 5}]}, None, None),
        ({"model": "gpt-test", "service_tier": "bogus"}, "service_tier", None),
        ({"model": "gpt-test", "instructions": ["x"]}, "instructions", None),
        ({"model": "gpt-test", "prompt_cache_options": {"mode": "sometimes"}}, None, None),
        ({"model": "gpt-test", "image": {"context_compression": "maybe"}}, None, None),
        ({"model": "gpt-test", "safety_identifier": "s" * 65}, "safety_identifier", None),
    ],
)
async def test_bad_body_is_a_clear_400(
    gateway: Client, stub: StubUpstream, body: dict[str, Any], param: str | None, code: str | None
) -> None:
    error = await error_of(await compact(gateway, body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    else:
        assert error["param"]  # names the field
    if code is not None:
        assert error["code"] == code
    assert stub.requests == []


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
async def test_not_a_json_object_is_a_400(gateway: Client, stub: StubUpstream, raw: bytes) -> None:
    error = await error_of(await compact(gateway, raw), 400)
    assert error["type"] == "invalid_request_error"
    assert stub.requests == []


async def test_nullable_fields_are_accepted(gateway: Client, stub: StubUpstream) -> None:
    body = {
        "model": "gpt-test",
        "input": None,
        "instructions": None,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "prompt_cache_options": None,
        "prompt_cache_retention": None,
        "safety_identifier": None,
        "service_tier": None,
        "image": None,
    }
    resp = await compact(gateway, body)
    assert resp.status == 200, await resp.text()
    assert stub.last.json == body


async def test_unknown_fields_are_refused_where_policy_says(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["providers"][0]["policy"] = {"unknown_fields": "refuse"}
    gateway = await make_gateway(config)
    error = await error_of(
        await compact(gateway, {"model": "gpt-test", "input": "x", "store": True}), 400
    )
    assert (error["code"], error["param"]) == ("unknown_parameter", "store")
    ok = await compact(gateway, {"model": "gpt-test", "input": "x", "prompt_cache_key": "k"})
    assert ok.status == 200, await ok.text()


async def test_zdr_key_cannot_compact_a_stored_chain(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["auth"]["keys"][0]["zdr"] = True
    gateway = await make_gateway(config)
    error = await error_of(
        await compact(gateway, {"model": "gpt-test", "previous_response_id": "resp_x"}), 400
    )
    assert error["param"] == "previous_response_id"
    assert (await compact(gateway, {"model": "gpt-test", "input": "x"})).status == 200


@pytest.mark.parametrize("status", [404, 405])
async def test_upstream_without_compaction_is_a_clear_400(
    gateway: Client, stub: StubUpstream, status: int
) -> None:
    """A Responses upstream that lacks the endpoint (vLLM, older proxies) answers 404/405."""
    stub.behaviour = Behaviour(status=status, body=b'{"detail":"Not Found"}')
    error = await error_of(await compact(gateway, {"model": "gpt-test", "input": "x"}), 400)
    assert error["code"] == "unsupported_endpoint"
    assert "'up'" in error["message"]
    assert "/responses/compact" in error["message"]


async def test_upstream_unknown_model_404_passes_through(
    gateway: Client, stub: StubUpstream
) -> None:
    missing = {
        "error": {
            "message": "The model 'gpt-test' does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    stub.behaviour = Behaviour(status=404, body=orjson.dumps(missing))
    error = await error_of(await compact(gateway, {"model": "gpt-test", "input": "x"}), 404)
    assert error["code"] == "model_not_found"

"""POST /responses/compact: a conversation's context window, compacted by the upstream.

It runs the create pipeline's stages and attempt engine (the key's models, limits and
accounting, the guardrails' input scan, the model's routing, affinity and fallbacks) and
sends the body to the upstream's own `/responses/compact`. The gateway keeps nothing: a
compaction is not a stored response.
`previous_response_id` is expanded from the gateway's store, as on create, because the
upstream never kept the gateway's responses. Chat Completions upstreams have no compaction:
a model served only by them is a 400 `unsupported_endpoint`; the built-in mock provider
answers with a synthetic compaction.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import orjson
from aiohttp import web

from gateway import origins, pipeline
from gateway.config import Account
from gateway.errors import GatewayError, InvalidRequestError
from gateway.errors_upstream import upstream_envelope
from gateway.guardrails.inbound import guard_input
from gateway.keys import CALL, DEPS, REQUEST_ID, TRACE
from gateway.mockcompact import build_compaction
from gateway.models import Call
from gateway.pipeline import Stage
from gateway.pipeline.auth import authenticate
from gateway.pipeline.forward import ClientAttempts, client_left
from gateway.pipeline.govern import provider_policies
from gateway.pipeline.limit import admit, settle
from gateway.pipeline.normalize import apply_policy
from gateway.pipeline.parse import parse_body
from gateway.pipeline.route import choose_model
from gateway.providers.base import Provider, Reply, UpstreamRequest
from gateway.providers.mock import MockProvider
from gateway.providers.responses import Exchange, ResponsesProvider
from gateway.routing import Target
from gateway.schemas import SchemaCheck, default_schema_dir
from gateway.state import _previous_context, as_items, for_upstream

UPSTREAM_PATH: Final = "/responses/compact"
# The body the SDK's client.responses.compact() sends (openai-python 3.63).
COMPACT_FIELDS: Final = frozenset(
    {
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "safety_identifier",
        "service_tier",
        "image",
    }
)
_NULLABLE: Final = {"type": "null"}


@functools.cache
def compact_check() -> SchemaCheck:
    """The compact body's schema: the create schema's definitions of the same fields (so an
    input item means the same on both), each of them nullable as the SDK types them."""
    text = (default_schema_dir() / "create_response.schema.json").read_text(encoding="utf-8")
    create: dict[str, Any] = json.loads(text)
    fields = create["properties"]
    properties: dict[str, Any] = {
        name: {"anyOf": [fields[name], _NULLABLE]}
        for name in COMPACT_FIELDS
        if name in fields and name != "model"
    }
    properties["model"] = {"type": "string", "minLength": 1}
    image = {
        "type": "object",
        "properties": {"context_compression": {"enum": ["auto", "enabled", "disabled"]}},
    }
    properties["image"] = {"anyOf": [image, _NULLABLE]}
    schema = {
        "$schema": create["$schema"],
        "title": "CompactResponseBody",
        "type": "object",
        "properties": properties,
        "$defs": create["$defs"],
    }
    return SchemaCheck(schema)


async def validate_compact(call: Call) -> None:
    body = call.body
    if body.get("model") is None:
        raise InvalidRequestError(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    compact_check()(body)
    call.model = body["model"]
    call.stream = False


async def compact_targets(call: Call) -> None:
    """Only targets whose upstream can compact; none is the caller's error, named."""
    able = tuple(t for t in map(compacting, call.targets) if t is not None)
    if not able:
        names = ", ".join(sorted({f"'{t.provider.name}'" for t in call.targets}))
        method_path = f"POST {call.request.path}" if call.request is not None else UPSTREAM_PATH
        raise InvalidRequestError(
            f"{method_path} is not supported for the model '{call.model}': its provider "
            f"{names} speaks the Chat Completions API, which has no compaction. Compact with a "
            "model served by a Responses API provider.",
            param="model",
            code="unsupported_endpoint",
        )
    call.targets = able


async def govern_compact(call: Call) -> None:
    """The key's and the providers' policies that mean something here: unknown fields and
    file ids (nothing is kept, so `store` and `truncation` do not apply)."""
    for policy in provider_policies(call, tools=False):
        if policy.unknown_fields == "refuse":
            apply_policy(
                call.body,
                store="pass",
                truncation="pass",
                unknown_fields="refuse",
                known_fields=COMPACT_FIELDS,
            )


async def compact_context(call: Call) -> None:
    """`previous_response_id` to the stored context, prepended to `input` (the caller's own
    responses only: another's id is not found, exactly as on create)."""
    body, key = call.body, call.principal
    assert key is not None
    previous = body.get("previous_response_id")
    if previous is None:
        await origins.bind(call)  # a compacted window sent back: where it was made
        return
    if key.zdr:
        raise InvalidRequestError(
            "'previous_response_id' cannot be used: this key has zero data retention, so the "
            "gateway keeps nothing.",
            param="previous_response_id",
        )
    context = await _previous_context(call, call.deps.store, previous)
    call.input_items = as_items(body.get("input"))
    body["input"] = [for_upstream(item) for item in (*context, *call.input_items)]
    assert call.binding is not None
    call.binding.full = body["input"]  # what a compaction moved to another account leaves out
    del body["previous_response_id"]
    call.changed = True


async def unchain(call: Call) -> None:
    """A compaction is not a turn of the chain it read: nothing is saved, no chain is grown
    (the guardrails named its stored context by `previous_response_id` until here)."""
    call.previous, call.chain = None, []


COMPACT: Final[tuple[Stage, ...]] = (
    authenticate,
    parse_body,
    validate_compact,
    choose_model,
    compact_targets,
    govern_compact,
    admit,
    compact_context,
    guard_input,
    unchain,
)


class CompactUpstream(ResponsesProvider):
    """A Responses provider's `/responses/compact`: its pool, accounts and health shared."""

    def __init__(self, provider: ResponsesProvider) -> None:  # no new pool: the provider's
        self.name = provider.name
        self.settings = provider.settings
        self.http = provider.http
        self.url = provider.settings.base_url + UPSTREAM_PATH

    def send(self, request: UpstreamRequest, account: Account) -> Exchange:
        return Exchange(self, request, account)

    async def close(self) -> None:
        return None  # the provider closes its own pool


class CompactMock:
    """The mock provider's compaction: a synthetic `response.compaction`."""

    def __init__(self, provider: MockProvider) -> None:
        self.name = provider.name
        self.settings = provider.settings

    @asynccontextmanager
    async def send(self, request: UpstreamRequest, account: Account) -> AsyncIterator[Reply]:
        yield Reply(200, body=orjson.dumps(build_compaction(request.body, request.model)))

    async def close(self) -> None:
        return None


def compacting(target: Target) -> Target | None:
    """The target aimed at its upstream's compaction, or None when it has none."""
    provider: Provider
    if isinstance(target.provider, ResponsesProvider):
        provider = CompactUpstream(target.provider)
    elif isinstance(target.provider, MockProvider):
        provider = CompactMock(target.provider)
    else:
        return None
    return Target(provider, target.model, target.weight)


class CompactAttempts(ClientAttempts):
    """Create's attempts, where a fallback model is tried on its compacting targets only, and
    an upstream without the endpoint is the caller's clear 400, not a bare 404."""

    async def reply(self, reply: Reply, target: Target, sent: float) -> web.StreamResponse:
        if reply.status in (404, 405) and not _about_the_model(reply.body):
            raise InvalidRequestError(
                f"The upstream provider '{target.provider.name}' has no {UPSTREAM_PATH} "
                f"(it answered {reply.status}): this model cannot be compacted through it.",
                param="model",
                code="unsupported_endpoint",
            )
        return await super().reply(reply, target, sent)

    def _next_fallback(self) -> None:
        while True:
            before = len(self.models)
            super()._next_fallback()
            if len(self.models) == before:
                return
            route, targets = self.models[-1]
            able = tuple(t for t in map(compacting, targets) if t is not None)
            if able:
                self.models[-1] = (route, able)
                return
            self.models.pop()


def _about_the_model(body: bytes) -> bool:
    """Whether an upstream's 404 names the model (unknown there), not the endpoint."""
    found = upstream_envelope(body)
    return found is not None and (found["param"] == "model" or found["code"] == "model_not_found")


def add_compact_route(router: web.UrlDispatcher, prefix: str) -> None:
    compact_check()  # compiled at start-up, not on the first request
    router.add_post(f"{prefix}{UPSTREAM_PATH}", compact_response)


async def compact_response(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    call = Call(request, deps, request[REQUEST_ID], request.headers, request[TRACE])
    request[CALL] = call
    try:
        await pipeline.run(call, COMPACT)
        attempts = CompactAttempts(call)
        try:
            response = await attempts.run()
        finally:
            call.upstream_s = attempts.waited_s
        call.status = call.status or response.status
        return response
    except GatewayError as exc:
        call.status = exc.status
        raise
    except asyncio.CancelledError:
        client_left(call)
        raise
    finally:
        settle(call)

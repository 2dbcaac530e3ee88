"""The Responses API's state, owned by the gateway: context in, stored responses and items out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from random import getrandbits
from typing import Any, Final, TypeVar

import orjson

from gateway import origins
from gateway.affinity import Binding, conversation_origins, pair_of, served
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)
from gateway.models import Call
from gateway.store import Json, Store

log = logging.getLogger("gateway.state")

MAX_CONVERSATION_ITEMS: Final = 5000
MAX_ITEM_BYTES: Final = 4 * 1024 * 1024
_ID_PREFIX: Final = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "item_reference": "ref",
}
_GATEWAY_MADE_IDS: Final = frozenset({"user", "system", "developer"})
# A save that fails is tried again for SAVE_WITHIN_S at most, and not past the request's
# deadline (though for SAVE_MAX_WAIT_S at least), waiting SAVE_FIRST_WAIT_S between tries
# at first, doubling up to SAVE_MAX_WAIT_S.
SAVE_WITHIN_S: Final = 2.0
SAVE_FIRST_WAIT_S: Final = 0.05
SAVE_MAX_WAIT_S: Final = 0.5
T = TypeVar("T")


def new_id(prefix: str) -> str:
    # 192 random bits as 48 hex digits, without a getrandom call per item (the random module
    # reseeds itself in each forked worker); an id names an item, it grants nothing
    return f"{prefix}_{getrandbits(192):048x}"


def as_items(value: Any, param: str = "input") -> list[Json]:
    """Input as stored items: a string becomes a user message; every item gets type and id."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequestError(
            f"Invalid '{param}': expected a string or an array of items.",
            param=param,
            code="invalid_type",
        )
    return [as_item(item, f"{param}[{i}]") for i, item in enumerate(value)]


def as_item(item: Any, param: str) -> Json:
    if not isinstance(item, dict):
        raise InvalidRequestError(
            f"Invalid '{param}': expected an object.", param=param, code="invalid_type"
        )
    if len(orjson.dumps(item)) > MAX_ITEM_BYTES:
        raise InvalidRequestError(
            f"Invalid '{param}': an item may hold at most {MAX_ITEM_BYTES} bytes.",
            param=param,
            code="string_above_max_length",
        )
    out = dict(item)
    kind = out.setdefault("type", "message" if "role" in out else "")
    if kind == "message":
        content = out.get("content")
        if isinstance(content, str):
            part = "output_text" if out.get("role") == "assistant" else "input_text"
            out["content"] = [{"type": part, "text": content}]
            if part == "output_text":
                out["content"][0]["annotations"] = []
        out.setdefault("status", "completed")
    if not out.get("id"):
        out["id"] = new_id(_ID_PREFIX.get(kind, "item"))
    return out


def for_upstream(item: Json) -> Json:
    """An item as replayed upstream: ids the gateway made up mean nothing there."""
    kind = item.get("type")
    if (kind == "message" and item.get("role") in _GATEWAY_MADE_IDS) or (
        kind == "function_call_output"
    ):
        return {k: v for k, v in item.items() if k not in ("id", "status")}
    return item


async def load_context(call: Call) -> None:
    """Stage: prepend the stored context, and ask the upstream for a stateless answer."""
    body, key = call.body, call.principal
    assert key is not None
    previous, conversation = body.get("previous_response_id"), body.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if key.zdr:
        _refuse_state_under_zdr(body, previous, conversation)
        if body.get("store") is not False:
            # The API's default is to keep: a ZDR key's request says otherwise explicitly.
            body["store"] = False
            call.changed = True
    call.store = body.get("store", not key.zdr) is not False
    if previous is None and conversation is None:
        await origins.bind(call)  # items made elsewhere, sent back without a chain
        if not call.store:
            return
    store = call.deps.store
    if call.store:
        # A store known to be failing answers 503 before the upstream is paid for an answer
        # that could not be kept (a chained turn reads the store, and fails the same way).
        # Limits that just fell back to this process suspect the same Redis.
        fell_back = call.ticket is not None and call.ticket.backend == "memory"
        await store.check_writable(suspect=fell_back)
    context: list[Json] = []
    if isinstance(previous, str):
        context = await _previous_context(call, store, previous)
    elif isinstance(conversation, str):
        items, record = await asyncio.gather(
            store.all_items(key.owner, conversation), store.get_served(key.owner, conversation)
        )
        if items is None:
            raise NotFoundError(
                f"Conversation with id '{conversation}' not found.",
                param="conversation",
                code="conversation_not_found",
            )
        call.conversation = conversation
        context = items
        call.binding = Binding()
        conversation_origins(call.binding, items, record)
    call.input_items = as_items(body.get("input"))
    if call.conversation is not None and (
        len(context) + len(call.input_items) >= MAX_CONVERSATION_ITEMS
    ):
        raise InvalidRequestError(
            f"Conversation '{conversation}' is full: it may hold at most "
            f"{MAX_CONVERSATION_ITEMS} items.",
            param="conversation",
            code="conversation_full",
        )
    if context:
        body["input"] = [for_upstream(item) for item in (*context, *call.input_items)]
        if call.binding is not None:
            call.binding.full = body["input"]
    body.pop("previous_response_id", None)
    body.pop("conversation", None)
    # The gateway owns the state, so the upstream keeps nothing; replaying reasoning to a
    # stateless upstream needs its encrypted content.
    body["store"] = False
    if _has_reasoning(body, context):
        include = body.setdefault("include", [])
        if isinstance(include, list) and "reasoning.encrypted_content" not in include:
            include.append("reasoning.encrypted_content")
    call.changed = True


async def _previous_context(call: Call, store: Store, previous: str) -> list[Json]:
    assert call.principal is not None
    owner = call.principal.owner
    (record,) = await store.get_responses(owner, [previous])
    if record is None:
        raise InvalidRequestError(
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    chain: list[str] = record.get("chain", [])
    ancestors = await store.get_responses(owner, chain) if chain else []
    call.previous = previous
    call.chain = [*chain, previous]
    binding = call.binding = Binding()
    binding.prefer = pair_of(record.get("served"))
    binding.prefer_model = (record.get("served") or {}).get("model")
    context: list[Json] = []
    for found in (*ancestors, record):
        if found is not None:
            made = found.get("input", []) + found.get("response", {}).get("output", [])
            binding.add(len(made), pair_of(found.get("served")))
            context += made
    return context


def _refuse_state_under_zdr(body: Json, previous: Any, conversation: Any) -> None:
    reason = "this key has zero data retention, so the gateway keeps nothing"
    if body.get("store") is True:
        raise InvalidRequestError(f"'store' cannot be true: {reason}.", param="store")
    if previous is not None:
        raise InvalidRequestError(
            f"'previous_response_id' cannot be used: {reason}.", param="previous_response_id"
        )
    if conversation is not None:
        raise InvalidRequestError(f"'conversation' cannot be used: {reason}.", param="conversation")


def _has_reasoning(body: Json, context: list[Json]) -> bool:
    return body.get("reasoning") is not None or any(i.get("type") == "reasoning" for i in context)


def client_fields(call: Call) -> Json:
    """The fields of a Response the gateway answers for, not the stateless upstream."""
    return {
        "store": call.store,
        "previous_response_id": call.previous,
        "conversation": {"id": call.conversation} if call.conversation else None,
    }


def client_view(call: Call, response: Json) -> Json:
    """The response as the client asked for it, not as the stateless upstream saw it."""
    response.update(client_fields(call))
    return response


async def save(call: Call, response: Json) -> None:
    """Keep the answered response and grow its conversation, before the client sees the end.

    A store that fails is tried again, briefly; if it still fails, ServiceUnavailableError
    (503 store_unavailable): the client is never told that a response was kept when it was
    not. (A write that timed out may still land: then it was kept after all, unused.)
    """
    assert call.principal is not None
    now = time.monotonic()
    deadline = call.started + call.deps.settings.routing.deadline_s
    until = now + min(SAVE_WITHIN_S, max(deadline - now, SAVE_MAX_WAIT_S))
    rid = response.get("id")
    kept = False
    if call.store and isinstance(rid, str):
        record = {
            "owner": call.principal.owner,
            "response": response,
            "input": call.input_items,
            "chain": call.chain,
        }
        if call.target is not None and call.account is not None:
            record["served"] = served(
                call.target.provider.name, call.account.name, call.target.model
            )
        ttl = call.deps.settings.store.response_ttl_s
        kept = await _retried(
            call, rid, until, lambda: call.deps.store.put_response(rid, record, ttl)
        )
        if not kept:
            # The upstream reused an id the gateway already keeps: that record stays untouched,
            # and the answer says this one was not kept.
            response["store"] = False
            log.warning(
                "response %s not kept: the upstream answered with an id already kept",
                rid,
                extra={"request_id": call.request_id},
            )
    # Each step is retried on its own: a put that failed never grows the conversation twice.
    try:
        await _retried(call, rid, until, lambda: grow_conversation(call, response))
    except ServiceUnavailableError:
        # The client is told this turn was not kept: nor may its response be found.
        if kept and isinstance(rid, str):
            with contextlib.suppress(GatewayError):
                await call.deps.store.delete_response(call.principal.owner, rid)
        raise


async def _retried(call: Call, rid: object, until: float, step: Callable[[], Awaitable[T]]) -> T:
    wait = SAVE_FIRST_WAIT_S
    while True:
        try:
            return await step()
        except ServiceUnavailableError as exc:
            if time.monotonic() + wait > until:
                log.warning(
                    "could not keep response %s: %s",
                    rid,
                    exc.message,
                    extra={"request_id": call.request_id},
                )
                raise
        await asyncio.sleep(wait)
        wait = min(wait * 2, SAVE_MAX_WAIT_S)


async def grow_conversation(call: Call, response: Json) -> None:
    """Append the turn's input and output items to its conversation, if it has one."""
    if call.conversation is None:
        return
    assert call.principal is not None
    output = [as_item(item, "output") for item in response.get("output") or []]
    added = await call.deps.store.add_items(
        call.principal.owner,
        call.conversation,
        [*call.input_items, *output],
        call.deps.settings.store.response_ttl_s,
        MAX_CONVERSATION_ITEMS,
    )
    if not added:
        log.warning(
            "conversation %s is full or gone; items not added",
            call.conversation,
            extra={"request_id": call.request_id},
        )
        return
    if call.target is not None and call.account is not None:
        update = (call.binding or Binding()).conversation_update(
            (call.target.provider.name, call.account.name), call.target.model
        )
        if update is not None:
            # Only routing rides on it: a turn whose items were kept is not failed for it.
            try:
                await call.deps.store.set_served(call.principal.owner, call.conversation, update)
            except GatewayError as exc:
                log.warning(
                    "conversation %s: where its turn was served not kept: %s",
                    call.conversation,
                    exc.message,
                    extra={"request_id": call.request_id},
                )

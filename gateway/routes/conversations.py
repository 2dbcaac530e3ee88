"""/conversations: create, retrieve, update, delete, and their items, kept under their owner."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.codec import json_response, parse_object, read_body
from gateway.config import KeySettings
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.keys import DEPS
from gateway.models import Deps
from gateway.pipeline.rules import check_metadata
from gateway.routes.paging import list_object, page_params
from gateway.state import MAX_CONVERSATION_ITEMS, as_items, new_id
from gateway.store import Json, Page

MAX_ITEMS_PER_CALL = 20


async def _caller(request: web.Request) -> tuple[Deps, KeySettings]:
    deps = request.app[DEPS]
    key = await deps.keys.authenticate(request.headers.get("Authorization"))
    if key.zdr:
        raise InvalidRequestError(
            "Conversations cannot be used: this key has zero data retention, so the gateway "
            "keeps nothing.",
            param=None,
        )
    return deps, key


async def _body(request: web.Request) -> dict[str, Any]:
    return parse_object(await read_body(request), request.headers.get("Content-Type", ""))


def _items_param(body: dict[str, Any], field: str) -> list[Json]:
    raw = body.get(field)
    if raw is None:
        return []
    if isinstance(raw, list) and len(raw) > MAX_ITEMS_PER_CALL:
        raise InvalidRequestError(
            f"Invalid '{field}': array too long. Expected an array with maximum length "
            f"{MAX_ITEMS_PER_CALL}, but got an array with length {len(raw)} instead.",
            param=field,
            code="array_above_max_length",
        )
    return as_items(raw, field)


def conversation_not_found(conv_id: str) -> NotFoundError:
    return NotFoundError(
        f"Conversation with id '{conv_id}' not found.", param="conversation_id", code="not_found"
    )


async def _conversation(deps: Deps, key: KeySettings, conv_id: str) -> Json:
    record = await deps.store.get_conversation(key.owner, conv_id)
    if record is None:
        raise conversation_not_found(conv_id)
    conversation: Json = record["conversation"]
    return conversation


async def create_conversation(request: web.Request) -> web.Response:
    deps, key = await _caller(request)
    body = await _body(request)
    deps.validators.conversation_create(body)
    metadata = body.get("metadata") or {}
    check_metadata(metadata)
    items = _items_param(body, "items")
    conv_id = new_id("conv")
    conversation: Json = {
        "id": conv_id,
        "object": "conversation",
        "created_at": int(time.time()),
        "metadata": metadata,
    }
    ttl = deps.settings.store.response_ttl_s
    await deps.store.put_conversation(
        conv_id, {"owner": key.owner, "conversation": conversation}, ttl
    )
    if items:
        await deps.store.add_items(key.owner, conv_id, items, ttl, MAX_CONVERSATION_ITEMS)
    return json_response(conversation)


async def retrieve_conversation(request: web.Request) -> web.Response:
    deps, key = await _caller(request)
    return json_response(await _conversation(deps, key, request.match_info["conversation_id"]))


async def update_conversation(request: web.Request) -> web.Response:
    deps, key = await _caller(request)
    conv_id = request.match_info["conversation_id"]
    body = await _body(request)
    deps.validators.conversation_update(body)
    if "metadata" not in body:
        raise InvalidRequestError(
            "Missing required parameter: 'metadata'.",
            param="metadata",
            code="missing_required_parameter",
        )
    metadata = body["metadata"] or {}
    check_metadata(metadata)
    conversation = await _conversation(deps, key, conv_id)
    conversation["metadata"] = metadata
    await deps.store.put_conversation(
        conv_id,
        {"owner": key.owner, "conversation": conversation},
        deps.settings.store.response_ttl_s,
    )
    return json_response(conversation)


async def delete_conversation(request: web.Request) -> web.Response:
    deps, key = await _caller(request)
    conv_id = request.match_info["conversation_id"]
    if not await deps.store.delete_conversation(key.owner, conv_id):
        raise conversation_not_found(conv_id)
    return json_response({"id": conv_id, "object": "conversation.deleted", "deleted": True})


async def create_items(request: web.Request) -> web.Response:
    deps, key = await _caller(request)
    conv_id = request.match_info["conversation_id"]
    body = await _body(request)
    deps.validators.conversation_items(body)
    if body.get("items") is None:
        raise InvalidRequestError(
            "Missing required parameter: 'items'.", param="items", code="missing_required_parameter"
        )
    items = _items_param(body, "items")
    await _conversation(deps, key, conv_id)
    if not await deps.store.add_items(
        key.owner, conv_id, items, deps.settings.store.response_ttl_s, MAX_CONVERSATION_ITEMS
    ):
        raise InvalidRequestError(
            f"Conversation '{conv_id}' may hold at most {MAX_CONVERSATION_ITEMS} items.",
            param="items",
            code="conversation_full",
        )
    return json_response(list_object(Page(items, False)))


async def list_items(request: web.Request) -> web.Response:
    deps, key = await _caller(request)
    conv_id = request.match_info["conversation_id"]
    after, limit, desc = page_params(request)
    page = await deps.store.list_items(key.owner, conv_id, after=after, limit=limit, desc=desc)
    if page is None:
        raise conversation_not_found(conv_id)
    return json_response(list_object(page))


async def retrieve_item(request: web.Request) -> web.Response:
    deps, key = await _caller(request)
    conv_id, item_id = request.match_info["conversation_id"], request.match_info["item_id"]
    item = await deps.store.get_item(key.owner, conv_id, item_id)
    if item is None:
        await _conversation(deps, key, conv_id)
        raise NotFoundError(
            f"Item with id '{item_id}' not found.", param="item_id", code="not_found"
        )
    return json_response(item)


async def delete_item(request: web.Request) -> web.Response:
    deps, key = await _caller(request)
    conv_id, item_id = request.match_info["conversation_id"], request.match_info["item_id"]
    if not await deps.store.delete_item(key.owner, conv_id, item_id):
        await _conversation(deps, key, conv_id)
        raise NotFoundError(
            f"Item with id '{item_id}' not found.", param="item_id", code="not_found"
        )
    return json_response(await _conversation(deps, key, conv_id))

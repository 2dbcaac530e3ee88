"""The admin API for keys: POST/GET /admin/keys, GET/PATCH/DELETE /admin/keys/{key_id}."""

from __future__ import annotations

import dataclasses
import secrets
import time
from functools import cache
from typing import Any, Final

from aiohttp import web

from gateway.auth import KeyRing
from gateway.codec import json_response, parse_object, read_body
from gateway.config import SECRET_FIELDS, KeySettings, digest, key_fields_schema
from gateway.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    NotImplementedByGatewayError,
)
from gateway.keys import DEPS
from gateway.keystore import KeyStore, Record, new_owner, stored_key
from gateway.schemas import SchemaCheck

SECRET_PREFIX: Final = "sk-gw-"


def add_admin_routes(router: web.UrlDispatcher) -> None:
    _fields()  # read the schema at start-up, not on the first request
    router.add_post("/admin/keys", create_key)
    router.add_get("/admin/keys", list_keys, allow_head=False)
    router.add_get("/admin/keys/{key_id}", retrieve_key, allow_head=False)
    router.add_patch("/admin/keys/{key_id}", update_key)
    router.add_delete("/admin/keys/{key_id}", delete_key)


def require_admin(request: web.Request) -> KeyRing:
    """The app's KeyRing once the request is known to carry the admin key; a 401 otherwise."""
    ring = request.app[DEPS].keys
    ring.require_admin(request.headers.get("Authorization"))
    return ring


@cache
def _fields() -> tuple[SchemaCheck, frozenset[str]]:
    schema = key_fields_schema()
    return SchemaCheck(schema), frozenset(schema["properties"])


def render(key: KeySettings, source: str, created_at: int | None = None) -> dict[str, Any]:
    """A key as the admin API shows it: every setting in force, never the secret or its digest."""
    shown = dataclasses.asdict(key)
    del shown["sha256"], shown["owner"]
    return {
        "object": "gateway.key",
        "id": key.id,
        "source": source,
        "created_at": created_at,
        **shown,
    }


def _render_record(record: Record) -> dict[str, Any]:
    return render(stored_key(record), "api", record.get("created_at"))


def _keystore(ring: KeyRing) -> KeyStore:
    if ring.store is None:
        raise NotImplementedByGatewayError("This gateway keeps no keys of its own.")
    return ring.store


def _not_found(key_id: str) -> NotFoundError:
    return NotFoundError(f"No key with id '{key_id}'.", param="key_id", code="key_not_found")


def _read_only(key_id: str) -> ConflictError:
    return ConflictError(
        f"Key '{key_id}' comes from the config file (auth.keys) and cannot be changed through "
        "the admin API: edit the file and restart the gateway.",
        param="key_id",
        code="key_read_only",
    )


def _taken(key_id: str) -> ConflictError:
    return ConflictError(f"A key with id '{key_id}' already exists.", param="id", code="key_exists")


async def _body(request: web.Request) -> dict[str, Any]:
    body = parse_object(await read_body(request), request.headers.get("Content-Type", ""))
    for name in SECRET_FIELDS:
        if name in body:
            raise InvalidRequestError(
                f"'{name}' cannot be set: the gateway makes the secret and shows it once, in "
                "the answer to POST /admin/keys.",
                param=name,
                code="unknown_parameter",
            )
    return body


async def create_key(request: web.Request) -> web.Response:
    ring = require_admin(request)
    store = _keystore(ring)
    fields = await _body(request)
    _fields()[0](fields)
    key_id = fields.setdefault("id", "key_" + secrets.token_hex(12))
    if key_id.startswith("jwt:"):
        raise InvalidRequestError(
            "Key ids starting with 'jwt:' name bearer-token callers.", param="id"
        )
    if key_id in ring.config_ids:
        raise _taken(key_id)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    record = {
        **fields,
        "owner": new_owner(),
        "sha256": digest(secret),
        "created_at": int(time.time()),
    }
    if not await store.create(record):
        raise _taken(key_id)
    ring.forget(record["sha256"])
    return json_response({**_render_record(record), "key": secret}, 201)


async def list_keys(request: web.Request) -> web.Response:
    ring = require_admin(request)
    data = [render(key, "config") for key in ring.config_keys]
    if ring.store is not None:
        data += [_render_record(r) for r in await ring.store.all()]
    return json_response({"object": "list", "data": data})


async def retrieve_key(request: web.Request) -> web.Response:
    ring = require_admin(request)
    key_id = request.match_info["key_id"]
    if key_id in ring.config_ids:
        return json_response(render(ring.config_ids[key_id], "config"))
    record = await _keystore(ring).get(key_id)
    if record is None:
        raise _not_found(key_id)
    return json_response(_render_record(record))


def _changes(body: dict[str, Any], key_id: str) -> tuple[dict[str, Any], set[str]]:
    """What a PATCH sets, and what it removes (fields sent as null go back to their default)."""
    check, known = _fields()
    if body.get("id", key_id) != key_id:
        raise InvalidRequestError("A key's id cannot be changed.", param="id")
    removed = {name for name, value in body.items() if value is None}
    for name in removed:
        if name not in known or name == "id":
            raise InvalidRequestError(f"'{name}' cannot be removed.", param=name)
    changes = {name: value for name, value in body.items() if value is not None}
    check(changes)
    changes.pop("id", None)
    return changes, removed


async def update_key(request: web.Request) -> web.Response:
    ring = require_admin(request)
    key_id = request.match_info["key_id"]
    if key_id in ring.config_ids:
        raise _read_only(key_id)
    changes, removed = _changes(await _body(request), key_id)

    def change(record: Record) -> Record:
        return {**{k: v for k, v in record.items() if k not in removed}, **changes}

    record = await _keystore(ring).update(key_id, change)
    if record is None:
        raise _not_found(key_id)
    ring.forget(record["sha256"])
    return json_response(_render_record(record))


async def delete_key(request: web.Request) -> web.Response:
    ring = require_admin(request)
    key_id = request.match_info["key_id"]
    if key_id in ring.config_ids:
        raise _read_only(key_id)
    record = await _keystore(ring).delete(key_id)
    if record is None:
        raise _not_found(key_id)
    ring.forget(record["sha256"])
    return json_response({"id": key_id, "deleted": True})

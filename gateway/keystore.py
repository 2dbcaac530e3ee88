"""Keys made through the admin API, kept in this process (MemoryKeyStore) or in Redis."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from typing import Any, Final, Protocol

import orjson

from gateway.config import KeySettings, key_from_fields
from gateway.errors import ConflictError
from gateway.store.redis import RedisConnection

# {"id", "owner", "sha256", "created_at", <the auth.keys[] fields it was given>}; never the
# secret. `owner` is minted with the key and never changes; records made before it existed
# own under their id.
Record = dict[str, Any]

# Optimistic updates: a PATCH racing another PATCH of the same key re-reads this often at most.
_UPDATE_ATTEMPTS: Final = 8


class KeyStore(Protocol):
    async def create(self, record: Record) -> bool:
        """False when the id (or, absurdly, the digest) is already taken."""

    async def find(self, sha256: str) -> Record | None:
        """The key whose secret has this digest: the hot path, one round trip."""

    async def get(self, key_id: str) -> Record | None: ...

    async def all(self) -> list[Record]: ...

    async def update(self, key_id: str, change: Callable[[Record], Record]) -> Record | None:
        """Replace a record by change(record), atomically; None when there is no such key."""

    async def delete(self, key_id: str) -> Record | None:
        """Remove the key and its digest; the record it had, or None."""


def stored_key(record: Record) -> KeySettings:
    key = key_from_fields(record, record["sha256"])
    owner = record.get("owner")
    return dataclasses.replace(key, owner=owner) if isinstance(owner, str) and owner else key


def new_owner() -> str:
    """An owner id for a key made through the admin API: random, so never one used before."""
    return "owner_" + secrets.token_hex(16)


def _ordered(records: list[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.get("created_at", 0), r["id"]))


class MemoryKeyStore:
    """Records kept as JSON bytes, as in Redis, so no caller can change one in place."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}
        self._ids: dict[str, str] = {}  # digest -> id

    async def create(self, record: Record) -> bool:
        if record["id"] in self._records or record["sha256"] in self._ids:
            return False
        self._records[record["id"]] = orjson.dumps(record)
        self._ids[record["sha256"]] = record["id"]
        return True

    async def find(self, sha256: str) -> Record | None:
        key_id = self._ids.get(sha256)
        return None if key_id is None else await self.get(key_id)

    async def get(self, key_id: str) -> Record | None:
        raw = self._records.get(key_id)
        return None if raw is None else _decoded(raw)

    async def all(self) -> list[Record]:
        return _ordered([_decoded(raw) for raw in self._records.values()])

    async def update(self, key_id: str, change: Callable[[Record], Record]) -> Record | None:
        current = await self.get(key_id)
        if current is None:
            return None
        record = change(current)
        self._records[key_id] = orjson.dumps(record)
        return record

    async def delete(self, key_id: str) -> Record | None:
        record = await self.get(key_id)
        if record is not None:
            del self._records[key_id]
            self._ids.pop(record["sha256"], None)
        return record


# Every script takes KEYS = [records hash (id -> JSON), digests hash (sha256 -> id)].
_CREATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

_FIND = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[1], id)
"""

# ARGV: id, the JSON read before the change, the new JSON.
_REPLACE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

_DELETE = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], cjson.decode(record)['sha256'])
return record
"""


class RedisKeyStore:
    """Two hashes sharing the hash tag `{keys}`: one Cluster slot, so each script is atomic.

    No TTL: a key is accounting, not cache. Thousands of keys fit one slot easily.
    """

    def __init__(self, redis_conn: RedisConnection) -> None:
        self._client = redis_conn.client
        self._guard = redis_conn.guard
        self._keys = [redis_conn.key("key", "keys"), redis_conn.key("key", "keys", ":digests")]
        self._create = self._client.register_script(_CREATE)
        self._find = self._client.register_script(_FIND)
        self._replace = self._client.register_script(_REPLACE)
        self._delete = self._client.register_script(_DELETE)

    async def create(self, record: Record) -> bool:
        args = [record["id"], record["sha256"], orjson.dumps(record)]
        async with self._guard("create_key", write=True):
            return int(await self._create(self._keys, args)) == 1

    async def find(self, sha256: str) -> Record | None:
        async with self._guard("find_key"):
            raw = await self._find(self._keys, [sha256])
        return None if raw is None else _decoded(raw)

    async def _raw(self, key_id: str) -> bytes | str | None:
        async with self._guard("get_key"):
            raw: bytes | str | None = await self._client.hget(self._keys[0], key_id)
        return raw

    async def get(self, key_id: str) -> Record | None:
        raw = await self._raw(key_id)
        return None if raw is None else _decoded(raw)

    async def all(self) -> list[Record]:
        async with self._guard("list_keys"):
            values = await self._client.hvals(self._keys[0])
        return _ordered([_decoded(raw) for raw in values])

    async def update(self, key_id: str, change: Callable[[Record], Record]) -> Record | None:
        for _ in range(_UPDATE_ATTEMPTS):
            raw = await self._raw(key_id)
            if raw is None:
                return None
            record = change(_decoded(raw))
            async with self._guard("update_key", write=True):
                done = await self._replace(self._keys, [key_id, raw, orjson.dumps(record)])
            if int(done) == 1:
                return record
        raise ConflictError(f"Key '{key_id}' kept changing while it was updated; try again.")

    async def delete(self, key_id: str) -> Record | None:
        async with self._guard("delete_key", write=True):
            raw = await self._delete(self._keys, [key_id])
        return None if raw is None else _decoded(raw)


def _decoded(raw: bytes | str) -> Record:
    record: Record = orjson.loads(raw)
    return record

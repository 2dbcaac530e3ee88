"""RedisStore: the shared state in Redis (redis.asyncio with hiredis), on the process's one
RedisConnection.

Keys are `<prefix><kind>:{<id>}[:part]`: the braces are a Redis Cluster hash tag, so the keys of
one conversation sit in one slot and its scripts run on Cluster too.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import orjson
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisClusterException, RedisError

from gateway import metrics, redis_batch
from gateway.errors import ServiceUnavailableError
from gateway.store import Json, Page, page_of

# KEYS: conversation hash, item ids list, items hash. ARGV: owner, ttl, max, then id/json pairs.
_ADD_ITEMS = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local n = (#ARGV - 3) / 2
if redis.call('LLEN', KEYS[2]) + n > tonumber(ARGV[3]) then return -1 end
for i = 4, #ARGV, 2 do
  redis.call('RPUSH', KEYS[2], ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return 1
"""

# KEYS: conversation hash, item ids list, items hash. ARGV: owner, item id.
_DELETE_ITEM = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('HDEL', KEYS[3], ARGV[2]) == 0 then return 0 end
redis.call('LREM', KEYS[2], 1, ARGV[2])
return 1
"""

# KEYS: conversation hash, item ids list, items hash. ARGV: owner.
_DELETE_CONVERSATION = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
"""


# KEYS: response. ARGV: record, ttl. A response is created, never overwritten: 1 when kept
# (or already kept with these very bytes, as a retried save finds it), 0 when the id is taken.
_CREATE = """
if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""

# KEYS: conversation hash. ARGV: owner, served JSON. Never recreates a deleted conversation.
_SET_SERVED = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'served', ARGV[2])
return 1
"""


CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster(url: str) -> bool:
    """`redis+cluster://host:port/` (or `rediss+cluster://`): a Redis Cluster, found from a node."""
    return url.startswith(CLUSTER_SCHEMES)


def _client(url: str, **options: Any) -> Any:
    """A client for `url`: a plain Redis, or a Redis Cluster (it finds the other nodes from the
    one named, and sends each command to the master holding its keys' slot)."""
    if is_cluster(url):
        # Connections per node as a single Redis's pool has them (no cap): the cluster
        # client's default, 100, refuses every command past it at once (MaxConnectionsError).
        # Two quick retries (each after a topology refresh, which follows a failover) instead
        # of ten backing off to a second: a master that is down costs a request a prompt
        # 503, not seconds of waiting. Redirects (MOVED, ASK) are followed apart from these.
        return redis.RedisCluster.from_url(
            url.replace("+cluster", "", 1),
            max_connections=2**31,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=2),
            **options,
        )
    return redis.Redis.from_url(url, retry_on_timeout=False, **options)


class RedisConnection:
    """The process's Redis: one client for commands, one for blocking reads, the key prefix,
    and whether a call failed lately. The store, the jobs and the admin keys share it, so a
    failure any of them sees makes the store check that it still keeps before it says so."""

    def __init__(self, url: str, prefix: str, timeout_s: float) -> None:
        self.prefix = prefix
        self.cluster = is_cluster(url)
        self.timeout_s = max(timeout_s, 0.05)  # each command's (a batch's round trip's)
        # Typed Any: redis-py annotates its asyncio commands with the sync client's unions
        # (`Awaitable[T] | T`), which no caller can use as written.
        self.client: Any = _client(
            url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            health_check_interval=30,
        )
        # Blocking reads (job queue, event logs) wait longer than any command may take.
        self.blocking: Any = _client(
            url,
            socket_timeout=30,
            socket_connect_timeout=max(timeout_s, 0.05),
            health_check_interval=30,
        )
        # When a call last failed, until a write succeeds again: the store may not keep now.
        self.failed_at: float | None = None

    async def ping(self) -> None:
        """Every node answers: on a Cluster each master, not only the one a PING would reach."""
        if self.cluster:
            await self.client.ping(target_nodes=redis.RedisCluster.PRIMARIES)
        else:
            await self.client.ping()

    async def close(self) -> None:
        redis_batch.forget(self.client)
        await self.client.aclose()
        await self.blocking.aclose()

    def key(self, kind: str, ident: str, part: str = "") -> str:
        return f"{self.prefix}{kind}:{{{ident}}}{part}"

    def guard(self, operation: str, *, write: bool = False) -> Guard:
        """Redis failures become a 503 with retry-after, never a 500, and are counted by
        operation; a write that succeeds says the store keeps again."""
        return Guard(self, operation, write)


class Guard:
    """RedisConnection.guard's context (a plain class: a generator-based one cost more than
    the call it guarded on the hot path)."""

    __slots__ = ("conn", "operation", "write")

    def __init__(self, conn: RedisConnection, operation: str, write: bool) -> None:
        self.conn, self.operation, self.write = conn, operation, write

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            if self.write:
                self.conn.failed_at = None
            return
        # RedisClusterException: a Cluster client's own failures (no node reachable, a slot
        # no master serves) are not RedisErrors.
        if isinstance(exc, RedisError | RedisClusterException | OSError):
            self.conn.failed_at = time.monotonic()
            metrics.redis_error(self.operation)
            raise unavailable(exc) from exc


class RedisStore:
    def __init__(self, redis_conn: RedisConnection) -> None:
        self.redis = redis_conn
        self.client: Any = redis_conn.client
        self.key = redis_conn.key
        self.guard = redis_conn.guard
        self._create = self.client.register_script(_CREATE)
        self._add_items = self.client.register_script(_ADD_ITEMS)
        self._delete_item = self.client.register_script(_DELETE_ITEM)
        self._delete_conversation = self.client.register_script(_DELETE_CONVERSATION)
        self._set_served = self.client.register_script(_SET_SERVED)
        # Responses kept in the same loop tick are written in one round trip.
        self._batch = redis_batch.shared(self.client, redis_conn.timeout_s)

    def _conv_keys(self, conv_id: str) -> list[str]:
        return [
            self.key("conv", conv_id),
            self.key("conv", conv_id, ":ids"),
            self.key("conv", conv_id, ":items"),
        ]

    async def ping(self) -> None:
        async with self.guard("ping"):
            await self.redis.ping()

    async def check_writable(self, suspect: bool = False) -> None:
        """After a failure (or when the caller `suspect`s one), one small write decides
        whether the store keeps (a full Redis answers reads and PING but refuses writes)."""
        if self.redis.failed_at is None and not suspect:
            return
        async with self.guard("check_writable", write=True):
            await self.client.set(self.key("health", "write"), b"1", px=60_000)

    async def put_response(self, response_id: str, record: Json, ttl_s: int) -> bool:
        """Create-only, in the loop tick's one round trip (gateway.redis_batch) with the other
        writes and the limits' calls of that tick; the create script is atomic on its own."""
        key = self.key("resp", response_id)
        async with self.guard("put_response", write=True):
            return bool(await self._batch.run(self._create, [key], [orjson.dumps(record), ttl_s]))

    async def get_responses(self, owner: str, response_ids: list[str]) -> list[Json | None]:
        if not response_ids:
            return []
        async with self.guard("get_responses"), self.client.pipeline(transaction=False) as pipe:
            for rid in response_ids:
                pipe.get(self.key("resp", rid))
            raw = await pipe.execute()
        return [_owned(value, owner) for value in raw]

    async def delete_response(self, owner: str, response_id: str) -> bool:
        (found,) = await self.get_responses(owner, [response_id])
        if found is None:
            return False
        async with self.guard("delete_response"):
            return bool(await self.client.delete(self.key("resp", response_id)))

    async def put_conversation(self, conv_id: str, record: Json, ttl_s: int) -> None:
        head = self.key("conv", conv_id)
        async with (
            self.guard("put_conversation", write=True),
            self.client.pipeline(transaction=True) as pipe,
        ):
            pipe.hset(head, mapping={"owner": record["owner"], "data": orjson.dumps(record)})
            for key in self._conv_keys(conv_id):
                pipe.expire(key, ttl_s)
            await pipe.execute()

    async def get_conversation(self, owner: str, conv_id: str) -> Json | None:
        async with self.guard("get_conversation"):
            owner_found, data = await self.client.hmget(self.key("conv", conv_id), "owner", "data")
        if owner_found is None or owner_found.decode() != owner or data is None:
            return None
        record: Json = orjson.loads(data)
        return record

    async def delete_conversation(self, owner: str, conv_id: str) -> bool:
        async with self.guard("delete_conversation"):
            return bool(await self._delete_conversation(self._conv_keys(conv_id), [owner]))

    async def add_items(
        self, owner: str, conv_id: str, items: list[Json], ttl_s: int, max_items: int
    ) -> bool:
        args: list[Any] = [owner, ttl_s, max_items]
        for item in items:
            args += [item["id"], orjson.dumps(item)]
        async with self.guard("add_items", write=True):
            return int(await self._add_items(self._conv_keys(conv_id), args)) == 1

    async def _ordered_ids(self, owner: str, conv_id: str) -> list[bytes] | None:
        head, ids, _ = self._conv_keys(conv_id)
        async with self.guard("list_items"), self.client.pipeline(transaction=False) as pipe:
            pipe.hget(head, "owner")
            pipe.lrange(ids, 0, -1)
            owner_found, order = await pipe.execute()
        if owner_found is None or owner_found.decode() != owner:
            return None
        return list(order)

    async def _items(self, conv_id: str, ids: list[bytes]) -> list[Json]:
        if not ids:
            return []
        async with self.guard("list_items"):
            raw = await self.client.hmget(self.key("conv", conv_id, ":items"), ids)
        return [orjson.loads(value) for value in raw if value is not None]

    async def list_items(
        self, owner: str, conv_id: str, *, after: str | None, limit: int, desc: bool
    ) -> Page | None:
        order = await self._ordered_ids(owner, conv_id)
        if order is None:
            return None
        stubs = [{"id": raw.decode()} for raw in order]
        page = page_of(stubs, after=after, limit=limit, desc=desc)
        items = await self._items(conv_id, [stub["id"].encode() for stub in page.items])
        return Page(items, page.has_more)

    async def all_items(self, owner: str, conv_id: str) -> list[Json] | None:
        order = await self._ordered_ids(owner, conv_id)
        return None if order is None else await self._items(conv_id, order)

    async def get_item(self, owner: str, conv_id: str, item_id: str) -> Json | None:
        head, _, items = self._conv_keys(conv_id)
        async with self.guard("get_item"), self.client.pipeline(transaction=False) as pipe:
            pipe.hget(head, "owner")
            pipe.hget(items, item_id)
            owner_found, raw = await pipe.execute()
        if owner_found is None or owner_found.decode() != owner or raw is None:
            return None
        item: Json = orjson.loads(raw)
        return item

    async def delete_item(self, owner: str, conv_id: str, item_id: str) -> bool:
        async with self.guard("delete_item"):
            return bool(await self._delete_item(self._conv_keys(conv_id), [owner, item_id]))

    async def get_served(self, owner: str, conv_id: str) -> Json | None:
        async with self.guard("get_served"):
            owner_found, raw = await self.client.hmget(self.key("conv", conv_id), "owner", "served")
        if owner_found is None or owner_found.decode() != owner or raw is None:
            return None
        served: Json = orjson.loads(raw)
        return served

    async def set_served(self, owner: str, conv_id: str, served: Json) -> None:
        async with self.guard("set_served", write=True):
            await self._set_served([self.key("conv", conv_id)], [owner, orjson.dumps(served)])

    def _origin_key(self, owner: str, digest: str) -> str:
        # The digest is the hash tag: one item's record sits in one slot whoever asks.
        return self.key("origin", digest, f":{owner}")

    async def put_origins(self, owner: str, origins: dict[str, Json], ttl_s: int) -> None:
        if not origins:
            return
        async with (
            self.guard("put_origins", write=True),
            self.client.pipeline(transaction=False) as pipe,
        ):
            for digest, origin in origins.items():
                pipe.set(self._origin_key(owner, digest), orjson.dumps(origin), ex=ttl_s)
            await pipe.execute()

    async def get_origins(self, owner: str, digests: list[str]) -> dict[str, Json]:
        if not digests:
            return {}
        async with self.guard("get_origins"), self.client.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.get(self._origin_key(owner, digest))
            raw = await pipe.execute()
        return {d: orjson.loads(v) for d, v in zip(digests, raw, strict=True) if v is not None}


def _owned(raw: bytes | None, owner: str) -> Json | None:
    if raw is None:
        return None
    record: Json = orjson.loads(raw)
    return record if record.get("owner") == owner else None


def unavailable(exc: BaseException) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"The gateway's state store is unreachable ({type(exc).__name__}); try again shortly.",
        code="store_unavailable",
        headers={"retry-after": "1"},
    )

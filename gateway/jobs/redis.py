"""RedisJobs: a Redis Stream with one consumer group shared by every replica, plus per-job records.

`jobs` is the queue (at-least-once: an entry stays pending until `done`, and an entry whose
consumer stops heartbeating is claimed by another). `job:{id}` holds the job and its status,
`resp:{id}` the response snapshot clients read, `events:{id}` the stream of its events.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from redis.exceptions import ResponseError

from gateway.jobs import Event
from gateway.store import Json
from gateway.store.redis import RedisConnection

GROUP = "workers"
T = TypeVar("T")
log = logging.getLogger("gateway.jobs")

# KEYS: job hash, response record. ARGV: status, response JSON, ttl.
_WRITE = """
local current = redis.call('HGET', KEYS[1], 'status')
if current == false then return 0 end
if current == 'completed' or current == 'failed' or current == 'incomplete'
   or current == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""

# KEYS: job hash, event stream. ARGV: ttl. A new attempt starts a new event log; a job gone,
# or already ended (its outcome written), starts no attempt.
_START = """
local current = redis.call('HGET', KEYS[1], 'status')
if current == false then return 0 end
if current == 'completed' or current == 'failed' or current == 'incomplete'
   or current == 'cancelled' then return 0 end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('DEL', KEYS[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return attempts
"""


class RedisJobs:
    def __init__(self, redis_conn: RedisConnection) -> None:
        self.redis = redis_conn
        self.client: Any = redis_conn.client
        self.queue = redis_conn.key("jobs", "queue")
        self._write = self.client.register_script(_WRITE)
        self._start = self.client.register_script(_START)
        self._entries: dict[str, bytes] = {}  # job id -> its queue entry id, for this consumer
        self._group_ready = False

    def _job(self, job_id: str) -> str:
        return self.redis.key("job", job_id)

    def _events(self, job_id: str) -> str:
        return self.redis.key("events", job_id)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.client.xgroup_create(self.queue, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _grouped(self, command: Callable[[], Awaitable[T]]) -> T:
        """A consumer-group command. A Redis that restarted empty (or was flushed) has lost
        the group: make it again and retry, instead of failing with NOGROUP forever."""
        await self._ensure_group()
        try:
            return await command()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        log.warning("the job queue's consumer group was missing (Redis lost its data); made again")
        self._group_ready = False
        await self._ensure_group()
        return await command()

    async def check(self) -> None:
        """Ready: the queue's consumer group is there (made again if Redis lost it). Read-only
        while it is there, so a full Redis that still serves jobs stays ready."""
        async with self.redis.guard("check_jobs"):
            try:
                groups = await self.client.xinfo_groups(self.queue)
            except ResponseError as exc:
                if "no such key" not in str(exc).lower():
                    raise
                groups = []
            if not any(_text(g.get("name")) == GROUP for g in groups):
                self._group_ready = False
                await self._ensure_group()

    async def enqueue(self, job_id: str, job: Json, response: Json, ttl_s: int) -> None:
        async with self.redis.guard("enqueue", write=True):
            await self._ensure_group()
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._job(job_id),
                    mapping={"status": response["status"], "attempts": 0, "job": orjson.dumps(job)},
                )
                pipe.expire(self._job(job_id), ttl_s)
                pipe.set(
                    self.redis.key("resp", job_id),
                    orjson.dumps(
                        {
                            "owner": job["owner"],
                            "response": response,
                            "input": job["input_items"],
                            "chain": job["chain"],
                            "background": True,
                        }
                    ),
                    ex=ttl_s,
                )
                await pipe.execute()
            await self.client.xadd(self.queue, {"job": job_id})

    def _remember(self, entries: list[Any]) -> list[str]:
        ids = []
        for entry_id, fields in entries:
            if not fields:
                continue  # the entry was deleted meanwhile
            job_id = fields[b"job"].decode()
            self._entries[job_id] = entry_id
            ids.append(job_id)
        return ids

    async def take(self, consumer: str, count: int, block_ms: int) -> list[str]:
        async with self.redis.guard("take_jobs"):
            found = await self._grouped(
                lambda: self.redis.blocking.xreadgroup(
                    GROUP, consumer, {self.queue: ">"}, count=count, block=block_ms
                )
            )
        return self._remember(found[0][1]) if found else []

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[str]:
        async with self.redis.guard("reclaim_jobs"):
            # Redis 6.2 answers [cursor, entries]; 7 adds the ids of deleted entries.
            answer = await self._grouped(
                lambda: self.client.xautoclaim(
                    self.queue, GROUP, consumer, min_idle_time=min_idle_ms, count=count
                )
            )
        return self._remember(answer[1])

    async def heartbeat(self, consumer: str, job_ids: list[str]) -> None:
        entries = [self._entries[j] for j in job_ids if j in self._entries]
        if entries:
            async with self.redis.guard("heartbeat_jobs"):
                await self._grouped(
                    lambda: self.client.xclaim(self.queue, GROUP, consumer, 0, entries, justid=True)
                )

    async def release(self, consumer: str, job_id: str) -> None:
        entry = self._entries.pop(job_id, None)
        if entry is not None:
            async with self.redis.guard("release_job"):
                # An idle time far past any lease: the next reclaim anywhere takes it.
                await self._grouped(
                    lambda: self.client.xclaim(
                        self.queue, GROUP, consumer, 0, [entry], idle=10**9, justid=True
                    )
                )

    async def done(self, job_id: str) -> None:
        entry = self._entries.pop(job_id, None)
        if entry is not None:
            async with self.redis.guard("job_done"):
                await self._grouped(lambda: self.client.xack(self.queue, GROUP, entry))
                await self.client.xdel(self.queue, entry)

    async def get_job(self, job_id: str) -> Json | None:
        async with self.redis.guard("get_job"):
            raw = await self.client.hget(self._job(job_id), "job")
        if raw is None:
            return None
        job: Json = orjson.loads(raw)
        return job

    async def start_attempt(self, job_id: str, ttl_s: int) -> int:
        async with self.redis.guard("start_job", write=True):
            return int(await self._start([self._job(job_id), self._events(job_id)], [ttl_s]))

    async def status(self, job_id: str) -> str | None:
        async with self.redis.guard("job_status"):
            raw = await self.client.hget(self._job(job_id), "status")
        return raw.decode() if raw is not None else None

    async def write(
        self, job_id: str, status: str, response: Json, ttl_s: int, served: Json | None = None
    ) -> bool:
        async with self.redis.guard("write_job", write=True):
            record = await self.client.get(self.redis.key("resp", job_id))
            if record is None:
                return False
            merged = orjson.loads(record)
            merged["response"] = response
            if served is not None:
                merged["served"] = served
            done = await self._write(
                [self._job(job_id), self.redis.key("resp", job_id)],
                [status, orjson.dumps(merged), ttl_s],
            )
        return bool(done)

    async def append_events(self, job_id: str, events: list[Event], ttl_s: int) -> None:
        if not events:
            return
        key = self._events(job_id)
        async with (
            self.redis.guard("append_events", write=True),
            self.client.pipeline(transaction=False) as pipe,
        ):
            for event in events:
                pipe.xadd(key, {"seq": event.seq, "data": event.data, "kind": event.kind})
            pipe.expire(key, ttl_s)
            await pipe.execute()

    async def read_events(self, job_id: str, cursor: Any, block_ms: int) -> tuple[list[Event], Any]:
        key = self._events(job_id)
        async with self.redis.guard("read_events"):
            if cursor is None:
                entries = await self.client.xrange(key, "-", "+")
                if entries or not block_ms:
                    return _events(entries), entries[-1][0] if entries else "0-0"
                cursor = "0-0"
            found = await self.redis.blocking.xread({key: cursor}, block=block_ms or None)
        entries = found[0][1] if found else []
        return _events(entries), entries[-1][0] if entries else cursor

    async def queued(self) -> int:
        # Ended jobs leave the stream (XDEL), so its length is queued plus taken-not-done.
        async with self.redis.guard("count_jobs"):
            length = int(await self.client.xlen(self.queue))
            if length == 0:
                return 0
            pending = await self._grouped(lambda: self.client.xpending(self.queue, GROUP))
        return max(length - int(pending["pending"]), 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _events(entries: list[Any]) -> list[Event]:
    return [Event(int(f[b"seq"]), f[b"data"], f[b"kind"].decode()) for _, f in entries]

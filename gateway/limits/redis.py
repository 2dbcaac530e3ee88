"""RedisLimiter: admit, settle and renew as one Lua script each, timed by the Redis server's clock.

Every key lives under one hash tag, `<prefix>rl:{<tag>}:...` (see gateway.limits for why). Each
script takes its numbers as one JSON argument (cjson in Lua): redis-py packs every argument in
Python, so one blob instead of dozens of arguments is most of a round trip's client CPU.
The admissions of one loop tick share one script call; a tick's settlements share one
pipelined round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import NoScriptError

from gateway.limits.backend import Charge, Reply, Settlement, Window
from gateway.limits.rules import Lease, Plan, Rate, nano

# Several admissions in one call, each all-or-nothing on its own: the ones a loop tick asked.
# KEYS: per admission, its rate hashes, lease sorted sets and budget counters. ARGV[1]:
# {w: sub-buckets per window, b: sub-bucket ms, l: lease ms, q: [admission]}, an admission
# being {id: lease id, r: [[limit, amount]] per rate, c: [limit] per lease, s: [limit in
# nano-USD] per budget}. Checks everything first and reserves only if all pass: a refusal
# consumes nothing. Returns, per admission, {ok, now, cur, used, wait, newest, held, spent}.
_ADMIT = """
local batch = cjson.decode(ARGV[1])
local nb, bucket_ms, lease_ms = batch.w, batch.b, batch.l
-- the server's clock, so replicas with skewed clocks share one window
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / bucket_ms)
local replies, base = {}, 0
for q, a in ipairs(batch.q) do
  local n_rate, n_lease = #a.r, #a.c
  local ok, used, wait, newest, held, spent = true, {}, {}, {}, {}, {}
  for i = 1, n_rate do
    local key, limit, amount = KEYS[base + i], a.r[i][1], a.r[i][2]
    -- a sliding window: field = sub-bucket index, value = amount; fields that left it go
    local flat, live, sum, top = redis.call('HGETALL', key), {}, 0, -1
    for j = 1, #flat, 2 do
      local b, v = tonumber(flat[j]), tonumber(flat[j + 1])
      if b <= cur - nb then redis.call('HDEL', key, flat[j])
      else live[#live + 1] = {b, v}; sum = sum + v; top = math.max(top, b) end
    end
    used[i], newest[i], wait[i] = sum, top, 0
    if sum + amount > limit then
      ok, wait[i] = false, nb * bucket_ms
      -- room exists once enough of the oldest sub-buckets have left the window
      table.sort(live, function(x, y) return x[1] < y[1] end)
      local left = sum
      for _, e in ipairs(live) do
        left = left - e[2]
        if left + amount <= limit then wait[i] = (e[1] + nb) * bucket_ms - now; break end
      end
    end
  end
  for i = 1, n_lease do
    -- a lease is a member scored by its expiry: expired ones belonged to replicas that died
    local key = KEYS[base + n_rate + i]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    held[i] = redis.call('ZCARD', key)
    if held[i] >= a.c[i] then ok = false end
  end
  for i = 1, #a.s do
    spent[i] = tonumber(redis.call('GET', KEYS[base + n_rate + n_lease + i]) or '0')
    if spent[i] >= a.s[i] then ok = false end
  end
  if ok then
    for i = 1, n_rate do
      if a.r[i][2] > 0 then
        redis.call('HINCRBY', KEYS[base + i], cur, a.r[i][2])
        redis.call('PEXPIRE', KEYS[base + i], (nb + 1) * bucket_ms)
      end
    end
    for i = 1, n_lease do
      redis.call('ZADD', KEYS[base + n_rate + i], now + lease_ms, a.id)
      redis.call('PEXPIRE', KEYS[base + n_rate + i], lease_ms + 1000)
    end
  end
  replies[q] = {ok and 1 or 0, now, cur, used, wait, newest, held, spent}
  base = base + n_rate + n_lease + #a.s
end
return replies
"""

# KEYS: usage stream, the day's usage-totals hash, token hashes, lease sets, budget counters.
# ARGV[1]: {w, b, id (as for admit), adj: [[sub-bucket, delta]] per token hash, n: #lease sets,
# spend: [[nano-USD, ttl s or 0]] per budget, ttl: totals ttl s, tot: [field, n, ...],
# max: stream MAXLEN, rec: [field, value, ...]}.
_SETTLE = """
local a = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local cur = math.floor((tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) / a.b)
local k = 2
for _, adj in ipairs(a.adj) do
  k = k + 1
  local b, delta = adj[1], adj[2]
  -- correct the reservation where it was made; once that left the window only an overrun counts
  if b > cur - a.w then
    if redis.call('HINCRBY', KEYS[k], b, delta) <= 0 then redis.call('HDEL', KEYS[k], b) end
  elseif delta > 0 then redis.call('HINCRBY', KEYS[k], cur, delta) end
  redis.call('PEXPIRE', KEYS[k], (a.w + 1) * a.b)
end
for _ = 1, a.n do k = k + 1; redis.call('ZREM', KEYS[k], a.id) end
for _, s in ipairs(a.spend) do
  k = k + 1
  -- integers (nano-USD): INCRBYFLOAT inside a script corrupts Redis 6.2's cached arguments
  redis.call('INCRBY', KEYS[k], s[1])
  if s[2] > 0 then redis.call('EXPIRE', KEYS[k], s[2]) end
end
for j = 1, #a.tot, 2 do redis.call('HINCRBY', KEYS[2], a.tot[j], a.tot[j + 1]) end
if #a.tot > 0 then redis.call('EXPIRE', KEYS[2], a.ttl) end
-- last: XADD rewrites its own arguments for replication
if #a.rec > 0 then redis.call('XADD', KEYS[1], 'MAXLEN', '~', a.max, '*', unpack(a.rec)) end
return 1
"""

# KEYS: lease sets. ARGV: lease ms, lease id. XX: a lease already reaped is not brought back.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[1]), ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[1]) + 1000)
end
return 1
"""


# An admission waiting for its tick's script call: its keys, its part of ARGV, its answer.
_Admission = tuple[list[str], dict[str, Any], "asyncio.Future[Any]"]


class RedisLimiter:
    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        prefix: str,
        window: Window,
        *,
        timeout_s: float = 0.25,
        tag: str = "limits",
        stream_max: int = 100_000,
        totals_ttl_s: int = 400 * 86400,
    ) -> None:
        self.client = client
        self.window = window
        self.timeout_s = timeout_s  # each round trip's; past it, the caller falls back
        self.base = f"{prefix}rl:{{{tag}}}:"
        self.stream_max = stream_max
        self.totals_ttl_s = totals_ttl_s
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)
        self._renew = client.register_script(_RENEW)
        self._plan_keys: dict[Plan, list[str]] = {}
        # Admissions asked in the same loop tick, sent together as one script call.
        self._admits: list[_Admission] = []
        self._sending: set[asyncio.Task[None]] = set()

    def rate_key(self, rate: Rate) -> str:
        return f"{self.base}{rate.kind[:3]}:{rate.scope}:{rate.name}"

    def lease_key(self, lease: Lease) -> str:
        return f"{self.base}lease:{lease.scope}:{lease.name}"

    def budget_key(self, charge: Charge) -> str:
        b = charge.budget
        return f"{self.base}spent:{charge.period_id}:{b.scope}:{b.name}"

    def totals_key(self, day: str) -> str:
        return f"{self.base}usage:{day or 'none'}"

    async def admit(
        self, plan: Plan, amounts: list[int], charges: list[Charge], lease_id: str
    ) -> Reply:
        keys = self._plan_keys.get(plan)
        if keys is None:
            if len(self._plan_keys) > 4096:
                self._plan_keys.clear()
            keys = self._plan_keys[plan] = [self.rate_key(r) for r in plan.rates] + [
                self.lease_key(x) for x in plan.leases
            ]
        keys = keys + [self.budget_key(c) for c in charges]
        ask = {
            "id": lease_id,
            "r": [[r.limit, n] for r, n in zip(plan.rates, amounts, strict=True)],
            "c": [x.limit for x in plan.leases],
            "s": [nano(c.budget.limit_usd) for c in charges],
        }
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._admits.append((keys, ask, answer))
        if len(self._admits) == 1:
            loop.call_soon(self._send_admits)
        ok, now, cur, used, wait, newest, held, spent = await answer
        return Reply(
            bool(ok),
            int(now),
            int(cur),
            tuple(map(int, used)),
            tuple(map(int, wait)),
            tuple(map(int, newest)),
            tuple(map(int, held)),
            tuple(map(int, spent)),
        )

    def _send_admits(self) -> None:
        batch, self._admits = self._admits, []
        task = asyncio.create_task(self._answer_admits(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _answer_admits(self, batch: list[_Admission]) -> None:
        """Every admission a loop tick asked, in one script call (one command, one reply)."""
        w = self.window
        keys = [key for own, _, _ in batch for key in own]
        arg = orjson.dumps(
            {"w": w.buckets, "b": w.bucket_ms, "l": w.lease_ms, "q": [a for _, a, _ in batch]}
        )
        try:
            async with asyncio.timeout(self.timeout_s):  # one timer per tick, not per request
                replies = await self._admit(keys, [arg])
        except asyncio.CancelledError:
            for _, _, answer in batch:
                answer.cancel()
            raise
        except Exception as exc:  # every waiter sees the failure (and falls back or 503s)
            replies = [exc] * len(batch)
        for (_, _, answer), reply in zip(batch, replies, strict=True):
            if answer.done():  # its request timed out waiting, or left
                continue
            if isinstance(reply, BaseException):
                answer.set_exception(reply)
            else:
                answer.set_result(reply)

    async def settle(self, done: Settlement) -> None:
        await self.settle_many([done])

    async def settle_many(self, settled: list[Settlement]) -> None:
        """Several settlements in one round trip (each script is still atomic on its own)."""
        calls = [self._settle_call(d) for d in settled]
        async with asyncio.timeout(self.timeout_s):
            replies = await self._pipelined(self._settle, calls)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply

    async def _pipelined(
        self, script: Any, calls: Sequence[tuple[list[str], list[bytes]]]
    ) -> list[Any]:
        """One script's calls in one round trip, each reply or error in its place. EVALSHA
        straight on the pipeline: redis-py's script objects would ask SCRIPT EXISTS first,
        a second round trip on every batch; a NOSCRIPT (Redis restarted) loads it once."""
        for _ in range(2):
            async with self.client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    _ = pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                return replies
            script.sha = await self.client.script_load(script.script)
        return replies

    def _settle_call(self, done: Settlement) -> tuple[list[str], list[bytes]]:
        w = self.window
        keys = [f"{self.base}usage", self.totals_key(done.day)]
        keys += [self.rate_key(rate) for rate, _, _ in done.adjust]
        keys += [self.lease_key(x) for x in done.leases]
        keys += [self.budget_key(c) for c in done.charges]
        tot: list[str | int] = []
        for name, count in done.totals.items():
            tot += (name, count)
        rec: list[str] = []
        for name, value in done.record.items():
            rec += (name, value)
        arg = orjson.dumps(
            {
                "w": w.buckets,
                "b": w.bucket_ms,
                "id": done.lease_id,
                "adj": [[bucket, delta] for _, bucket, delta in done.adjust],
                "n": len(done.leases),
                "spend": [[c.spend, c.ttl_s or 0] for c in done.charges],
                "ttl": self.totals_ttl_s,
                "tot": tot,
                "max": self.stream_max,
                "rec": rec,
            }
        )
        return keys, [arg]

    async def renew(self, leases: tuple[Lease, ...], lease_id: str) -> None:
        if leases:
            async with asyncio.timeout(self.timeout_s):
                await self._renew(
                    [self.lease_key(x) for x in leases], [self.window.lease_ms, lease_id]
                )

    async def day_totals(self, days: list[str]) -> list[dict[str, int]]:
        async with self.client.pipeline(transaction=False) as pipe:
            for day in days:
                _ = pipe.hgetall(self.totals_key(day))  # queued; the pipeline returns itself
            raw: list[dict[Any, Any]] = await pipe.execute()
        return [{_text(k): int(v) for k, v in found.items()} for found in raw]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

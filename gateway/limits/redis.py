"""RedisLimiter: admit, settle and renew as one Lua script each, timed by the Redis server's clock.

Every key lives under one hash tag, `<prefix>rl:{<tag>}:...` (see gateway.limits for why). Each
script takes its numbers as one JSON argument (cjson in Lua): one orjson blob costs the process
less than dozens of arguments, each made a string and packed.
The admissions of one loop tick share one script call, so do the settlements the settler hands
over at once; both go in the tick's one round trip (gateway.redis_batch), beside the store's.
"""

from __future__ import annotations

import asyncio
from functools import partial
from itertools import chain
from typing import Any

import orjson
import redis.asyncio as redis

from gateway import redis_batch
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

# Several settlements in one call: the ones a loop tick finished. KEYS: the usage stream,
# the usage-totals hash of each day in `days`, then per settlement its token hashes, lease sets
# and budget counters. ARGV[1]: {w, b, ttl: totals ttl s, max: stream MAXLEN, days: per day
# [field, n, ...] (the tick's increments summed in the process), q: [settlement]}, a settlement
# being {id: lease id, adj: [[sub-bucket, delta]] per token hash, n: #lease sets,
# spend: [[nano-USD, ttl s or 0]] per budget, rec: [field, value, ...]}.
_SETTLE = """
local a = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local cur = math.floor((tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) / a.b)
for d, tot in ipairs(a.days) do
  for j = 1, #tot, 2 do redis.call('HINCRBY', KEYS[1 + d], tot[j], tot[j + 1]) end
  redis.call('EXPIRE', KEYS[1 + d], a.ttl)
end
local k = 1 + #a.days
for _, s in ipairs(a.q) do
  for _, adj in ipairs(s.adj) do
    k = k + 1
    local b, delta = adj[1], adj[2]
    -- correct the reservation where it was made; once that left the window only an overrun counts
    if b > cur - a.w then
      if redis.call('HINCRBY', KEYS[k], b, delta) <= 0 then redis.call('HDEL', KEYS[k], b) end
    elseif delta > 0 then redis.call('HINCRBY', KEYS[k], cur, delta) end
    redis.call('PEXPIRE', KEYS[k], (a.w + 1) * a.b)
  end
  for _ = 1, s.n do k = k + 1; redis.call('ZREM', KEYS[k], s.id) end
  for _, c in ipairs(s.spend) do
    k = k + 1
    -- integers (nano-USD): INCRBYFLOAT inside a script corrupts Redis 6.2's cached arguments
    redis.call('INCRBY', KEYS[k], c[1])
    if c[2] > 0 then redis.call('EXPIRE', KEYS[k], c[2]) end
  end
end
-- last: XADD rewrites its own arguments for replication
for _, s in ipairs(a.q) do
  if #s.rec > 0 then redis.call('XADD', KEYS[1], 'MAXLEN', '~', a.max, '*', unpack(s.rec)) end
end
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
        self.stream_key = f"{self.base}usage"
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)
        self._renew = client.register_script(_RENEW)
        self._plan_keys: dict[Plan, list[str]] = {}
        # One round trip per loop tick, shared with the store's writes on this client.
        self._batch = redis_batch.shared(client, timeout_s)
        # Admissions asked in the same loop tick, sent together as one script call.
        self._admits: list[_Admission] = []

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
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._admits.append((keys, ask, answer))
        if len(self._admits) == 1:
            self._batch.before_send(self._send_admits)
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
        """Every admission the loop tick asked, as one script call in the tick's round trip."""
        batch, self._admits = self._admits, []
        w = self.window
        keys = [key for own, _, _ in batch for key in own]
        arg = orjson.dumps(
            {"w": w.buckets, "b": w.bucket_ms, "l": w.lease_ms, "q": [a for _, a, _ in batch]}
        )
        self._batch.call(self._admit, keys, [arg], partial(_answer_admits, batch))

    async def settle(self, done: Settlement) -> None:
        await self.settle_many([done])

    async def settle_many(self, settled: list[Settlement]) -> None:
        """Several settlements as one script call, all or none: the day totals they add are
        summed here first, so each counter is incremented once per call, not per request."""
        w = self.window
        keys = [self.stream_key]
        days: dict[str, dict[str, int]] = {}
        for done in settled:
            if done.totals:
                day = days.setdefault(done.day, {})
                for name, count in done.totals.items():
                    day[name] = day.get(name, 0) + count
        keys += [self.totals_key(day) for day in days]
        queue = []
        for done in settled:
            # (the rules a request has not are skipped: a comprehension costs a call even empty)
            if done.adjust:
                keys += [self.rate_key(rate) for rate, _, _ in done.adjust]
            if done.leases:
                keys += [self.lease_key(x) for x in done.leases]
            if done.charges:
                keys += [self.budget_key(c) for c in done.charges]
            queue.append(
                {
                    "id": done.lease_id,
                    "adj": [[b, delta] for _, b, delta in done.adjust] if done.adjust else (),
                    "n": len(done.leases),
                    "spend": [[c.spend, c.ttl_s or 0] for c in done.charges]
                    if done.charges
                    else (),
                    "rec": list(chain.from_iterable(done.record.items())),
                }
            )
        tot = [list(chain.from_iterable(counts.items())) for counts in days.values()]
        arg = orjson.dumps(
            {
                "w": w.buckets,
                "b": w.bucket_ms,
                "ttl": self.totals_ttl_s,
                "max": self.stream_max,
                "days": tot,
                "q": queue,
            }
        )
        await self._batch.run(self._settle, keys, [arg])

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


def _answer_admits(batch: list[_Admission], replies: Any) -> None:
    """Each admission its own reply from the tick's script call, or the call's failure."""
    if isinstance(replies, BaseException):
        for _, _, answer in batch:
            redis_batch.resolve(answer, replies)
        return
    for (_, _, answer), reply in zip(batch, replies, strict=True):
        redis_batch.resolve(answer, reply)

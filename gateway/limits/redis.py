"""RedisLimiter: admit, settle and renew as one Lua script each, timed by the Redis server's clock.

Every key lives under one hash tag, `<prefix>rl:{<tag>}:...` (see gateway.limits for why).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

from gateway.limits.backend import Charge, Reply, Settlement, Window
from gateway.limits.rules import Lease, Plan, Rate, nano

# KEYS: rate hashes, lease sorted sets, budget counters.
# ARGV: buckets per window, bucket ms, lease ms, lease id, #rates, #leases,
#       then (limit, amount) per rate, limit per lease, limit per budget.
# Checks everything first and reserves only if all pass: a refusal consumes nothing.
_ADMIT = """
local nb, bucket_ms, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local lease_id, n_rate, n_lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
-- the server's clock, so replicas with skewed clocks share one window
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / bucket_ms)
local ok, used, wait, newest, held, spent = true, {}, {}, {}, {}, {}
for i = 1, n_rate do
  local limit, amount = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  -- a sliding window: field = sub-bucket index, value = amount; fields that left it are dropped
  local flat, live, sum, top = redis.call('HGETALL', KEYS[i]), {}, 0, -1
  for j = 1, #flat, 2 do
    local b, v = tonumber(flat[j]), tonumber(flat[j + 1])
    if b <= cur - nb then redis.call('HDEL', KEYS[i], flat[j])
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
local arg = 6 + 2 * n_rate
for i = 1, n_lease do
  -- a lease is a member scored by its expiry: expired ones belonged to replicas that died
  redis.call('ZREMRANGEBYSCORE', KEYS[n_rate + i], '-inf', now)
  held[i] = redis.call('ZCARD', KEYS[n_rate + i])
  if held[i] >= tonumber(ARGV[arg + i]) then ok = false end
end
arg = arg + n_lease
for i = 1, #KEYS - n_rate - n_lease do
  spent[i] = tonumber(redis.call('GET', KEYS[n_rate + n_lease + i]) or '0')
  if spent[i] >= tonumber(ARGV[arg + i]) then ok = false end
end
if ok then
  for i = 1, n_rate do
    local amount = tonumber(ARGV[6 + 2 * i])
    if amount > 0 then
      redis.call('HINCRBY', KEYS[i], cur, amount)
      redis.call('PEXPIRE', KEYS[i], (nb + 1) * bucket_ms)
    end
  end
  for i = 1, n_lease do
    redis.call('ZADD', KEYS[n_rate + i], now + lease_ms, lease_id)
    redis.call('PEXPIRE', KEYS[n_rate + i], lease_ms + 1000)
  end
end
return {ok and 1 or 0, now, cur, used, wait, newest, held, spent}
"""

# KEYS: usage stream, usage-totals hash of the day, token hashes, lease sets, budget counters.
# ARGV is read in order by arg(): see RedisLimiter.settle.
_SETTLE = """
local i = 0
local function arg() i = i + 1; return ARGV[i] end
local nb, bucket_ms, lease_id = tonumber(arg()), tonumber(arg()), arg()
local n_adj, n_lease, n_charge = tonumber(arg()), tonumber(arg()), tonumber(arg())
local t = redis.call('TIME')
local cur = math.floor((tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) / bucket_ms)
local k = 2
for _ = 1, n_adj do
  k = k + 1
  local b, delta = tonumber(arg()), tonumber(arg())
  -- correct the reservation where it was made; once that left the window only an overrun counts
  if b > cur - nb then
    if redis.call('HINCRBY', KEYS[k], b, delta) <= 0 then redis.call('HDEL', KEYS[k], b) end
  elseif delta > 0 then redis.call('HINCRBY', KEYS[k], cur, delta) end
  redis.call('PEXPIRE', KEYS[k], (nb + 1) * bucket_ms)
end
for _ = 1, n_lease do k = k + 1; redis.call('ZREM', KEYS[k], lease_id) end
for _ = 1, n_charge do
  k = k + 1
  local spend, ttl = arg(), tonumber(arg())
  -- integers (nano-USD): INCRBYFLOAT inside a script corrupts Redis 6.2's cached arguments
  redis.call('INCRBY', KEYS[k], spend)
  if ttl > 0 then redis.call('EXPIRE', KEYS[k], ttl) end
end
local ttl, n_totals = tonumber(arg()), tonumber(arg())
for _ = 1, n_totals do redis.call('HINCRBY', KEYS[2], arg(), arg()) end
if n_totals > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
-- last: XADD rewrites its own arguments for replication
local maxlen, n_fields = arg(), tonumber(arg())
if n_fields > 0 then
  local entry = {}
  for j = 1, 2 * n_fields do entry[j] = arg() end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(entry))
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


class RedisLimiter:
    def __init__(self, client: redis.Redis, prefix: str, window: Window, *, tag: str = "limits",
                 stream_max: int = 100_000, totals_ttl_s: int = 400 * 86400) -> None:
        self.client = client
        self.window = window
        self.base = f"{prefix}rl:{{{tag}}}:"
        self.stream_max = stream_max
        self.totals_ttl_s = totals_ttl_s
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)
        self._renew = client.register_script(_RENEW)

    def rate_key(self, rate: Rate) -> str:
        return f"{self.base}{rate.kind[:3]}:{rate.scope}:{rate.name}"

    def lease_key(self, lease: Lease) -> str:
        return f"{self.base}lease:{lease.scope}:{lease.name}"

    def budget_key(self, charge: Charge) -> str:
        b = charge.budget
        return f"{self.base}spent:{charge.period_id}:{b.scope}:{b.name}"

    def totals_key(self, day: str) -> str:
        return f"{self.base}usage:{day or 'none'}"

    async def admit(self, plan: Plan, amounts: list[int], charges: list[Charge],
                    lease_id: str) -> Reply:
        w = self.window
        keys = [self.rate_key(r) for r in plan.rates] + [self.lease_key(x) for x in plan.leases]
        keys += [self.budget_key(c) for c in charges]
        args: list[Any] = [w.buckets, w.bucket_ms, w.lease_ms, lease_id,
                           len(plan.rates), len(plan.leases)]
        for rate, amount in zip(plan.rates, amounts, strict=True):
            args += [rate.limit, amount]
        args += [x.limit for x in plan.leases] + [nano(c.budget.limit_usd) for c in charges]
        ok, now, cur, used, wait, newest, held, spent = await self._admit(keys, args)
        return Reply(bool(ok), int(now), int(cur), tuple(map(int, used)), tuple(map(int, wait)),
                     tuple(map(int, newest)), tuple(map(int, held)), tuple(map(int, spent)))

    async def settle(self, done: Settlement) -> None:
        w = self.window
        keys = [f"{self.base}usage", self.totals_key(done.day)]
        keys += [self.rate_key(rate) for rate, _, _ in done.adjust]
        keys += [self.lease_key(x) for x in done.leases]
        keys += [self.budget_key(c) for c in done.charges]
        args: list[Any] = [w.buckets, w.bucket_ms, done.lease_id,
                           len(done.adjust), len(done.leases), len(done.charges)]
        for _, bucket, delta in done.adjust:
            args += [bucket, delta]
        for c in done.charges:
            args += [c.spend, c.ttl_s or 0]
        args += [self.totals_ttl_s, len(done.totals)]
        for name, count in done.totals.items():
            args += [name, count]
        args += [self.stream_max, len(done.record)]
        for name, value in done.record.items():
            args += [name, value]
        await self._settle(keys, args)

    async def renew(self, leases: tuple[Lease, ...], lease_id: str) -> None:
        if leases:
            await self._renew([self.lease_key(x) for x in leases], [self.window.lease_ms, lease_id])

    async def day_totals(self, days: list[str]) -> list[dict[str, int]]:
        async with self.client.pipeline(transaction=False) as pipe:
            for day in days:
                _ = pipe.hgetall(self.totals_key(day))  # queued; the pipeline returns itself
            raw: list[dict[Any, Any]] = await pipe.execute()
        return [{_text(k): int(v) for k, v in found.items()} for found in raw]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

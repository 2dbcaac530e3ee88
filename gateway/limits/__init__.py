"""Admission and accounting: rate, token, concurrency and budget limits, exact across replicas.

`Governor.admit` checks and reserves every limit of a request in one Redis round trip (one Lua
script, timed by the server's `TIME`); `Governor.settle` reconciles the token reservation with the
real usage, frees the concurrency lease, adds the cost to the budgets and records the usage, in one
more. Requests that ask in the same loop tick share those round trips (each request still
all-or-nothing on its own). Without Redis, `MemoryLimiter` does the same in one process.

Limits: requests and tokens per window (60 s, sliding over 60 sub-buckets, so a window is
exact to 1/60 of its length), concurrent requests (leases that expire after `lease_ttl_s` unless
renewed, so a dead replica's requests free up), and USD budgets per day, ISO week, calendar month
(UTC) or in total. They apply per key (`auth.keys[]`), per project (`limits.projects`) and per model
(`limits.models`, rpm/tpm only).

Keys, all under one Redis Cluster hash tag (`{limits}` by default):

    <prefix>rl:{limits}:req:<scope>:<name>            hash: sub-bucket -> requests
    <prefix>rl:{limits}:tok:<scope>:<name>            hash: sub-bucket -> tokens
    <prefix>rl:{limits}:lease:<scope>:<name>          sorted set: lease id, scored by expiry (ms)
    <prefix>rl:{limits}:spent:<period>:<scope>:<name> nano-USD spent (INCRBY), kept a day past it
    <prefix>rl:{limits}:usage                         stream, one entry per request, MAXLEN ~
    <prefix>rl:{limits}:usage:<YYYY-MM-DD>            hash: usage totals of the UTC day

Why one tag: a project's or a model's limits are shared by every key, and one script must see
the key's, its projects' and the model's counters at once to admit all or nothing. On Redis
Cluster, keys in one script must share a slot (else CROSSSLOT), so every limit key sits in one
slot: atomicity across subjects is bought with the spread of limit traffic over shards (the rest
of the gateway's state still spreads). Budget periods and usage days follow the replica's clock
(UTC); windows and leases follow the Redis server's.
"""

from gateway.config import ModelLimits, ProjectLimits
from gateway.limits.governor import Governor, Ticket
from gateway.limits.headers import QuotaExceededError, TokensRateLimitError, go_duration
from gateway.limits.rules import Subject

__all__ = [
    "Governor",
    "ModelLimits",
    "ProjectLimits",
    "QuotaExceededError",
    "Subject",
    "Ticket",
    "TokensRateLimitError",
    "go_duration",
]

"""Where account-bound items sent back without a chain were made.

A compaction's `compaction` item, and a stateless answer's `reasoning` items with
`encrypted_content`, can be read only by the upstream account that made them. A client that
sends them back as `input` with no `previous_response_id` or `conversation` (the compacted
window, or the Codex CLI's `store: false` turns) names no chain the gateway could follow, so
the gateway keeps, per owner, where each such item was served (by a digest of its sealed
content: ids are optional on input, and stateless clients drop them), and such a request
prefers that account exactly as a chained turn prefers its previous turn's (gateway.affinity).

Only routing rides on it: a store that fails on the lookup leaves the request placed by the
hash, and one that fails on the record leaves the answer as it is.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from hashlib import blake2b
from typing import Any, Final

from gateway.affinity import Binding, pair_of, served
from gateway.errors import GatewayError
from gateway.models import Call
from gateway.store import Json

log = logging.getLogger("gateway.origins")

OnTerminal = Callable[[Json], Awaitable[None]]
_ENDS: Final = 256  # characters of sealed content read from each end
# Records under way by the digest they keep, per event loop (a process runs one; tests run
# many in turn).
_pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary()
)


def _under_way() -> dict[str, asyncio.Task[None]]:
    loop = asyncio.get_running_loop()
    found = _pending.get(loop)
    if found is None:
        found = _pending[loop] = {}
    return found


def sealed(item: Any) -> str | None:
    """The digest an account-bound item is known by: its encrypted content's; None for any
    other item."""
    if not isinstance(item, dict) or item.get("type") not in ("compaction", "reasoning"):
        return None
    content = item.get("encrypted_content")
    if not isinstance(content, str) or not content:
        return None
    if len(content) > 2 * _ENDS:
        # Sealed content is unique at both ends (a random nonce first, a MAC last): its
        # length and ends name it, at a cost that does not grow with its size.
        content = f"{len(content)}:{content[:_ENDS]}:{content[-_ENDS:]}"
    return blake2b(content.encode(), digest_size=16).hexdigest()


async def bind(call: Call) -> None:
    """Stage step for a request without a chain: when its input carries bound items whose
    origin is known, prefer the (last) one's account; items bound elsewhere are left out
    where the request must go elsewhere."""
    items, key = call.body.get("input"), call.principal
    if key is None or key.zdr or not isinstance(items, list):
        return  # a zero-data-retention key's answers are never recorded
    digests = [sealed(item) for item in items]
    wanted = list(dict.fromkeys(d for d in digests if d is not None))
    if not wanted:
        return
    started = _under_way()
    landing = {started[d] for d in wanted if d in started}
    if landing:
        # This process's records of these items (an answer that went out a moment ago) land
        # first: each is one store round trip, bounded by the store's timeout.
        await asyncio.wait(landing)
    try:
        found = await call.deps.store.get_origins(key.owner, wanted)
    except GatewayError as exc:  # counted by the store as gateway_redis_errors_total
        log.warning(
            "origins of the input's bound items not read, routed by hash: %s",
            exc.message,
            extra={"request_id": call.request_id},
        )
        return
    if not found:
        return
    binding = Binding()
    for digest in digests:
        record = found.get(digest) if digest is not None else None
        origin = pair_of(record)
        binding.add(1, origin)
        if origin is not None and record is not None:
            binding.prefer, binding.prefer_model = origin, record.get("model")
    binding.full = items
    call.binding = binding


def record(call: Call, response: Json | None) -> None:
    """Keep where the answer's bound items were made, without holding the answer for it."""
    key, target, account = call.principal, call.target, call.account
    if response is None or key is None or key.zdr or target is None or account is None:
        return
    output = response.get("output")
    if not isinstance(output, list):
        return
    digests = [d for d in map(sealed, output) if d is not None]
    if not digests:
        return
    origin = served(target.provider.name, account.name, target.model)
    task = asyncio.create_task(
        _put(call, {d: origin for d in digests}, call.deps.settings.store.response_ttl_s)
    )
    started = _under_way()
    for digest in digests:
        started[digest] = task

    def landed(done: asyncio.Task[None]) -> None:
        for digest in digests:
            if started.get(digest) is done:
                del started[digest]

    task.add_done_callback(landed)


async def _put(call: Call, origins: dict[str, Json], ttl_s: int) -> None:
    assert call.principal is not None
    try:
        await call.deps.store.put_origins(call.principal.owner, origins, ttl_s)
    except GatewayError as exc:  # counted by the store as gateway_redis_errors_total
        log.warning(
            "origins of the answer's bound items not kept: %s",
            exc.message,
            extra={"request_id": call.request_id},
        )


def on_terminal(call: Call, then: OnTerminal | None) -> OnTerminal | None:
    """A stream's final-response step: a stateless answer's bound items recorded, then
    `then` (the save of a stored one)."""
    if call.store:
        return then

    async def recorded(final: Json) -> None:
        record(call, final)
        if then is not None:
            await then(final)

    return recorded


def pending() -> int:
    """How many records are under way."""
    return len(set(_under_way().values()))


async def flush() -> None:
    """Wait for the records under way (on shutdown, and in tests)."""
    started = _under_way()
    while started:
        await asyncio.gather(*set(started.values()), return_exceptions=True)

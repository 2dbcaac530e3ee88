"""One WebSocket connection's view of the store: the shared store, plus the responses made on
the connection that were not stored (`store: false`), kept in its memory while it is open."""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from gateway.store import Json, Page, Store

# A connection remembers at most this many unstored responses; the oldest go first (a chain
# that reaches back past them is answered as one whose ancestors expired).
MAX_REMEMBERED: Final = 1000


class ConnectionStore:
    """Store for one connection: reads of responses see its remembered ones first; everything
    else (and every write) is the shared store's, so nothing remembered is ever retrievable
    through another request."""

    def __init__(self, shared: Store, limit: int = MAX_REMEMBERED) -> None:
        self.shared = shared
        self._limit = limit
        self._remembered: OrderedDict[str, Json] = OrderedDict()

    def __len__(self) -> int:
        return len(self._remembered)

    def remember(self, response_id: str, record: Json) -> None:
        self._remembered[response_id] = record
        self._remembered.move_to_end(response_id)
        while len(self._remembered) > self._limit:
            self._remembered.popitem(last=False)

    async def ping(self) -> None:
        await self.shared.ping()

    async def check_writable(self, suspect: bool = False) -> None:
        await self.shared.check_writable(suspect)

    async def put_response(self, response_id: str, record: Json, ttl_s: int) -> bool:
        if response_id in self._remembered:
            return False  # the id is taken on this connection: never overwritten
        return await self.shared.put_response(response_id, record, ttl_s)

    async def get_responses(self, owner: str, response_ids: list[str]) -> list[Json | None]:
        found: list[Json | None] = []
        for rid in response_ids:
            record = self._remembered.get(rid)
            found.append(record if record is not None and record.get("owner") == owner else None)
        missing = [rid for rid, r in zip(response_ids, found, strict=True) if r is None]
        if not missing:
            return found
        shared = iter(await self.shared.get_responses(owner, missing))
        return [r if r is not None else next(shared) for r in found]

    async def delete_response(self, owner: str, response_id: str) -> bool:
        return await self.shared.delete_response(owner, response_id)

    async def put_conversation(self, conv_id: str, record: Json, ttl_s: int) -> None:
        await self.shared.put_conversation(conv_id, record, ttl_s)

    async def get_conversation(self, owner: str, conv_id: str) -> Json | None:
        return await self.shared.get_conversation(owner, conv_id)

    async def delete_conversation(self, owner: str, conv_id: str) -> bool:
        return await self.shared.delete_conversation(owner, conv_id)

    async def add_items(
        self, owner: str, conv_id: str, items: list[Json], ttl_s: int, max_items: int
    ) -> bool:
        return await self.shared.add_items(owner, conv_id, items, ttl_s, max_items)

    async def list_items(
        self, owner: str, conv_id: str, *, after: str | None, limit: int, desc: bool
    ) -> Page | None:
        return await self.shared.list_items(owner, conv_id, after=after, limit=limit, desc=desc)

    async def all_items(self, owner: str, conv_id: str) -> list[Json] | None:
        return await self.shared.all_items(owner, conv_id)

    async def get_item(self, owner: str, conv_id: str, item_id: str) -> Json | None:
        return await self.shared.get_item(owner, conv_id, item_id)

    async def delete_item(self, owner: str, conv_id: str, item_id: str) -> bool:
        return await self.shared.delete_item(owner, conv_id, item_id)

    async def get_served(self, owner: str, conv_id: str) -> Json | None:
        return await self.shared.get_served(owner, conv_id)

    async def set_served(self, owner: str, conv_id: str, served: Json) -> None:
        await self.shared.set_served(owner, conv_id, served)

    async def put_origins(self, owner: str, origins: dict[str, Json], ttl_s: int) -> None:
        await self.shared.put_origins(owner, origins, ttl_s)

    async def get_origins(self, owner: str, digests: list[str]) -> dict[str, Json]:
        return await self.shared.get_origins(owner, digests)

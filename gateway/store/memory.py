"""MemoryStore: the shared state in this process's memory, for a laptop or a single pod."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.store import Json, Page, page_of


@dataclass(slots=True)
class _Conversation:
    owner: str
    record: Json
    expires: float
    items: dict[str, Json] = field(default_factory=dict)  # insertion order is the order
    served: Json | None = None  # where its last turn was served


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._responses: dict[str, tuple[float, Json]] = {}
        self._conversations: dict[str, _Conversation] = {}
        self._origins: dict[tuple[str, str], tuple[float, Json]] = {}

    async def ping(self) -> None:
        return None

    async def check_writable(self, suspect: bool = False) -> None:
        return None

    async def put_response(self, response_id: str, record: Json, ttl_s: int) -> bool:
        found = self._live(response_id)
        if found is not None:
            return found == record  # the same record again (a retried save) is kept
        self._responses[response_id] = (self.clock() + ttl_s, record)
        return True

    def replace_response(self, response_id: str, record: Json, ttl_s: int) -> None:
        """A job's own record, rewritten as the job moves on (jobs mint their ids)."""
        self._responses[response_id] = (self.clock() + ttl_s, record)

    async def get_responses(self, owner: str, response_ids: list[str]) -> list[Json | None]:
        return [self._response(owner, rid) for rid in response_ids]

    def _response(self, owner: str, response_id: str) -> Json | None:
        record = self._live(response_id)
        return record if record is not None and record["owner"] == owner else None

    def _live(self, response_id: str) -> Json | None:
        """The record under this id, whoever owns it, unless it has expired."""
        found = self._responses.get(response_id)
        if found is None:
            return None
        expires, record = found
        if expires <= self.clock():
            del self._responses[response_id]
            return None
        return record

    async def delete_response(self, owner: str, response_id: str) -> bool:
        if self._response(owner, response_id) is None:
            return False
        del self._responses[response_id]
        return True

    async def put_conversation(self, conv_id: str, record: Json, ttl_s: int) -> None:
        conv = self._conversations.get(conv_id)
        if conv is None:
            self._conversations[conv_id] = _Conversation(
                record["owner"], record, self.clock() + ttl_s
            )
        else:
            conv.record, conv.expires = record, self.clock() + ttl_s

    def _conv(self, owner: str, conv_id: str) -> _Conversation | None:
        conv = self._conversations.get(conv_id)
        if conv is None:
            return None
        if conv.expires <= self.clock():
            del self._conversations[conv_id]
            return None
        return conv if conv.owner == owner else None

    async def get_conversation(self, owner: str, conv_id: str) -> Json | None:
        conv = self._conv(owner, conv_id)
        return conv.record if conv else None

    async def delete_conversation(self, owner: str, conv_id: str) -> bool:
        if self._conv(owner, conv_id) is None:
            return False
        del self._conversations[conv_id]
        return True

    async def add_items(
        self, owner: str, conv_id: str, items: list[Json], ttl_s: int, max_items: int
    ) -> bool:
        conv = self._conv(owner, conv_id)
        if conv is None or len(conv.items) + len(items) > max_items:
            return False
        for item in items:
            conv.items[item["id"]] = item
        conv.expires = self.clock() + ttl_s
        return True

    async def list_items(
        self, owner: str, conv_id: str, *, after: str | None, limit: int, desc: bool
    ) -> Page | None:
        conv = self._conv(owner, conv_id)
        if conv is None:
            return None
        return page_of(list(conv.items.values()), after=after, limit=limit, desc=desc)

    async def all_items(self, owner: str, conv_id: str) -> list[Json] | None:
        conv = self._conv(owner, conv_id)
        return list(conv.items.values()) if conv else None

    async def get_item(self, owner: str, conv_id: str, item_id: str) -> Json | None:
        conv = self._conv(owner, conv_id)
        return conv.items.get(item_id) if conv else None

    async def delete_item(self, owner: str, conv_id: str, item_id: str) -> bool:
        conv = self._conv(owner, conv_id)
        return conv is not None and conv.items.pop(item_id, None) is not None

    async def get_served(self, owner: str, conv_id: str) -> Json | None:
        conv = self._conv(owner, conv_id)
        return conv.served if conv else None

    async def set_served(self, owner: str, conv_id: str, served: Json) -> None:
        conv = self._conv(owner, conv_id)
        if conv is not None:
            conv.served = served

    async def put_origins(self, owner: str, origins: dict[str, Json], ttl_s: int) -> None:
        expires = self.clock() + ttl_s
        for digest, origin in origins.items():
            self._origins[(owner, digest)] = (expires, origin)

    async def get_origins(self, owner: str, digests: list[str]) -> dict[str, Json]:
        now, found = self.clock(), {}
        for digest in digests:
            kept = self._origins.get((owner, digest))
            if kept is None:
                continue
            if kept[0] <= now:
                del self._origins[(owner, digest)]
                continue
            found[digest] = kept[1]
        return found

"""The shared state's interface (Store): in Redis, or in memory for one process (see
gateway.backends for which).

Records are plain JSON-able dicts; every one carries its owner, and a lookup by another owner
answers exactly as a missing record does (None / False).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Json]
    has_more: bool


class Store(Protocol):
    async def ping(self) -> None:
        """Raise ServiceUnavailableError when the store cannot be reached."""

    async def check_writable(self, suspect: bool = False) -> None:
        """Raise ServiceUnavailableError when a call failed lately (or `suspect`) and a write
        fails now."""

    # Stored responses: {"owner", "response", "input": [items], "chain": [ancestor ids],
    # "served": {"provider", "account", "model"}} ("served" absent in older records).
    async def put_response(self, response_id: str, record: Json, ttl_s: int) -> bool:
        """Keep a new record; False, and nothing written, when the id is already kept (by
        any owner): a stored response is never overwritten."""

    async def get_responses(self, owner: str, response_ids: list[str]) -> list[Json | None]: ...

    async def delete_response(self, owner: str, response_id: str) -> bool: ...

    # Conversations: {"owner", "conversation": {...}}, and their items in order.
    async def put_conversation(self, conv_id: str, record: Json, ttl_s: int) -> None: ...

    async def get_conversation(self, owner: str, conv_id: str) -> Json | None: ...

    async def delete_conversation(self, owner: str, conv_id: str) -> bool: ...

    async def add_items(
        self, owner: str, conv_id: str, items: list[Json], ttl_s: int, max_items: int
    ) -> bool:
        """Append; False when the conversation is missing or would grow past max_items."""

    async def list_items(
        self, owner: str, conv_id: str, *, after: str | None, limit: int, desc: bool
    ) -> Page | None: ...

    async def all_items(self, owner: str, conv_id: str) -> list[Json] | None: ...

    async def get_item(self, owner: str, conv_id: str, item_id: str) -> Json | None: ...

    async def delete_item(self, owner: str, conv_id: str, item_id: str) -> bool: ...

    # Where a conversation's last turn was served (gateway.affinity): None when unknown.
    async def get_served(self, owner: str, conv_id: str) -> Json | None: ...

    async def set_served(self, owner: str, conv_id: str, served: Json) -> None:
        """Keep it with the conversation, if the conversation is there and the owner's."""

    # Where account-bound items (compaction, encrypted reasoning) were made, by a digest of
    # their sealed content, per owner: {digest: {"provider", "account", "model"}}.
    async def put_origins(self, owner: str, origins: dict[str, Json], ttl_s: int) -> None: ...

    async def get_origins(self, owner: str, digests: list[str]) -> dict[str, Json]:
        """The origins kept for these digests (by this owner); unknown ones are left out."""


def page_of(ordered: list[Json], *, after: str | None, limit: int, desc: bool) -> Page:
    """One page of items, in the order asked, starting after the item with id `after`."""
    items = list(reversed(ordered)) if desc else ordered
    if after is not None:
        for i, item in enumerate(items):
            if item.get("id") == after:
                items = items[i + 1 :]
                break
        else:
            items = []
    return Page(items[:limit], len(items) > limit)

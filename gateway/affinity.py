"""Routing affinity: where a request goes when it continues earlier work, or shares a prompt.

A chained request (`previous_response_id`, `conversation`) prefers the provider account that
served its previous turn (its `Binding.prefer`). When it must go elsewhere, the context items
bound to the account that made them (reasoning and compaction items, whose encrypted content
only that account can read) are left out, and the other items it made lose their ids (ids that
mean something only there). Any other request is placed by a consistent hash (rendezvous,
weighted) of its key and its prompt cache key, or its instructions and tools, so that one
prompt keeps hitting one account's cache.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, Final, TypeVar

import orjson

Json = dict[str, Any]
Pair = tuple[str, str]  # (provider name, account name)
P = TypeVar("P")

HEADER: Final = "x-gateway-affinity"
SWITCHED: Final = "switched"
# The origin of items known to come from somewhere other than where they are kept now.
ELSEWHERE: Final[Pair] = ("", "")
_MASK: Final = (1 << 64) - 1
_PAIR_HASHES: dict[tuple[str, str, str], int] = {}
_PAIR_HASHES_MAX: Final = 4096
_UNIT: Final = 2.0**-53


def is_bound(item: Json) -> bool:
    """An item only the account that made it can use: reasoning (its encrypted content, or
    else its id) and compaction items."""
    return item.get("type") in ("reasoning", "compaction")


def served(provider: str, account: str, model: str) -> Json:
    """What a stored response or conversation keeps of where its turn was served."""
    return {"provider": provider, "account": account, "model": model}


def pair_of(record: Any) -> Pair | None:
    """The (provider, account) a stored `served` names; None for records kept without one."""
    if not isinstance(record, dict):
        return None
    provider, account = record.get("provider"), record.get("account")
    if isinstance(provider, str) and isinstance(account, str):
        return (provider, account)
    return None


@dataclass(slots=True)
class Binding:
    """A chained request's ties to where its context was made.

    `runs` gives the origin of the context items at the head of the request's `input`, as
    (count, origin) runs in order; an origin of None is unknown (kept before affinity was
    recorded) and such items are sent anywhere as they are.
    """

    prefer: Pair | None = None
    prefer_model: str | None = None
    runs: list[tuple[int, Pair | None]] = field(default_factory=list)
    full: list[Json] | None = None  # the input with every context item
    sent: list[Json] | None = None  # the input the last attempt sent
    conversation_served: Json | None = None  # the conversation's record, as loaded
    conversation_bound: list[str] = field(default_factory=list)  # its bound items' ids

    def add(self, count: int, origin: Pair | None) -> None:
        if count <= 0:
            return
        if self.runs and self.runs[-1][1] == origin:
            self.runs[-1] = (self.runs[-1][0] + count, origin)
        else:
            self.runs.append((count, origin))

    def switched(self, pair: Pair) -> bool:
        return self.prefer is not None and pair != self.prefer

    def input_for(self, pair: Pair) -> list[Json] | None:
        """The input to send to `pair`: None when the full input may go as it is."""
        full = self.full
        if full is None or all(o is None or o == pair for _, o in self.runs):
            return None
        out: list[Json] = []
        start = 0
        for count, origin in self.runs:
            chunk = full[start : start + count]
            start += count
            if origin is None or origin == pair:
                out += chunk
                continue
            for item in chunk:
                if is_bound(item):
                    continue
                # An item_reference's id is all it says: it goes as it is.
                if "id" in item and item.get("type") != "item_reference":
                    item = {k: v for k, v in item.items() if k != "id"}
                out.append(item)
        out += full[start:]
        return out

    def conversation_update(self, pair: Pair, model: str) -> Json | None:
        """The conversation's new `served` record after a turn served at `pair`; None when
        it stays as it is."""
        old = self.conversation_served
        if pair_of(old) == pair:
            return None
        foreign = self.conversation_bound if old is not None else []
        return {**served(pair[0], pair[1], model), "foreign": foreign}

    def saved(self) -> Json:
        """As a background job keeps it."""
        return {
            "prefer": list(self.prefer) if self.prefer else None,
            "prefer_model": self.prefer_model,
            "runs": [[n, list(o) if o else None] for n, o in self.runs],
            "conversation_served": self.conversation_served,
            "conversation_bound": self.conversation_bound,
        }

    @classmethod
    def restored(cls, saved: Json, full: Any) -> Binding:
        prefer = saved.get("prefer")
        return cls(
            prefer=(prefer[0], prefer[1]) if prefer else None,
            prefer_model=saved.get("prefer_model"),
            runs=[(int(n), (o[0], o[1]) if o else None) for n, o in saved.get("runs", [])],
            full=full if isinstance(full, list) else None,
            conversation_served=saved.get("conversation_served"),
            conversation_bound=list(saved.get("conversation_bound", [])),
        )


def conversation_origins(binding: Binding, items: list[Json], record: Json | None) -> None:
    """Origins of a conversation's items: where it was last served, except the bound items
    recorded as made elsewhere."""
    binding.conversation_served = record
    binding.conversation_bound = [str(i.get("id")) for i in items if is_bound(i)]
    pair = pair_of(record)
    if pair is None:
        binding.add(len(items), None)
        return
    binding.prefer = pair
    binding.prefer_model = record.get("model") if record else None
    foreign = set(record.get("foreign") or ()) if record else set()
    for item in items:
        binding.add(1, ELSEWHERE if foreign and item.get("id") in foreign else pair)


class Affinity:
    """One request's routing preferences: the pair its chain prefers, then a stable place for
    its prompt among the healthy pairs (the digest is made only when there is a choice)."""

    __slots__ = ("_digest", "_digested", "binding", "body", "key_id")

    def __init__(self, key_id: str, body: Json, binding: Binding | None) -> None:
        self.key_id = key_id
        self.body = body
        self.binding = binding
        self._digest: int | None = None
        self._digested = False

    @property
    def prefer(self) -> Pair | None:
        return self.binding.prefer if self.binding is not None else None

    def switched(self, pair: Pair) -> bool:
        return self.binding is not None and self.binding.switched(pair)

    def digest(self) -> int | None:
        """The request's place on the hash ring: its key with its prompt cache key, or else
        its instructions and tools; None when it has none of those (placed by weight alone)."""
        if not self._digested:
            self._digested = True
            self._digest = prompt_digest(self.key_id, self.body)
        return self._digest


def prompt_digest(key_id: str, body: Json) -> int | None:
    h = blake2b(key_id.encode(), digest_size=8)
    cache_key = body.get("prompt_cache_key")
    if isinstance(cache_key, str) and cache_key:
        h.update(b"\0k\0" + cache_key.encode())
    else:
        instructions, tools = body.get("instructions"), body.get("tools")
        if not instructions and not tools:
            return None
        # A string's own bytes: only a list of input items needs serialising.
        text = instructions if isinstance(instructions, str) else orjson.dumps(instructions)
        h.update(b"\0p\0")
        h.update(text.encode() if isinstance(text, str) else text)
        h.update(b"\0" + orjson.dumps(tools) if tools else b"\0")
    return int.from_bytes(h.digest(), "little")


def _pair_hash(provider: str, model: str, account: str) -> int:
    """A hash of a pair that every process agrees on (str hashes are seeded per process)."""
    ident = (provider, model, account)
    found = _PAIR_HASHES.get(ident)
    if found is None:
        if len(_PAIR_HASHES) >= _PAIR_HASHES_MAX:  # `provider/<any model>` names are unbounded
            _PAIR_HASHES.clear()
        raw = blake2b("\0".join(ident).encode(), digest_size=8).digest()
        found = _PAIR_HASHES[ident] = int.from_bytes(raw, "little")
    return found


def rendezvous(
    choices: Sequence[P],
    idents: Sequence[tuple[str, str, str]],
    weights: Sequence[float],
    digest: int,
) -> P:
    """Weighted rendezvous (highest random weight) hashing: each choice scores
    -weight / ln(u), u uniform from the hash of (digest, choice); the highest wins. A choice
    wins with probability weight / total, and removing one moves only the digests it won."""
    best, best_score = 0, -1.0
    log, known = math.log, _PAIR_HASHES
    for i, ident in enumerate(idents):
        x = (known.get(ident) or _pair_hash(*ident)) ^ digest
        # splitmix64's finaliser, inline (it runs per pair on every placed request).
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        x ^= x >> 31
        score = -weights[i] / log(((x >> 11) + 0.5) * _UNIT)
        if score > best_score:
            best, best_score = i, score
    return choices[best]


def weighted(choices: Sequence[P], weights: Sequence[float]) -> P:
    return choices[0] if len(choices) == 1 else random.choices(choices, weights)[0]

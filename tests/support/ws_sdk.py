"""WebSocket-mode helpers: read one response's events off an SDK connection."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from openai.types.responses import Response

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


async def response_events(socket: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """One response's events off a raw socket, through its terminal (or error) event."""
    events: list[dict[str, Any]] = []
    while True:
        event: dict[str, Any] = await socket.receive_json(timeout=10)
        events.append(event)
        if event["type"] in (*TERMINAL, "error"):
            return events


# The test client's own library logs its handshake headers (the key included) at DEBUG; the
# gateway never sees that logger, the log guard would.
logging.getLogger("websockets").setLevel(logging.INFO)


@dataclass
class Turn:
    events: list[Any] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def sequence(self) -> list[int]:
        return [e.sequence_number for e in self.events]

    @property
    def response(self) -> Response:
        response: Response = self.events[-1].response
        return response


async def next_turn(socket: Any) -> Turn:
    """The events of the next response, through its terminal event; an `error` event raises."""
    turn = Turn()
    async for event in socket:
        if event.type == "error":
            raise AssertionError(f"error event: {event}")
        turn.events.append(event)
        if event.type in TERMINAL:
            return turn
    raise AssertionError(f"the socket closed after {turn.types}")

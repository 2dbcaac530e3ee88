"""The built-in `mock` provider: a deterministic fake model served in-process (demos, tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from gateway.config import Account, ProviderSettings
from gateway.mockgen import build_response
from gateway.providers.base import Reply, UpstreamRequest
from gateway.streaming.sse import encode_event


class MockProvider:
    def __init__(self, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self.delay_s = settings.token_delay_ms / 1000

    async def close(self) -> None:
        return None

    @asynccontextmanager
    async def send(self, request: UpstreamRequest, account: Account) -> AsyncIterator[Reply]:
        run = build_response(request.body, model=request.model)
        if request.stream:
            yield Reply(200, chunks=self._stream(run.events()))
        else:
            yield Reply(200, body=orjson.dumps(run.response))

    async def _stream(self, events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        for event in events:
            if self.delay_s and event["type"].endswith(".delta"):
                await asyncio.sleep(self.delay_s)
            yield encode_event(orjson.dumps(event), event["type"])

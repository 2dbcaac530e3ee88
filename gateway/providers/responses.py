"""Pass-through to anything that speaks POST /v1/responses (OpenAI, Azure OpenAI v1, vLLM)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson

from gateway.config import Account
from gateway.providers.base import (
    UPSTREAM_ERRORS,
    HTTPProvider,
    Reply,
    auth_headers,
    upstream_failure,
)

if TYPE_CHECKING:
    from gateway.models import Call, Target

# Client headers that may travel upstream; everything else (Authorization first) stays here.
FORWARDED_HEADERS = ("traceparent", "tracestate", "openai-beta")
# aiohttp warns that bodies above 1 MiB given as bytes block the loop; BytesIO streams them.
LARGE_BODY = 1024 * 1024


class ResponsesProvider(HTTPProvider):
    path = "/responses"
    forwarded = FORWARDED_HEADERS

    @asynccontextmanager
    async def send(self, call: Call, target: Target, account: Account) -> AsyncIterator[Reply]:
        url = self.settings.base_url + self.path
        body = call.upstream_body()
        try:
            resp = await self.session.post(
                url,
                data=body if len(body) < LARGE_BODY else io.BytesIO(body),
                headers=self.headers(call, account),
            )
        except UPSTREAM_ERRORS as exc:
            raise upstream_failure(exc, self.name) from exc
        try:
            streaming = (
                call.stream and resp.status == 200 and (resp.content_type == "text/event-stream")
            )
            if streaming:
                yield Reply(200, chunks=resp.content.iter_any(), headers=resp.headers)
            else:
                try:
                    body = await resp.read()
                except UPSTREAM_ERRORS as exc:
                    raise upstream_failure(exc, self.name) from exc
                yield Reply(resp.status, body=body, headers=resp.headers)
        finally:
            # Closes the connection instead of pooling it when the body was not read to the end,
            # which is how a client that left hangs up on the upstream.
            resp.release()

    async def count_tokens(self, body: dict[str, Any], model: str, account: Account) -> int | None:
        """The upstream's own count (POST /responses/input_tokens), or None when it has none."""
        headers = {"Content-Type": "application/json", **auth_headers(account, self.settings)}
        url = self.settings.base_url + "/responses/input_tokens"
        try:
            async with self.session.post(
                url, data=orjson.dumps({**body, "model": model}), headers=headers
            ) as resp:
                if resp.status != 200:
                    return None
                counted = orjson.loads(await resp.read())
        except (*UPSTREAM_ERRORS, orjson.JSONDecodeError):
            return None
        tokens = counted.get("input_tokens") if isinstance(counted, dict) else None
        return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None

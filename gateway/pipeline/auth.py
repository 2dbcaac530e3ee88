"""authenticate: the bearer key to the caller's KeySettings, or a 401."""

from __future__ import annotations

from gateway.models import Call


async def authenticate(call: Call) -> None:
    call.principal = await call.deps.keys.authenticate(call.headers.get("Authorization"))

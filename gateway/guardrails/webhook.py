"""A guardrail's external check: OpenAI's moderation request and answer shapes over HTTP."""

from __future__ import annotations

import logging

import aiohttp
import orjson

from gateway.errors import ServiceUnavailableError
from gateway.guardrails.rules import Webhook

log = logging.getLogger("gateway.guardrails")


async def flagged(hook: Webhook, texts: list[str], what: str = "request") -> list[int]:
    """Which texts the moderation endpoint flagged; on its failure, as `on_error` says."""
    if not texts:
        return []
    settings = hook.settings
    payload = orjson.dumps({"input": texts})
    try:
        timeout = aiohttp.ClientTimeout(total=settings.timeout_ms / 1000)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(
                settings.url, data=payload, headers={"Content-Type": "application/json"}
            ) as answer,
        ):
            raw = await answer.read()
            if answer.status >= 300:
                raise ValueError(f"status {answer.status}")
        results = orjson.loads(raw)["results"]
        if not isinstance(results, list) or len(results) != len(texts):
            raise ValueError("results do not match the input")
        return [i for i, r in enumerate(results) if isinstance(r, dict) and r.get("flagged")]
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        log.warning("guardrail %s: the moderation endpoint failed (%s)", hook.rule, reason)
        if settings.on_error == "closed":
            raise ServiceUnavailableError(
                f"The guardrail '{hook.rule}' could not check the {what}; try again.",
                code="guardrail_unavailable",
            ) from None
        return []

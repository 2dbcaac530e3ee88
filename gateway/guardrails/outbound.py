"""The output side: a JSON answer redacted (or cut short), a stream filtered, and the
`x-gateway-guardrails` header naming the rules that matched."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from gateway.config.sections import Settings
from gateway.guardrails.guard import HEADER, Guard
from gateway.guardrails.rules import guardrails_of
from gateway.guardrails.stream import CONTENT_FILTER, filtered, redact_whole
from gateway.providers.base import Reply


def guard_reply(guard: Guard, reply: Reply, headers: dict[str, str]) -> Reply:
    """The upstream's answer as the client may see it. A stream's header names the rules its
    input matched (its output is not known yet); a JSON answer's names every rule."""
    if guard.policy.output:
        if reply.chunks is not None:
            reply = dataclasses.replace(reply, chunks=filtered(reply.chunks, guard))
        elif reply.status < 300:
            reply = dataclasses.replace(reply, body=guard_answer(guard, reply.body))
    if guard.hits:
        headers[HEADER] = guard.names
    return reply


def job_guard(settings: Settings, names: list[str] | None) -> Guard | None:
    """A background job's guardrails: the rules its submission was admitted under."""
    guardrails = guardrails_of(settings) if names else None
    policy = guardrails.of(names) if guardrails is not None and names else None
    return Guard(policy) if policy is not None else None


def guard_answer(guard: Guard, body: bytes) -> bytes:
    """A Response's output text redacted; a block makes it `incomplete` (content_filter),
    its text ending where the match began."""
    try:
        response = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # the caller answers that the upstream sent invalid JSON
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        return body
    output: list[Any] = response["output"]
    changed = False
    for i, item in enumerate(output):
        content = item.get("content") if isinstance(item, dict) else None
        if item.get("type") != "message" or not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            text = part.get("text") if isinstance(part, dict) else None
            if part.get("type") != "output_text" or not isinstance(text, str):
                continue
            new, blocked_at = redact_whole(guard.policy.output, guard, text)
            if new != text:
                part["text"] = new
                changed = True
            if blocked_at is not None:
                del content[j + 1 :]
                del output[i + 1 :]
                item["status"] = "incomplete"
                response.update(status="incomplete", incomplete_details=CONTENT_FILTER)
                if "output_text" in response:
                    response["output_text"] = _text(output)
                return orjson.dumps(response)
    if not changed:
        return body
    if "output_text" in response:
        response["output_text"] = _text(output)
    return orjson.dumps(response)


def _text(output: list[Any]) -> str:
    return "".join(
        p["text"]
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for p in item.get("content") or ()
        if isinstance(p, dict) and p.get("type") == "output_text" and isinstance(p.get("text"), str)
    )

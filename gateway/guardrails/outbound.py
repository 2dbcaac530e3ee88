"""The output side: a JSON answer redacted (or cut short), a stream filtered, and the
`x-gateway-guardrails` header naming the rules that matched."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.guardrails.guard import HEADER, Guard
from gateway.guardrails.rules import BLOCK, REDACT, Guardrails
from gateway.guardrails.stream import CONTENT_FILTER, filtered, redact_whole
from gateway.guardrails.webhook import flagged
from gateway.limits.usage import Usage
from gateway.providers.base import Reply

Slot = tuple[int, int, dict[str, Any]]  # output index, content index, the output_text part


async def guard_reply(guard: Guard, reply: Reply, headers: dict[str, str]) -> Reply:
    """The upstream's answer as the client may see it. A stream's header names the rules its
    input matched (its output is not known yet); a JSON answer's names every rule."""
    policy = guard.policy
    if reply.chunks is not None:
        if policy.output:
            reply = dataclasses.replace(reply, chunks=filtered(reply.chunks, guard))
    elif reply.status < 300 and (policy.output or policy.output_webhooks):
        reply = dataclasses.replace(reply, body=await guard_answer(guard, reply.body))
    if guard.hits:
        headers[HEADER] = guard.names
    return reply


def job_guard(guardrails: Guardrails | None, names: list[str] | None) -> Guard | None:
    """A background job's guardrails: the rules its submission was admitted under."""
    policy = guardrails.of(names) if guardrails is not None and names else None
    return Guard(policy) if policy is not None else None


async def guard_answer(guard: Guard, body: bytes) -> bytes:
    """A Response's output text redacted; a block makes it `incomplete` (content_filter),
    its text ending where the match began (a webhook's: the flagged text left out)."""
    try:
        response = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # the caller answers that the upstream sent invalid JSON
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        return body
    slots = _text_parts(response["output"])
    changed = False
    if guard.policy.output:
        for i, j, part in slots:
            new, blocked_at = redact_whole(guard.policy.output, guard, part["text"])
            if new != part["text"]:
                part["text"] = new
                changed = True
            if blocked_at is not None:
                return _cut(response, i, j)
    if guard.policy.output_webhooks:
        cut, replaced = await _moderated(guard, response, slots)
        if cut is not None:
            return _cut(response, *cut)
        changed = changed or replaced
    if not changed:
        return body
    if "output_text" in response:
        response["output_text"] = _text(response["output"])
    return orjson.dumps(response)


async def _moderated(
    guard: Guard, response: dict[str, Any], slots: list[Slot]
) -> tuple[tuple[int, int] | None, bool]:
    """The output texts through the rules' webhooks: where a flagged text was blocked (its
    part left out), and whether a text was replaced. A check that failed, closed, withholds
    the answer (503), and what it used upstream is charged."""
    texts = [part["text"] for _, _, part in slots]
    hooks = guard.policy.output_webhooks
    try:
        results = await asyncio.gather(*(flagged(hook, texts, "answer") for hook in hooks))
    except GatewayError:
        guard.withheld = Usage.from_response(response)
        raise
    replaced = False
    for hook, found in zip(hooks, results, strict=True):
        for k in found:
            guard.hit(hook.rule, hook.action)
            i, j, part = slots[k]
            if hook.action == BLOCK:
                part["text"] = ""
                return (i, j), True
            if hook.action == REDACT:
                part["text"] = f"[REDACTED:{hook.rule}]"
                replaced = True
    return None, replaced


def _text_parts(output: list[Any]) -> list[Slot]:
    return [
        (i, j, part)
        for i, item in enumerate(output)
        if isinstance(item, dict) and item.get("type") == "message"
        for j, part in enumerate(item.get("content") or ())
        if isinstance(part, dict)
        and part.get("type") == "output_text"
        and isinstance(part.get("text"), str)
    ]


def _cut(response: dict[str, Any], i: int, j: int) -> bytes:
    """The answer ended at output item i, part j: incomplete, for its content."""
    output = response["output"]
    del output[i + 1 :]
    del output[i]["content"][j + 1 :]
    output[i]["status"] = "incomplete"
    response.update(status="incomplete", incomplete_details=CONTENT_FILTER)
    if "output_text" in response:
        response["output_text"] = _text(output)
    return orjson.dumps(response)


def _text(output: list[Any]) -> str:
    return "".join(part["text"] for _, _, part in _text_parts(output))

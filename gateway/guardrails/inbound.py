"""The input side: decide a call's guardrails once, then scan every text the upstream reads.

Runs as the last create stage, after the stored context of a chain or conversation has been
put into `input`: that context is read by the upstream too. What is kept as the request's
input (`call.input_items`) is redacted the same way, so no matched text is stored.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from gateway.codec import loads
from gateway.errors import InvalidRequestError
from gateway.guardrails.guard import HEADER, Guard
from gateway.guardrails.rules import BLOCK, REDACT, Policy, redacted
from gateway.guardrails.webhook import flagged
from gateway.models import Call

# The fields of input items (of every kind) and their content parts that hold text.
_TEXT_KEYS: Final = frozenset({"text", "content", "output", "arguments"})
Path = tuple[str | int, ...]


async def guard_input(call: Call) -> None:
    """Stage: the call's guardrails, decided here once; its input redacted, or refused."""
    guardrails = call.deps.guardrails
    if guardrails is None:
        return
    key = call.principal
    assert key is not None
    if call.ticket is not None:
        projects = call.ticket.subject.projects
    else:
        projects = (key.project,) if key.project else ()
    policy = guardrails.policy(key.id, projects, call.route.name if call.route else call.model)
    if policy is None:
        return
    guard = call.guard = Guard(policy)
    if not policy.input and not policy.webhooks:
        return
    body = call.body
    slots = text_slots(body, ("instructions", "input"))
    changed = False
    replaced: dict[str, str] = {}  # a webhook's: the whole text, by the text
    if policy.input:
        for path, text in slots:
            new = scan_text(guard, policy, text, lambda p=path: _param(call, p))
            if new is not text:
                set_at(body, path, new)
                changed = True
    if policy.webhooks:
        slots = text_slots(body, ("instructions", "input"))
        texts = [text for _, text in slots]
        results = await asyncio.gather(*(flagged(hook, texts) for hook in policy.webhooks))
        for hook, found in zip(policy.webhooks, results, strict=True):
            for i in found:
                guard.hit(hook.rule, hook.action)
                if hook.action == BLOCK:
                    raise blocked(hook.rule, _param(call, slots[i][0]), guard)
                if hook.action == REDACT:
                    replaced[slots[i][1]] = f"[REDACTED:{hook.rule}]"
                    set_at(body, slots[i][0], replaced[slots[i][1]])
                    changed = True
    if changed:
        call.changed = True
        _redact_kept(call, policy, replaced)


def scan_text(guard: Guard, policy: Policy, text: str, param: Any) -> str:
    """The text redacted; a block raises content_blocked naming the rule and the field."""
    matches = policy.input.scan(text)
    if not matches:
        return text
    for m in matches:
        guard.hit(m.matcher.rule, m.matcher.action)
        if m.matcher.action == BLOCK:
            raise blocked(m.matcher.rule, param(), guard)
    return redacted(text, matches)


def blocked(rule: str, param: str, guard: Guard) -> InvalidRequestError:
    return InvalidRequestError(
        f"The request was blocked by the guardrail '{rule}' (in '{param}').",
        param=param,
        code="content_blocked",
        headers={HEADER: guard.names},
    )


def text_slots(root: dict[str, Any], fields: tuple[str, ...]) -> list[tuple[Path, str]]:
    """Where the texts are: (path from the root, text)."""
    out: list[tuple[Path, str]] = []
    for name in fields:
        value = root.get(name)
        if isinstance(value, str):
            out.append(((name,), value))
        elif isinstance(value, (list, dict)):
            _walk(value, (name,), out)
    return out


def _walk(value: Any, path: Path, out: list[tuple[Path, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, str):
                if k in _TEXT_KEYS:
                    out.append(((*path, k), v))
            elif isinstance(v, (dict, list)):
                _walk(v, (*path, k), out)
    else:
        for i, v in enumerate(value):
            if isinstance(v, (dict, list)):
                _walk(v, (*path, i), out)


def set_at(root: dict[str, Any], path: Path, text: str) -> None:
    """Put `text` at `path`, copying the containers on the way: an item of stored context may
    be the store's own object, which keeps what it kept."""
    holder: Any = root
    for step in path[:-1]:
        child = holder[step]
        child = dict(child) if isinstance(child, dict) else list(child)
        holder[step] = child
        holder = child
    holder[path[-1]] = text


def _param(call: Call, path: Path) -> str:
    """The field as the client sent it: an item of stored context is named by what brought it
    (`previous_response_id` or `conversation`)."""
    if path[0] == "input" and len(path) > 1 and isinstance(path[1], int):
        context = 0
        if call.previous is not None or call.conversation is not None:
            context = len(call.body.get("input") or ()) - len(call.input_items)
        if path[1] < context:
            return "previous_response_id" if call.previous is not None else "conversation"
        path = _as_sent(call, ("input", path[1] - context, *path[2:]))
    out = str(path[0])
    for step in path[1:]:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out


def _as_sent(call: Call, path: Path) -> Path:
    """The path in the body the client sent: a chained turn's own input was expanded into
    items (a string into a message, its content into parts); the field is where the sent
    body held the text. Read only when refusing."""
    try:
        node: Any = loads(call.raw)
    except ValueError:
        return path
    for n, step in enumerate(path):
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return path
        if isinstance(node, str):
            return path[: n + 1]
    return path


def _redact_kept(call: Call, policy: Policy, replaced: dict[str, str]) -> None:
    """The request's input as it is kept: redacted as what went upstream was (the kept items
    hold the same texts, so the same scan, and a webhook's verdict on a text, apply)."""
    if not call.input_items:
        return
    kept = {"input": call.input_items}
    for path, text in text_slots(kept, ("input",)):
        new = redacted(text, policy.input.scan(text)) if policy.input else text
        new = replaced.get(new, new)
        if new is not text:
            set_at(kept, path, new)
    call.input_items = kept["input"]

"""The output side of a stream: a transform of the upstream's SSE chunks.

Each output text part's deltas go through a buffer that holds back only the text a match
could still grow from (the trailing run of characters some detector's matches are made of,
at most its longest match; a rule's own `patterns` always hold `max_match_chars`). What can
no longer change goes out redacted, so a match split across deltas is caught; the `.done`
events and the final Response carry exactly the text the client was sent. A block ends the
stream with `response.incomplete` (`incomplete_details.reason: content_filter`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from gateway import events
from gateway.guardrails.guard import Guard
from gateway.guardrails.rules import BLOCK, REDACT, Match, Scanner
from gateway.streaming.sse import SSEEvent, SSEParser, encode_event, event_type

TEXT_DELTA: Final = "response.output_text.delta"
TEXT_DONE: Final = "response.output_text.done"
PART_DONE: Final = "response.content_part.done"
ITEM_DONE: Final = "response.output_item.done"
_CONTEXT: Final = 8  # characters of text already sent that a detector's look-behind reads
CONTENT_FILTER: Final = {"reason": "content_filter"}


@dataclass(slots=True)
class _Part:
    """One output text part: what was received and not yet sent, and what was sent."""

    template: dict[str, Any]  # its latest delta event, to make another from
    pending: str = ""
    context: str = ""
    sent: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.sent)


class Blocked(Exception):
    """A block rule matched the output."""


def advance(scanner: Scanner, guard: Guard, part: _Part, final: bool) -> str:
    """The text of `part` that can go out now, redacted; Blocked (after sending what came
    before the match) when a block rule matched."""
    text = part.context + part.pending
    base = len(part.context)
    cut = len(text) if final else max(base, scanner.hold_from(text))
    if cut == base:
        return ""  # all of it may still be part of a match: nothing to look at yet
    out: list[str] = []
    at = base
    for m in scanner.scan(text):
        if m.start < base:
            continue
        if m.start >= cut:
            break
        matcher = m.matcher
        guard.hit(matcher.rule, matcher.action)
        if matcher.action == BLOCK:
            out.append(text[at : m.start])
            part.pending = ""
            sent = "".join(out)
            part.sent.append(sent)
            raise Blocked(sent, part.template)
        cut = max(cut, m.end)
        if matcher.action == REDACT:
            out.append(text[at : m.start])
            out.append(matcher.label)
            at = m.end
    out.append(text[at:cut])
    part.pending = text[cut:]
    part.context = text[max(0, cut - _CONTEXT) : cut]
    sent = "".join(out)
    if sent:
        part.sent.append(sent)
    return sent


def redact_whole(scanner: Scanner, guard: Guard, text: str) -> tuple[str, int | None]:
    """A whole text redacted, and where a block rule matched in it (None: nowhere)."""
    matches: list[Match] = scanner.scan(text)
    out: list[str] = []
    at = 0
    for m in matches:
        guard.hit(m.matcher.rule, m.matcher.action)
        if m.matcher.action == BLOCK:
            out.append(text[at : m.start])
            return "".join(out), len("".join(out))
        if m.matcher.action == REDACT:
            out += (text[at : m.start], m.matcher.label)
            at = m.end
    if not out:
        return text, None
    out.append(text[at:])
    return "".join(out), None


class StreamFilter:
    """The events of one stream, rewritten where their output text must change."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.scanner = guard.policy.output
        self.parser = SSEParser()
        self.parts: dict[tuple[Any, Any], _Part] = {}
        self.done_items: dict[int, dict[str, Any]] = {}
        self.snapshot: dict[str, Any] | None = None
        self.shift = 0  # events added (positive) or dropped (negative) so far
        self.ended = False

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for ev in self._events(chunk):
            if self.ended:
                break
            out += self._event(ev)
        return b"".join(out)

    def _events(self, chunk: bytes) -> list[SSEEvent]:
        """The events the chunk completes. Whole `event:` + `data:` frames, LF-framed (how
        OpenAI and vLLM stream, one or more a chunk), are split here; anything else goes
        through the incremental parser."""
        if (
            self.parser.at_boundary
            and chunk.startswith(b"event: ")
            and chunk.endswith(b"\n\n")
            and b"\r" not in chunk
        ):
            found = []
            for frame in chunk[:-2].split(b"\n\n"):
                name, sep, data = frame.partition(b"\ndata: ")
                if not sep or not name.startswith(b"event: ") or b"\n" in name or b"\n" in data:
                    return self.parser.feed(chunk)
                found.append(SSEEvent(name[7:].decode("utf-8", "replace") or None, data))
            return found
        return self.parser.feed(chunk)

    def _event(self, ev: SSEEvent) -> list[bytes]:
        try:
            data = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return [encode_event(ev.data, ev.event)]
        kind = event_type(ev)
        sequence = data.get("sequence_number")
        try:
            return self._rewrite(ev, kind, data)
        except Blocked as blocked:
            self.ended = True
            frames = []
            text, template = blocked.args
            if text and template is not None:
                # What came before the match goes out, so that the end says what was sent.
                name = TEXT_DELTA if ev.event is not None else None
                frames.append(self._frame(name, {**template, "delta": text}, sequence))
                self.shift += 1
            return [*frames, self._incomplete(data, sequence)]

    def _rewrite(self, ev: SSEEvent, kind: str | None, data: dict[str, Any]) -> list[bytes]:
        if kind == TEXT_DELTA and isinstance(data.get("delta"), str):
            part = self._part(data)
            part.template = data
            part.pending += data["delta"]
            sent = advance(self.scanner, self.guard, part, final=False)
            if not sent:
                self.shift -= 1
                return []
            data["delta"] = sent
            return [self._frame(ev.event, data)]
        if kind == TEXT_DONE:
            if (data.get("item_id"), data.get("content_index")) not in self.parts:
                # A text that came without deltas: scanned whole.
                changed = self._fix_part(
                    data.get("item_id"), data.get("content_index"), {**data, "type": "output_text"}
                )
                if changed:
                    data["text"] = self.parts[data.get("item_id"), data.get("content_index")].text
                return [self._frame(ev.event, data)]
            part = self._part(data)
            frames = []
            rest = advance(self.scanner, self.guard, part, final=True)
            if rest:
                # One more delta, numbered in the place of this event, which moves up one.
                name = TEXT_DELTA if ev.event is not None else None
                extra = {**part.template, "delta": rest}
                frames.append(self._frame(name, extra, data.get("sequence_number")))
                self.shift += 1
            data["text"] = part.text
            return [*frames, self._frame(ev.event, data)]
        changed = False
        if kind == PART_DONE and isinstance(data.get("part"), dict):
            changed = self._fix_part(data.get("item_id"), data.get("content_index"), data["part"])
        elif kind == ITEM_DONE and isinstance(data.get("item"), dict):
            changed = self._fix_item(data["item"])
            if isinstance(data.get("output_index"), int):
                self.done_items[data["output_index"]] = data["item"]
        elif kind in events.LIFECYCLE and isinstance(data.get("response"), dict):
            response = data["response"]
            if kind in events.TERMINAL:
                for item in response.get("output") or ():
                    if isinstance(item, dict):
                        changed = self._fix_item(item) or changed
            else:
                self.snapshot = response
        if not changed and not self.shift:
            return [encode_event(ev.data, ev.event)]
        return [self._frame(ev.event, data)]

    def _part(self, data: dict[str, Any]) -> _Part:
        key = (data.get("item_id"), data.get("content_index"))
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = _Part(data)
        return part

    def _fix_item(self, item: dict[str, Any]) -> bool:
        content = item.get("content")
        if item.get("type") != "message" or not isinstance(content, list):
            return False
        changed = False
        for i, part in enumerate(content):
            if isinstance(part, dict):
                changed = self._fix_part(item.get("id"), i, part) or changed
        return changed

    def _fix_part(self, item_id: Any, index: Any, part: dict[str, Any]) -> bool:
        """A finished text part says what the client was sent (redacted, if it never came as
        deltas)."""
        text = part.get("text")
        if part.get("type") != "output_text" or not isinstance(text, str):
            return False
        tracked = self.parts.get((item_id, index))
        if tracked is not None:
            new = tracked.text
        else:
            new, blocked_at = redact_whole(self.scanner, self.guard, text)
            if blocked_at is not None:
                raise Blocked("", None)
            # Scanned once: the item's and the Response's copies of the part say the same.
            self.parts[item_id, index] = _Part({}, sent=[new])
        if new == text:
            return False
        part["text"] = new
        return True

    def _frame(self, name: str | None, data: dict[str, Any], sequence: Any = None) -> bytes:
        """The event, numbered `sequence` (default: its own number) moved by the shift."""
        sequence = data.get("sequence_number") if sequence is None else sequence
        if isinstance(sequence, int):
            data["sequence_number"] = sequence + self.shift
        return encode_event(orjson.dumps(data), name)

    def _incomplete(self, data: dict[str, Any], sequence: Any) -> bytes:
        """The end of a blocked stream: the Response with what the client was sent."""
        response = dict(self.snapshot or data.get("response") or {})
        output: dict[int, dict[str, Any]] = dict(self.done_items)
        for (item_id, _), part in self.parts.items():
            at = part.template.get("output_index")
            if not isinstance(at, int) or at in self.done_items:
                continue
            item = output.setdefault(
                at,
                {
                    "id": item_id,
                    "type": "message",
                    "role": "assistant",
                    "status": "incomplete",
                    "content": [],
                },
            )
            item["content"].append({"type": "output_text", "text": part.text, "annotations": []})
        response.update(
            status="incomplete",
            incomplete_details=CONTENT_FILTER,
            output=[output[k] for k in sorted(output)],
        )
        event: dict[str, Any] = {"type": events.INCOMPLETE, "response": response}
        if isinstance(sequence, int):
            event["sequence_number"] = sequence + self.shift
        return encode_event(orjson.dumps(event), events.INCOMPLETE)


async def filtered(chunks: AsyncIterator[bytes], guard: Guard) -> AsyncIterator[bytes]:
    """The upstream's chunks with their output text guarded; ends after a block."""
    stream = StreamFilter(guard)
    async for chunk in chunks:
        out = stream.feed(chunk)
        if out:
            yield out
        if stream.ended:
            return

"""A deterministic fake model: Responses and Chat Completions answers, whole or as stream events."""

import hashlib
import math
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from gateway.echo import or_default, response_object, usage_object

Json = dict[str, Any]

PANGRAM: Final = "The quick brown fox jumps over the lazy dog."
MAX_WORDS: Final = 40
ARGUMENT_CHUNK: Final = 8  # characters of function arguments per delta
_OBFUSCATION: Final = "mockobfuscation0"
# Arguments are only ever serialized, so the shared empty array is never mutated.
_PLACEHOLDERS: Final[Mapping[str, object]] = {
    "string": "example",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "null": None,
    "array": (),
}
_IN_PROGRESS: Final[Json] = {
    "status": "in_progress",
    "completed_at": None,
    "incomplete_details": None,
    "usage": None,
}


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the fake model says, whatever the API: text deltas or one function call."""

    deltas: tuple[str, ...]  # text tokens, or the call's argument chunks
    call: Tool | None
    truncated: bool
    input_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    @property
    def output_tokens(self) -> int:
        return len(self.deltas)


@dataclass(frozen=True, slots=True)
class _Turn:
    user_text: str
    tool_output: str | None  # set when the conversation ends with a tool's result
    input_chars: int


@dataclass(frozen=True, slots=True)
class _Choice:
    none: bool = False
    forced: bool = False
    allowed: frozenset[str] | None = None


# -- shared by both APIs ------------------------------------------------------


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (p.get("text") for p in content if isinstance(p, dict))
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _choice(value: object) -> _Choice:
    if value == "none":
        return _Choice(none=True)
    if value == "required":
        return _Choice(forced=True)
    if not isinstance(value, dict):
        return _Choice()
    if value.get("type") == "allowed_tools":
        spec = value.get("allowed_tools", value)  # chat nests it one level down
        names = frozenset(_tool_name(t) for t in _dicts(spec.get("tools")))
        return _Choice(forced=spec.get("mode") == "required", allowed=names)
    return _Choice(forced=True, allowed=frozenset({_tool_name(value)}))


def _tool_name(spec: Mapping[str, Any]) -> str:
    inner = spec.get("function")
    name = inner.get("name") if isinstance(inner, dict) else spec.get("name")
    return name if isinstance(name, str) else ""


def _tools(specs: object) -> list[Tool]:
    tools = []
    for spec in _dicts(specs):
        if spec.get("type") != "function":
            continue
        inner = spec.get("function")
        source = inner if isinstance(inner, dict) else spec
        params = source.get("parameters")
        tools.append(Tool(_tool_name(spec), params if isinstance(params, dict) else {}))
    return [t for t in tools if t.name]


def _pick_tool(tools: list[Tool], choice: _Choice, turn: _Turn) -> Tool | None:
    if choice.none or turn.tool_output is not None:
        return None
    allowed = [t for t in tools if choice.allowed is None or t.name in choice.allowed]
    named = [t for t in allowed if t.name in turn.user_text]
    if named:
        return named[0]
    return allowed[0] if choice.forced and allowed else None


def _placeholder(schema: object) -> object:
    if not isinstance(schema, dict):
        return "example"
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _fill(schema) if kind == "object" else _PLACEHOLDERS.get(str(kind), "example")


def _fill(schema: Mapping[str, Any]) -> dict[str, object]:
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else []
    return {name: _placeholder(props.get(name)) for name in names}


def _answer(turn: _Turn, body: Mapping[str, Any], limit: object) -> Answer:
    """The reply to `turn`: a call of the tool the body's tools and tool_choice pick, else text."""
    tool = _pick_tool(_tools(body.get("tools")), _choice(body.get("tool_choice")), turn)
    input_tokens = max(1, math.ceil(turn.input_chars / 4))
    if tool is not None:
        args = orjson.dumps(_fill(tool.parameters)).decode()
        chunks = tuple(args[i : i + ARGUMENT_CHUNK] for i in range(0, len(args), ARGUMENT_CHUNK))
        return Answer(chunks, tool, False, input_tokens)
    if turn.tool_output is not None:
        text = "Tool said: " + turn.tool_output
    else:
        text = "Echo: " + turn.user_text if turn.user_text.strip() else PANGRAM
    words = text.split()[:MAX_WORDS]
    tokens = tuple(w if i == 0 else " " + w for i, w in enumerate(words))
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < len(tokens):
        return Answer(tokens[:limit], None, True, input_tokens)
    return Answer(tokens, None, False, input_tokens)


def _new_id(prefix: str, seed: str, kind: str) -> str:
    # Item ids derive from the response id, so a fixed response_id gives a fixed run.
    return prefix + hashlib.blake2b(f"{seed}/{kind}".encode(), digest_size=24).hexdigest()


# -- Responses ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MockRun:
    """One fake Response: `response` is the final object, `events()` its canonical stream.

    Events share nested objects with `response`: treat both as read-only.
    """

    response: Json
    deltas: tuple[str, ...]
    obfuscate: bool = True

    def events(self) -> list[Json]:
        item = self.response["output"][0]
        snapshot = {**self.response, **_IN_PROGRESS, "output": []}
        body = (
            self._call_events(item) if item["type"] == "function_call" else self._text_events(item)
        )
        terminal = f"response.{self.response['status']}"  # completed or incomplete
        events = [
            {"type": "response.created", "response": snapshot},
            {"type": "response.in_progress", "response": snapshot},
            *body,
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {"type": terminal, "response": self.response},
        ]
        return [{**ev, "sequence_number": n} for n, ev in enumerate(events)]

    def _text_events(self, item: Json) -> list[Json]:
        part = item["content"][0]
        at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        started = {**item, "status": "in_progress", "content": []}
        return [
            {"type": "response.output_item.added", "output_index": 0, "item": started},
            {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
            *(self._delta("response.output_text.delta", at, d, logprobs=[]) for d in self.deltas),
            {"type": "response.output_text.done", **at, "text": part["text"], "logprobs": []},
            {"type": "response.content_part.done", **at, "part": part},
        ]

    def _call_events(self, item: Json) -> list[Json]:
        at = {"item_id": item["id"], "output_index": 0}
        started = {**item, "arguments": "", "status": "in_progress"}
        done = {"arguments": item["arguments"], "name": item["name"]}
        return [
            {"type": "response.output_item.added", "output_index": 0, "item": started},
            *(self._delta("response.function_call_arguments.delta", at, d) for d in self.deltas),
            {"type": "response.function_call_arguments.done", **at, **done},
        ]

    def _delta(self, kind: str, at: Json, delta: str, **extra: object) -> Json:
        event = {"type": kind, **at, "delta": delta, **extra}
        if self.obfuscate:
            # Real deltas carry random padding; a fixed one keeps the run deterministic.
            event["obfuscation"] = _OBFUSCATION[: 16 - len(delta) % 16]
        return event


def _responses_turn(body: Mapping[str, Any]) -> _Turn:
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else _dicts(raw)
    user_text, chars = "", 0
    for item in items:
        for key in ("content", "output", "arguments"):
            chars += len(_text_of(item.get(key)))
        if item.get("type", "message") == "message" and item.get("role") == "user":
            user_text = _text_of(item.get("content"))
    last = items[-1] if items else {}
    output = _text_of(last.get("output")) if last.get("type") == "function_call_output" else None
    instructions = body.get("instructions")
    chars += len(instructions) if isinstance(instructions, str) else 0
    return _Turn(user_text, output, chars)


def _response_item(answer: Answer, response_id: str) -> Json:
    status = "incomplete" if answer.truncated else "completed"
    if answer.call is not None:
        return {
            "id": _new_id("fc_", response_id, "fc"),
            "type": "function_call",
            "status": status,
            "arguments": answer.text,
            "call_id": _new_id("call_", response_id, "call"),
            "name": answer.call.name,
        }
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": answer.text}
    return {
        "id": _new_id("msg_", response_id, "msg"),
        "type": "message",
        "status": status,
        "content": [part],
        "role": "assistant",
    }


def build_response(
    body: Mapping[str, Any],
    *,
    model: str,
    response_id: str | None = None,
    created_at: int | None = None,
) -> MockRun:
    rid = response_id or "resp_" + secrets.token_hex(24)
    created = int(time.time()) if created_at is None else created_at
    turn = _responses_turn(body)
    answer = _answer(turn, body, body.get("max_output_tokens"))
    response = response_object(
        body,
        response_id=rid,
        model=model,
        created_at=created,
        output=[_response_item(answer, rid)],
        usage=usage_object(answer.input_tokens, answer.output_tokens),
        truncated=answer.truncated,
    )
    options = body.get("stream_options")
    obfuscate = not (isinstance(options, dict) and options.get("include_obfuscation") is False)
    return MockRun(response, answer.deltas, obfuscate)


# -- Chat Completions ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MockChat:
    """One fake chat completion, whole (`completion()`) or as stream chunks (`chunks()`)."""

    id: str
    created: int
    model: str
    answer: Answer
    include_usage: bool = False

    def completion(self) -> Json:
        message: Json = {
            "role": "assistant",
            "content": self.answer.text,
            "refusal": None,
            "annotations": [],
        }
        if self.answer.call is not None:
            call = self._call(self.answer.call, self.answer.text)
            message |= {"content": None, "tool_calls": [call]}
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self._finish_reason(),
        }
        return {**self._head("chat.completion"), "choices": [choice], "usage": self._usage()}

    def chunks(self) -> list[Json]:
        chunks = [self._chunk(delta) for delta in self._deltas()]
        chunks.append(self._chunk({}, self._finish_reason()))
        if self.include_usage:
            usage = {"choices": [], "usage": self._usage()}
            chunks.append({**self._head("chat.completion.chunk"), **usage})
        return chunks

    def _deltas(self) -> list[Json]:
        first: Json = {"role": "assistant", "content": "", "refusal": None}
        if self.answer.call is None:
            return [first, *({"content": d} for d in self.answer.deltas)]
        first |= {"content": None, "tool_calls": [{"index": 0, **self._call(self.answer.call, "")}]}
        pieces = ({"index": 0, "function": {"arguments": d}} for d in self.answer.deltas)
        return [first, *({"tool_calls": [piece]} for piece in pieces)]

    def _head(self, kind: str) -> Json:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": None,
        }

    def _chunk(self, delta: Json, finish_reason: str | None = None) -> Json:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk = {**self._head("chat.completion.chunk"), "choices": [choice]}
        return chunk | {"usage": None} if self.include_usage else chunk

    def _call(self, tool: Tool, arguments: str) -> Json:
        return {
            "id": _new_id("call_", self.id, "call"),
            "type": "function",
            "function": {"name": tool.name, "arguments": arguments},
        }

    def _finish_reason(self) -> str:
        if self.answer.call is not None:
            return "tool_calls"
        return "length" if self.answer.truncated else "stop"

    def _usage(self) -> Json:
        prompt, completion = self.answer.input_tokens, self.answer.output_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }


def _chat_turn(messages: Iterable[Mapping[str, Any]]) -> _Turn:
    user_text, chars, last = "", 0, None
    for message in messages:
        text = _text_of(message.get("content"))
        chars += len(text)
        if message.get("role") == "user":
            user_text = text
        last = message
    tool_output = _text_of(last.get("content")) if last and last.get("role") == "tool" else None
    return _Turn(user_text, tool_output, chars)


def build_chat_completion(
    body: Mapping[str, Any],
    *,
    model: str,
    completion_id: str | None = None,
    created: int | None = None,
) -> MockChat:
    turn = _chat_turn(_dicts(body.get("messages")))
    limit = or_default(body, "max_completion_tokens", body.get("max_tokens"))
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return MockChat(
        completion_id or "chatcmpl-" + secrets.token_hex(12),
        int(time.time()) if created is None else created,
        model,
        _answer(turn, body, limit),
        include_usage,
    )

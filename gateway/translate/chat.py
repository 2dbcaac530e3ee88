"""Responses API <-> Chat Completions, sans-IO: the request, the completion and its chunk stream.

The JSON answer is translated by the stream translator too (the completion as one chunk), so a
streamed Response and a buffered one hold the same items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

from gateway.echo import echo, usage_object
from gateway.errors import InvalidRequestError

Json = dict[str, Any]

LOGPROBS_INCLUDE: Final = "message.output_text.logprobs"
_CHOICES: Final = frozenset({"auto", "none", "required"})
_TEXT_PARTS: Final = frozenset({"input_text", "output_text", "text"})
_IMAGE_DETAILS: Final = frozenset({"low", "high", "auto"})
# Chat finish reasons that end a Response early, and the incomplete_details.reason they give.
_INCOMPLETE: Final = {"length": "max_output_tokens", "content_filter": "content_filter"}
_UNSUPPORTED: Final = "is not supported by the provider serving this model (Chat Completions)"


# -- request ------------------------------------------------------------------


def to_chat_request(body: Mapping[str, Any], model: str) -> Json:
    """A CreateResponse body as a chat.completions request; what it cannot express is a 400.

    Gateway-side fields (metadata, previous_response_id, conversation, background) are left
    out: the gateway's own stages own them. `store: false` travels (zero data retention, or
    the gateway keeping the state itself): the upstream must keep nothing either.
    """
    if body.get("prompt") is not None:
        raise _unsupported("prompt", f"A stored prompt template {_UNSUPPORTED}.")
    messages: list[Json] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    messages.extend(_messages(body.get("input")))
    chat: Json = {"model": model, "messages": messages}
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    # OpenAI refuses tool_choice and parallel_tool_calls without tools.
    if tools:
        chat["tools"] = tools
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if _is_int(body.get("max_output_tokens")):
        chat["max_completion_tokens"] = body["max_output_tokens"]
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, Mapping) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]
    include = body.get("include")
    top = body.get("top_logprobs")
    if (isinstance(include, list) and LOGPROBS_INCLUDE in include) or (_is_int(top) and top > 0):
        chat["logprobs"] = True
        if _is_int(top):
            chat["top_logprobs"] = top
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        chat["user"] = user
    if body.get("store") is False:
        chat["store"] = False
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _messages(value: Any) -> list[Json]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    out: list[Json] = []
    for i, item in enumerate(_list(value, "input")):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            call = {
                "id": _str(item, "call_id", where),
                "type": "function",
                "function": {"name": _str(item, "name", where), "arguments": _arguments(item)},
            }
            last = out[-1] if out else None
            # One assistant turn in chat: its text and every call it made, in one message.
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            content = _text(item.get("output"), f"{where}.output", images=False)
            call_id = _str(item, "call_id", where)
            out.append({"role": "tool", "tool_call_id": call_id, "content": content})
        elif kind == "reasoning":
            continue  # chat upstreams take no reasoning input; their own is not replayable
        elif kind == "item_reference":
            raise _unsupported(where, f"An item_reference {_UNSUPPORTED}: send the item itself.")
        else:
            raise _unsupported(f"{where}.type", f"Input items of type '{kind}' {_UNSUPPORTED}.")
    return out


def _message(item: Mapping[str, Any], where: str) -> Json:
    role = item.get("role")
    content = item.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": _text(content, f"{where}.content", images=False)}
    if role == "user":
        return {"role": "user", "content": _text(content, f"{where}.content", images=True)}
    if role != "assistant":
        raise InvalidRequestError(
            f"Invalid value: '{role}'. Supported values are: 'user', 'assistant', 'system' and "
            "'developer'.",
            param=f"{where}.role",
            code="invalid_value",
        )
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    message: Json = {"role": "assistant", "content": None}
    for j, part in enumerate(_list(content, f"{where}.content")):
        kind = _kind(part)
        if kind in _TEXT_PARTS:
            texts.append(_str(part, "text", f"{where}.content[{j}]"))
        elif kind == "refusal":
            message["refusal"] = _str(part, "refusal", f"{where}.content[{j}]")
        else:
            raise _unsupported(
                f"{where}.content[{j}]", f"Assistant content of type '{kind}' {_UNSUPPORTED}."
            )
    if texts or "refusal" not in message:
        message["content"] = "".join(texts)
    return message


def _text(content: Any, where: str, *, images: bool) -> str | list[Json]:
    """Message content as chat content: a string when it is one piece of text."""
    if isinstance(content, str):
        return content
    parts: list[Json] = []
    for j, part in enumerate(_list(content, where)):
        at = f"{where}[{j}]"
        kind = _kind(part)
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": _str(part, "text", at)})
        elif kind == "input_image" and images:
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _unsupported(at, f"An input_image without an image_url {_UNSUPPORTED}.")
            image: Json = {"url": url}
            if _kind(part, "detail") in _IMAGE_DETAILS:
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _unsupported(at, f"Content of type '{kind}' {_UNSUPPORTED} here.")
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    if not images:  # tool and system messages take text only; joining keeps them portable
        return "".join(p["text"] for p in parts)
    return parts


def _arguments(item: Mapping[str, Any]) -> str:
    arguments = item.get("arguments")
    return arguments if isinstance(arguments, str) else "{}"


def _tools(value: Any) -> list[Json]:
    if value is None:
        return []
    tools: list[Json] = []
    for i, tool in enumerate(_list(value, "tools")):
        kind = tool.get("type")
        if kind != "function":
            raise _unsupported(
                f"tools[{i}].type",
                f"Invalid value: '{kind}'. Tools of type '{kind}' {_UNSUPPORTED}, which only "
                "has function tools.",
            )
        function: Json = {"name": _str(tool, "name", f"tools[{i}]")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value in _CHOICES):
        return value
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"Invalid value: '{value}'. Supported values are: 'auto', 'none' and 'required'.",
            param="tool_choice",
            code="invalid_value",
        )
    kind = value.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": _str(value, "name", "tool_choice")}}
    if kind == "allowed_tools":
        names = []
        for i, tool in enumerate(_list(value.get("tools"), "tool_choice.tools")):
            if tool.get("type") != "function":
                raise _unsupported(
                    f"tool_choice.tools[{i}].type",
                    f"Allowing a '{tool.get('type')}' tool {_UNSUPPORTED}.",
                )
            names.append(
                {
                    "type": "function",
                    "function": {"name": _str(tool, "name", f"tool_choice.tools[{i}]")},
                }
            )
        mode = value.get("mode", "auto")
        return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": names}}
    raise _unsupported("tool_choice", f"Forcing a '{kind}' tool {_UNSUPPORTED}.")


def _response_format(text: Any) -> Json | None:
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema: Json = {"name": _str(fmt, "name", "text.format")}
        for key in ("description", "schema", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    raise _unsupported("text.format.type", f"The text format '{fmt['type']}' {_UNSUPPORTED}.")


def _list(value: Any, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise InvalidRequestError(
            f"Invalid '{where}': expected an array of objects.", param=where, code="invalid_type"
        )
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"Missing required parameter: '{where}.{key}'.",
            param=f"{where}.{key}",
            code="missing_required_parameter",
        )
    return value


def _kind(obj: Mapping[str, Any], key: str = "type") -> str:
    """A string field or "": a list or dict must never reach a set lookup."""
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _unsupported(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="unsupported_value")


# -- response -----------------------------------------------------------------


def from_chat_completion(
    completion: Mapping[str, Any],
    request: Mapping[str, Any],
    *,
    response_id: str,
    created_at: int,
    completed_at: int | None = None,
) -> Json:
    """A chat.completion as the Response object the Responses API would have answered."""
    translator = ChatStreamTranslator(request, response_id=response_id, created_at=created_at)
    translator.feed(completion_as_chunk(completion))
    response: Json = translator.finish(completed_at)[-1]["response"]
    return response


def completion_as_chunk(completion: Mapping[str, Any]) -> Json:
    """A whole chat.completion as the one chunk that would have streamed it."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, Mapping) else None
    message = message if isinstance(message, Mapping) else {}
    calls = message.get("tool_calls")
    delta = {
        "content": message.get("content"),
        "refusal": message.get("refusal"),
        "annotations": message.get("annotations"),
        "tool_calls": [
            {**call, "index": i} for i, call in enumerate(calls) if isinstance(call, Mapping)
        ]
        if isinstance(calls, list)
        else None,
    }
    return {
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason"),
            }
        ],
        "usage": completion.get("usage"),
    }


def response_usage(usage: Any) -> Json | None:
    """Chat `usage` as Responses `usage`."""
    if not isinstance(usage, Mapping):
        return None
    prompt, output = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    cached = _count(_get(usage, "prompt_tokens_details", "cached_tokens"))
    reasoning = _count(_get(usage, "completion_tokens_details", "reasoning_tokens"))
    return usage_object(prompt, output, cached=cached, reasoning=reasoning)


def _get(obj: Mapping[str, Any], key: str, inner: str) -> Any:
    value = obj.get(key)
    return value.get(inner) if isinstance(value, Mapping) else None


def _count(value: Any) -> int:
    return value if _is_int(value) and value >= 0 else 0


def _echo(request: Mapping[str, Any]) -> Json:
    """The shared echo, as a Chat Completions upstream serves it: the default tier, and the
    request's model."""
    return {**echo(request), "model": request.get("model"), "service_tier": "default"}


class ChatStreamError(ValueError):
    """The chunk stream broke the Chat Completions protocol in a way no event order can carry."""


@dataclass(slots=True)
class _Message:
    id: str
    output_index: int
    parts: list[Json] = field(default_factory=list)  # closed content parts
    kind: str | None = None  # the open part: "output_text" or "refusal"
    pieces: list[str] = field(default_factory=list)
    logprobs: list[Json] = field(default_factory=list)
    annotations: list[Json] = field(default_factory=list)


@dataclass(slots=True)
class _Call:
    id: str
    output_index: int
    index: int  # the chat tool call index
    call_id: str = ""
    name: str = ""
    added: bool = False  # output_item.added sent; held back until the name is known
    pieces: list[str] = field(default_factory=list)


class ChatStreamTranslator:
    """chat.completion.chunk dicts in, Responses stream events out, in the canonical order.

    One item is open at a time: a new kind of output (text after a call, the next call)
    closes the open one first, so each item is one `added … done` block.
    """

    def __init__(self, request: Mapping[str, Any], *, response_id: str, created_at: int) -> None:
        self.response_id = response_id
        self.created_at = created_at
        self.finish_reason: str | None = None
        self.usage: Json | None = None
        self._echo = _echo(request)
        self._sequence = 0
        self._output: list[Json] = []
        self._open: _Message | _Call | None = None
        self._closed_calls: set[int] = set()

    def start(self) -> list[Json]:
        snapshot = self._response("in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: Mapping[str, Any]) -> list[Json]:
        events: list[Json] = []
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self.usage = dict(usage)
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            # n > 1 has no Responses equivalent: only the first choice is the answer.
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            delta = delta if isinstance(delta, Mapping) else {}
            refusal, content = delta.get("refusal"), delta.get("content")
            if isinstance(refusal, str) and refusal:
                events += self._piece("refusal", refusal, [])
            if isinstance(content, str) and content:
                events += self._piece("output_text", content, _logprobs(choice.get("logprobs")))
            annotations = delta.get("annotations")
            for annotation in annotations if isinstance(annotations, list) else ():
                events += self._annotation(annotation)
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, Mapping):
                    events += self._call_piece(call)
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        return events

    def finish(self, completed_at: int | None = None) -> list[Json]:
        """Close what is open; the terminal event, by the finish reason seen."""
        reason = _INCOMPLETE.get(self.finish_reason or "")
        status = "incomplete" if reason else "completed"
        events: list[Json] = []
        if self._open is None and not self._output:
            # An empty answer is still one (empty) message, so `output_text` is "".
            events += self._open_part("output_text")
        events += self._close(status)
        response = self._response(status)
        response.update(
            completed_at=None if reason else (completed_at or self.created_at),
            incomplete_details={"reason": reason} if reason else None,
            usage=response_usage(self.usage),
        )
        events.append(self._event(f"response.{status}", response=response))
        return events

    def fail(self, code: str, message: str) -> list[Json]:
        """The terminal `response.failed` for a stream cut short (open items stay out)."""
        response = self._response("failed")
        response.update(error={"code": code, "message": message}, usage=response_usage(self.usage))
        return [self._event("response.failed", response=response)]

    # -- items --

    def _piece(self, kind: str, piece: str, logprobs: list[Json]) -> list[Json]:
        events = self._open_part(kind)
        message = self._open
        assert isinstance(message, _Message)
        message.pieces.append(piece)
        at = self._at(message)
        if kind == "refusal":
            events.append(self._event("response.refusal.delta", **at, delta=piece))
        else:
            message.logprobs += logprobs
            events.append(
                self._event("response.output_text.delta", **at, delta=piece, logprobs=logprobs)
            )
        return events

    def _annotation(self, raw: Any) -> list[Json]:
        annotation = _annotation(raw)
        if annotation is None:
            return []
        events = self._open_part("output_text")
        message = self._open
        assert isinstance(message, _Message)
        message.annotations.append(annotation)
        return [
            *events,
            self._event(
                "response.output_text.annotation.added",
                **self._at(message),
                annotation_index=len(message.annotations) - 1,
                annotation=annotation,
            ),
        ]

    def _open_part(self, kind: str) -> list[Json]:
        events: list[Json] = []
        message = self._open
        if not isinstance(message, _Message):
            events += self._close("completed")
            message = _Message(self._item_id("msg"), len(self._output))
            self._open = message
            item = {
                "id": message.id,
                "type": "message",
                "status": "in_progress",
                "content": [],
                "role": "assistant",
            }
            events.append(
                self._event(
                    "response.output_item.added", output_index=message.output_index, item=item
                )
            )
        if message.kind != kind:
            events += self._close_part(message)
            message.kind = kind
            events.append(
                self._event(
                    "response.content_part.added", **self._at(message), part=_part(kind, "", [], [])
                )
            )
        return events

    def _close_part(self, message: _Message) -> list[Json]:
        if message.kind is None:
            return []
        text, at = "".join(message.pieces), self._at(message)
        part = _part(message.kind, text, message.annotations, message.logprobs)
        if message.kind == "refusal":
            done = self._event("response.refusal.done", **at, refusal=text)
        else:
            done = self._event(
                "response.output_text.done", **at, text=text, logprobs=message.logprobs
            )
        message.parts.append(part)
        message.kind, message.pieces, message.logprobs, message.annotations = None, [], [], []
        return [done, self._event("response.content_part.done", **at, part=part)]

    def _call_piece(self, raw: Mapping[str, Any]) -> list[Json]:
        index = raw["index"] if _is_int(raw.get("index")) else 0
        function = raw.get("function")
        function = function if isinstance(function, Mapping) else {}
        name, arguments = function.get("name"), function.get("arguments")
        name = name if isinstance(name, str) else ""
        arguments = arguments if isinstance(arguments, str) else ""
        events: list[Json] = []
        call = self._open
        if not isinstance(call, _Call) or call.index != index:
            if index in self._closed_calls:
                if not (name or arguments):
                    return []
                raise ChatStreamError(f"tool call {index} went on after a later one started")
            events += self._close("completed")
            call = _Call(self._item_id("fc"), len(self._output), index)
            self._open = call
        if isinstance(raw.get("id"), str) and not call.call_id:
            call.call_id = raw["id"]
        if name and not call.name:
            call.name = name
        if call.added:
            if arguments:
                call.pieces.append(arguments)
                events.append(self._args_delta(call, arguments))
            return events
        call.pieces.append(arguments)
        if call.name:
            events += self._add_call(call)
        return events

    def _add_call(self, call: _Call) -> list[Json]:
        call.added = True
        call.call_id = call.call_id or self._item_id("call", call.index)
        item = {
            "id": call.id,
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call.call_id,
            "name": call.name,
        }
        events = [
            self._event("response.output_item.added", output_index=call.output_index, item=item)
        ]
        held = "".join(call.pieces)
        if held:
            events.append(self._args_delta(call, held))
        return events

    def _args_delta(self, call: _Call, delta: str) -> Json:
        return self._event(
            "response.function_call_arguments.delta",
            item_id=call.id,
            output_index=call.output_index,
            delta=delta,
        )

    def _close(self, status: str) -> list[Json]:
        item, self._open = self._open, None
        if item is None:
            return []
        if isinstance(item, _Message):
            events = self._close_part(item)
            done = {
                "id": item.id,
                "type": "message",
                "status": status,
                "content": item.parts,
                "role": "assistant",
            }
        else:
            events = [] if item.added else self._add_call(item)
            arguments = "".join(item.pieces)
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=item.output_index,
                    arguments=arguments,
                    name=item.name,
                )
            )
            done = {
                "id": item.id,
                "type": "function_call",
                "status": status,
                "arguments": arguments,
                "call_id": item.call_id,
                "name": item.name,
            }
            self._closed_calls.add(item.index)
        self._output.append(done)
        events.append(
            self._event("response.output_item.done", output_index=item.output_index, item=done)
        )
        return events

    # -- plumbing --

    def _response(self, status: str) -> Json:
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": None,
            "error": None,
            "incomplete_details": None,
            "output": list(self._output),
            "usage": None,
            **self._echo,
        }

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return event

    def _at(self, message: _Message) -> Json:
        return {
            "item_id": message.id,
            "output_index": message.output_index,
            "content_index": len(message.parts),
        }

    def _item_id(self, prefix: str, n: int | None = None) -> str:
        # Derived from the response id: a fixed response id gives a fixed run.
        seed = f"{self.response_id}/{prefix}/{len(self._output) if n is None else n}"
        return f"{prefix}_{hashlib.blake2b(seed.encode(), digest_size=24).hexdigest()}"


def _part(kind: str, text: str, annotations: list[Json], logprobs: list[Json]) -> Json:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "annotations": annotations, "logprobs": logprobs, "text": text}


def _logprobs(raw: Any) -> list[Json]:
    content = raw.get("content") if isinstance(raw, Mapping) else None
    if not isinstance(content, list):
        return []
    return [_logprob(entry, top=True) for entry in content if isinstance(entry, Mapping)]


def _logprob(entry: Mapping[str, Any], *, top: bool) -> Json:
    out: Json = {k: entry.get(k) for k in ("token", "logprob", "bytes")}
    if top:
        tops = entry.get("top_logprobs")
        out["top_logprobs"] = (
            [_logprob(t, top=False) for t in tops if isinstance(t, Mapping)]
            if isinstance(tops, list)
            else []
        )
    return out


def _annotation(raw: Any) -> Json | None:
    """A chat url_citation (nested one level down) as a Responses annotation."""
    if not isinstance(raw, Mapping) or raw.get("type") != "url_citation":
        return None
    cited = raw.get("url_citation")
    if not isinstance(cited, Mapping):
        return None
    return {
        "type": "url_citation",
        **{k: cited.get(k) for k in ("start_index", "end_index", "title", "url")},
    }

"""Adapter for upstreams that speak POST /v1/chat/completions: Responses in, Responses out."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from gateway.config import Account
from gateway.errors import UpstreamError
from gateway.errors_upstream import UPSTREAM_ERRORS, upstream_failure
from gateway.providers.base import HTTPProvider, Reply, UpstreamRequest
from gateway.providers.transport import Answer
from gateway.streaming.sse import SSEParser, encode_event
from gateway.translate.chat import (
    ChatStreamTranslator,
    completion_as_chunk,
    from_chat_completion,
    to_chat_request,
)

# Client headers that may travel upstream; everything else (Authorization first) stays here.
# The trace context is not among them: upstream_headers sends the request's own.
FORWARDED_HEADERS: tuple[str, ...] = ()


class _StreamFault(Exception):
    """The upstream stream said it failed, or broke the protocol: ends with response.failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ChatCompletionsProvider(HTTPProvider):
    path = "/chat/completions"
    forwarded = FORWARDED_HEADERS

    @asynccontextmanager
    async def send(self, request: UpstreamRequest, account: Account) -> AsyncIterator[Reply]:
        # Translated before any IO: what Chat Completions cannot express is the caller's 400.
        asked = request.body
        payload = orjson.dumps(to_chat_request(asked, request.model))
        url = self.settings.base_url + self.path
        try:
            resp = await self.http.post(url, payload, self.headers(request, account))
        except UPSTREAM_ERRORS as exc:
            raise upstream_failure(exc, self.name) from exc
        translator = ChatStreamTranslator(
            asked, response_id=f"resp_{secrets.token_hex(24)}", created_at=int(time.time())
        )
        events: AsyncGenerator[bytes, None] | None = None
        try:
            if request.stream and resp.status == 200 and resp.content_type == "text/event-stream":
                events = self._translate(resp, translator)
                yield Reply(200, chunks=events, headers=resp.headers)
                return
            try:
                body = await resp.read()
            except UPSTREAM_ERRORS as exc:
                raise upstream_failure(exc, self.name) from exc
            if not 200 <= resp.status < 300:
                # The forward stage maps upstream errors; an OpenAI envelope passes through.
                yield Reply(resp.status, body=body, headers=resp.headers)
                return
            completion = self._completion(body)
            if request.stream:  # the upstream answered a stream request with JSON: replay it
                events = self._replay(translator, completion)
                yield Reply(200, chunks=events, headers=resp.headers)
                return
            response = from_chat_completion(
                completion,
                asked,
                response_id=translator.response_id,
                created_at=translator.created_at,
                completed_at=int(time.time()),
            )
            yield Reply(200, body=orjson.dumps(response), headers=resp.headers)
        finally:
            if events is not None:
                await events.aclose()
            # Closes the connection instead of pooling it when the body was not read to the end.
            resp.release()

    def _completion(self, body: bytes) -> dict[str, Any]:
        try:
            completion = orjson.loads(body)
        except orjson.JSONDecodeError:
            completion = None
        if not isinstance(completion, dict):
            raise UpstreamError(f"The upstream provider {self.name!r} answered with invalid JSON.")
        error = completion.get("error")
        if error and "choices" not in completion:
            raise UpstreamError(f"The upstream provider {self.name!r} failed: {_message(error)}")
        return completion

    async def _replay(
        self, translator: ChatStreamTranslator, completion: dict[str, Any]
    ) -> AsyncGenerator[bytes, None]:
        events = translator.start()
        events += translator.feed(completion_as_chunk(completion))
        yield _encode(events + translator.finish(int(time.time())))

    async def _translate(
        self, resp: Answer, translator: ChatStreamTranslator
    ) -> AsyncGenerator[bytes, None]:
        """Upstream chunks in, Responses events out: one bytes object per upstream read.

        Until something has been sent, a failure is raised, so the client gets a plain HTTP
        error (502); after that it is a `response.failed`. Transport errors propagate for the
        relay to turn into `response.failed` (or a 502/504 before the first byte).
        """
        parser = SSEParser()
        events = translator.start()
        sent = False
        ended = False
        # The body's reads raising (UPSTREAM_ERRORS) is left to the relay.
        async for data in resp:
            try:
                ended = _feed(parser, data, translator, events)
            except _StreamFault as fault:
                if not sent:
                    raise UpstreamError(
                        f"The upstream provider {self.name!r} failed: {fault.message}"
                    ) from None
                yield _encode(events + translator.fail(fault.code, fault.message))
                return
            if ended:
                break
            # The lifecycle pair alone waits for the first real event, so that an upstream
            # failing at once is still a plain HTTP error.
            if len(events) > (0 if sent else 2):
                yield _encode(events)
                events, sent = [], True
        if translator.finish_reason is None:
            message = (
                f"The upstream provider {self.name!r} ended the stream before the response "
                "was complete."
            )
            if not sent:
                raise UpstreamError(message)
            events += translator.fail("upstream_error", message)
        else:
            events += translator.finish(int(time.time()))
        yield _encode(events)


def _feed(
    parser: SSEParser, data: bytes, translator: ChatStreamTranslator, events: list[dict[str, Any]]
) -> bool:
    """Feed one upstream read, appending its events; whether `[DONE]` came."""
    try:
        frames = parser.feed(data)
        for frame in frames:
            if frame.data.startswith(b"[DONE]"):
                return True
            chunk = orjson.loads(frame.data)
            if not isinstance(chunk, dict):
                raise ValueError("a chunk is not a JSON object")
            error = chunk.get("error")
            if error or frame.event == "error":
                code = error.get("code") if isinstance(error, dict) else None
                raise _StreamFault(
                    code if isinstance(code, str) and code else "upstream_error", _message(error)
                )
            events += translator.feed(chunk)
    except ValueError as exc:  # orjson.JSONDecodeError, ChatStreamError, an oversized frame
        raise _StreamFault("upstream_error", f"invalid chat completion stream: {exc}") from exc
    return False


def _encode(events: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_event(orjson.dumps(ev), ev["type"]) for ev in events)


def _message(error: object) -> str:
    message = error.get("message") if isinstance(error, dict) else error
    return str(message or "the upstream reported an error")[:500]

"""An OpenAI-compatible fake upstream serving the mock model over HTTP, as JSON or SSE."""

import asyncio
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web

from gateway.errors import envelope
from gateway.mockgen import build_chat_completion, build_response
from gateway.streaming.sse import encode_event

MODELS: Final = ("mock-model",)
MAX_BODY: Final = 64 * 1024 * 1024
_TOKEN_DELAY: Final = web.AppKey("mock_token_delay", float)  # seconds between deltas

_DELTAS: Final = frozenset({"response.output_text.delta", "response.function_call_arguments.delta"})
_DONE: Final = b"data: [DONE]\n\n"

Frame = tuple[bytes, bool]  # SSE bytes, and whether it carries a token delta


def create_mock_upstream(*, token_delay_ms: float = 0) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[_TOKEN_DELAY] = max(token_delay_ms, 0) / 1000
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/responses", create_response)
        app.router.add_post(f"{prefix}/chat/completions", create_chat_completion)
        app.router.add_get(f"{prefix}/models", list_models)
    return app


async def create_response(request: web.Request) -> web.StreamResponse:
    body = await _read_body(request)
    run = build_response(body, model=body["model"])
    if body.get("stream") is not True:
        return _json(run.response)
    frames = (
        (encode_event(orjson.dumps(ev), ev["type"]), ev["type"] in _DELTAS) for ev in run.events()
    )
    return await _stream(request, frames)


async def create_chat_completion(request: web.Request) -> web.StreamResponse:
    body = await _read_body(request)
    chat = build_chat_completion(body, model=body["model"])
    if body.get("stream") is not True:
        return _json(chat.completion())
    deltas = range(1, 1 + chat.answer.output_tokens)  # chunk 0 only opens the message
    frames: list[Frame] = [
        (encode_event(orjson.dumps(chunk)), n in deltas) for n, chunk in enumerate(chat.chunks())
    ]
    frames.append((_DONE, False))
    return await _stream(request, frames)


async def list_models(request: web.Request) -> web.Response:
    models = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in MODELS]
    return _json({"object": "list", "data": models})


async def _read_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise _invalid("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _invalid(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    return body


async def _stream(request: web.Request, frames: Iterable[Frame]) -> web.StreamResponse:
    delay = request.app[_TOKEN_DELAY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **_headers(),
        }
    )
    try:
        await response.prepare(request)
        for frame, is_delta in frames:
            if is_delta and delay > 0:
                await asyncio.sleep(delay)
            await response.write(frame)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client hung up mid-stream; there is no one left to tell
    return response


def _json(obj: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, content_type="application/json", headers=_headers()
    )


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> web.HTTPError:
    text = orjson.dumps(envelope(message, "invalid_request_error", param, code)).decode()
    return web.HTTPBadRequest(text=text, content_type="application/json", headers=_headers())


def _headers() -> dict[str, str]:
    return {"x-request-id": "req_" + secrets.token_hex(16)}

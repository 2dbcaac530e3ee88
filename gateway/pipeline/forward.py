"""forward: hand the call to a target's provider; relay its stream or pass its JSON on."""

from __future__ import annotations

from aiohttp import web

from gateway.codec import dumps, loads, raw_json_response
from gateway.errors import UpstreamError
from gateway.models import Call, Usage
from gateway.providers.base import Reply
from gateway.routing import pick
from gateway.state import client_view, save
from gateway.streaming.relay import relay


async def forward(call: Call) -> web.StreamResponse:
    target, account = pick(call.targets)
    call.target, call.account = target, account
    if call.body.get("model") != target.model:
        call.body["model"] = target.model
        call.changed = True
    for name in target.provider.settings.drop_fields:
        if call.body.pop(name, None) is not None:
            call.changed = True
    headers = {
        "x-request-id": call.request_id,
        "x-gateway-provider": target.provider.name,
        "x-gateway-model": target.model,
    }
    async with target.provider.send(call, target, account) as reply:
        if reply.chunks is not None:
            assert call.request is not None
            response, tap, stayed = await relay(
                call.request, reply.chunks, target.provider.name, headers,
                on_terminal=(lambda final: save(call, client_view(call, final)))
                if call.stateful else None,
            )
            call.status, call.client_gone = 200, not stayed
            call.response = tap.response
            call.usage = Usage.from_response(call.response)
            return response
        answered = answer(call, reply, headers)
        if call.stateful and call.response is not None and answered.status < 300:
            await save(call, client_view(call, call.response))
            answered.body = dumps(call.response)
        return answered


def answer(call: Call, reply: Reply, headers: dict[str, str]) -> web.Response:
    """A buffered upstream answer: success and client errors pass through, faults become 502."""
    name = call.target.provider.name if call.target else "upstream"
    status = reply.status
    if status in (401, 403, 407):
        # The upstream refused the gateway's own credentials: not the caller's fault.
        raise UpstreamError(
            f"The upstream provider {name!r} refused the gateway's credentials (HTTP {status})."
        )
    if status >= 500:
        raise UpstreamError(
            f"The upstream provider {name!r} failed (HTTP {status}): {_message(reply.body)}"
        )
    call.status = status
    if status < 300:
        try:
            decoded = loads(reply.body)
        except ValueError:
            raise UpstreamError(
                f"The upstream provider {name!r} answered with invalid JSON."
            ) from None
        call.response = decoded if isinstance(decoded, dict) else None
        call.usage = Usage.from_response(call.response)
        return raw_json_response(reply.body, status, headers)
    for passed in ("retry-after", "retry-after-ms"):
        if passed in reply.headers:
            headers[passed] = reply.headers[passed]
    if _envelope(reply.body) is None:
        return raw_json_response(_wrap(reply.body, status), status, headers)
    return raw_json_response(reply.body, status, headers)


def _envelope(body: bytes) -> dict[str, object] | None:
    try:
        decoded = loads(body)
    except ValueError:
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        return decoded
    return None


def _message(body: bytes) -> str:
    envelope = _envelope(body)
    if envelope is not None:
        error = envelope["error"]
        assert isinstance(error, dict)
        return str(error.get("message", ""))[:500]
    return body[:500].decode(errors="replace")


def _wrap(body: bytes, status: int) -> bytes:
    return dumps(
        {
            "error": {
                "message": _message(body) or f"HTTP {status} from the upstream",
                "type": "invalid_request_error",
                "param": None,
                "code": "upstream_error",
            }
        }
    )

"""WebSocket mode on /responses: `response.create` events in, each response's events out.

Every create runs the POST /responses pipeline (validation, routing, limits, state) and the
same relay, whose frames go out as one JSON text message per event. A refused create is an
`error` event, and the socket stays open for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from random import getrandbits
from typing import Any, Final

from aiohttp import WSCloseCode, WSMsgType, web

from gateway import metrics, pipeline
from gateway.affinity import served
from gateway.codec import dumps, loads, parse_object
from gateway.errors import AuthenticationError, GatewayError, ServiceUnavailableError
from gateway.events import COMPLETED, CREATED
from gateway.keys import CALL, DEPS, DRAINING, TRACE
from gateway.limits.usage import Usage
from gateway.models import Call, Deps
from gateway.observability import observe
from gateway.pipeline import Stage
from gateway.pipeline.forward import client_left, forward
from gateway.pipeline.limit import settle
from gateway.pipeline.parse import parse_body
from gateway.routes.responses import CREATE_RESPONSE
from gateway.routes.socket_events import (
    create_body,
    create_headers,
    credentials,
    is_warmup,
    stream_id,
    warmup_response,
)
from gateway.state import as_items
from gateway.store.connection import ConnectionStore
from gateway.streaming.ws_sink import WebSocketSink, error_event

log = logging.getLogger("gateway")

INTERNAL_ERROR: Final = "The gateway had an error while processing your request."
# The body comes from a frame, not from the HTTP request: every other stage is POST's.
CREATE_OVER_SOCKET: Final[tuple[Stage, ...]] = tuple(
    stage for stage in CREATE_RESPONSE if stage is not parse_body
)
# Client events read ahead of the create in flight; past them the socket is not read (TCP
# backpressure), so a client cannot queue unbounded work or memory.
MAX_QUEUED: Final = 16
# Pings from the gateway: a peer gone without a close is noticed within this (and half more).
HEARTBEAT_S: Final = 30.0


async def responses_socket(request: web.Request) -> web.StreamResponse:
    """GET /responses with `Upgrade: websocket`; a plain GET is the 405 it always was."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise web.HTTPMethodNotAllowed(request.method, ["POST"])
    if request.app[DRAINING]:
        raise ServiceUnavailableError(
            "The gateway replica is shutting down; connect again.",
            code="gateway_shutdown",
            headers={"retry-after": "1"},
        )
    deps = request.app[DEPS]
    authorization, protocol = credentials(request)
    await deps.keys.authenticate(authorization)  # refused before the upgrade: a 401
    socket = web.WebSocketResponse(
        protocols=(protocol,) if protocol else (),
        max_msg_size=deps.settings.server.max_body_bytes,
        heartbeat=HEARTBEAT_S,
    )
    await socket.prepare(request)
    try:
        await Connection(request, deps, socket, authorization).serve()
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client drops the connection without a close
        # frame (a CLI exiting does): for a socket that is an ordinary end, logged 101 like a
        # close by frame. A create in flight ended with it, in its own line and settlement.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    return socket


class Connection:
    """One open socket: reads client events, runs their creates one at a time, in order."""

    def __init__(
        self,
        request: web.Request,
        deps: Deps,
        socket: web.WebSocketResponse,
        authorization: str | None,
    ) -> None:
        self.request = request
        self.socket = socket
        self.authorization = authorization
        self.store = ConnectionStore(deps.store)
        self.deps = dataclasses.replace(deps, store=self.store)
        self.headers = create_headers(request, authorization)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        self.creates = 0
        self.busy = False
        self.draining = False
        self.ended_by: GatewayError | None = None  # the gateway ended the socket: why
        self.worker: asyncio.Task[None]  # runs the creates; made when the socket is served
        self.ending: asyncio.Task[None] | None = None  # the gateway closing the socket

    async def serve(self) -> None:
        metrics.WEBSOCKETS.inc()
        self.worker = asyncio.create_task(self._work())
        app = self.request.app
        self.deps.sockets.add(self, self.deps.keys, lambda: bool(app[DRAINING]))
        try:
            async for message in self.socket:
                if message.type is WSMsgType.TEXT:
                    await self.queue.put(message.data.encode())
                elif message.type is WSMsgType.BINARY:
                    await self.queue.put(message.data)
        finally:
            # The client closed or left: a response in flight ends with it, settled as such.
            self.deps.sockets.discard(self)
            self.worker.cancel()
            metrics.WEBSOCKETS.dec()
            metrics.WEBSOCKET_CREATES.observe(self.creates)
            if self.busy:
                # aiohttp may cancel this task once the socket is closed: the create in
                # flight still ends (and settles) in its own task.
                await asyncio.shield(asyncio.gather(self.worker, return_exceptions=True))

    async def _work(self) -> None:
        """The creates, in the order sent; once the process drains, none starts: the socket
        closes with 1001 as soon as the one in flight has ended."""
        while not self._draining():
            data = await self.queue.get()
            if self._draining():
                break
            self.busy = True
            try:
                await self._event(data)
            finally:
                self.busy = False
        await self._close(WSCloseCode.GOING_AWAY, b"gateway shutting down")

    def _draining(self) -> bool:
        return self.draining or bool(self.request.app[DRAINING])

    def drain(self) -> None:
        """The response in flight finishes; then 1001, and the client reconnects to another
        replica. An idle socket closes now."""
        if self.draining:
            return
        self.draining = True
        if not self.busy:
            self.worker.cancel()
            self.ending = asyncio.create_task(
                self._close(WSCloseCode.GOING_AWAY, b"gateway shutting down")
            )

    def refuse(self, error: AuthenticationError) -> None:
        """The key was disabled or deleted: the response in flight ends (settled), the client
        gets the error, and the socket closes with 1008."""
        if self.ended_by is None:
            self.ended_by = error
            self.ending = asyncio.create_task(self._end(error))

    async def _end(self, error: AuthenticationError) -> None:
        self.worker.cancel()
        await asyncio.wait([self.worker])  # its create ends (settled) before the socket
        await self._send(error_event(error))
        await self._close(WSCloseCode.POLICY_VIOLATION, b"key no longer valid")

    async def _close(self, code: int, message: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.socket.close(code=code, message=message)

    async def _send(self, event: dict[str, Any], sink: WebSocketSink | None = None) -> None:
        with contextlib.suppress(ConnectionError):
            await (sink or WebSocketSink(self.socket)).send_event(event)

    async def _event(self, data: bytes) -> None:
        """One client event: a create runs; anything else is answered with an `error` event.
        Either way it is logged, counted and settled once, like a POST."""
        request = self.request
        call = Call(request, self.deps, _request_id(), self.headers, request[TRACE])
        request[CALL] = call
        self.creates += 1
        sink = WebSocketSink(self.socket)
        error: GatewayError | None = None
        try:
            event = parse_object(data, "application/json")
            sink = call.sink = WebSocketSink(self.socket, stream_id(event))
            body = create_body(event)
            call.raw, call.body = dumps(body), body
            await pipeline.run(call, CREATE_OVER_SOCKET)
            warmup = is_warmup(event)
            if warmup:
                await self._warm(call, sink)
            else:
                answer = await forward(call)
                if not sink.started:
                    await self._answered(call, answer, sink)
            self._remember(call, warmup=warmup)
        except GatewayError as exc:
            error = exc
            call.status = exc.status
            await self._send(error_event(exc), sink)
        except Exception:
            # A fault of the gateway's own: this create gets the generic 500, and the socket
            # still serves the next one.
            log.exception("unhandled error", extra={"request_id": call.request_id})
            error = GatewayError(INTERNAL_ERROR, code="internal_error")
            call.status = error.status
            await self._send(error_event(error), sink)
        except asyncio.CancelledError:
            client_left(call)
            if self.ended_by is not None:  # the gateway ended it: the key was disabled
                call.status, call.client_gone = self.ended_by.status, False
            raise
        finally:
            settle(call)
            observe(request, call.status or 500, call.started, error, "create_response")
            request.pop(CALL, None)

    async def _answered(self, call: Call, answer: web.StreamResponse, sink: WebSocketSink) -> None:
        """An answer that was not a stream: an upstream's refusal becomes the `error` event;
        a whole Response (an upstream that does not stream) its created and completed ones."""
        body = answer.body if isinstance(answer, web.Response) else None
        try:
            decoded = loads(body) if isinstance(body, bytes) and body else None
        except ValueError:
            decoded = None
        if answer.status >= 400:
            detail = decoded.get("error") if isinstance(decoded, dict) else None
            if not isinstance(detail, dict):
                detail = {"type": "server_error", "code": None, "message": "upstream error"}
            event = {"type": "error", "status": answer.status, "error": detail}
            event.update((k, detail.get(k)) for k in ("code", "message", "param"))
            await self._send(event, sink)
            return
        response = call.response if call.response is not None else decoded
        if isinstance(response, dict):
            await self._whole(response, sink)

    async def _whole(self, response: dict[str, Any], sink: WebSocketSink) -> None:
        """A whole Response as the events a stream of it begins and ends with."""
        created = {**response, "status": "in_progress", "output": []}
        await self._send({"type": CREATED, "sequence_number": 0, "response": created}, sink)
        await self._send({"type": COMPLETED, "sequence_number": 1, "response": response}, sink)

    async def _warm(self, call: Call, sink: WebSocketSink) -> None:
        """A warm-up (`generate: false`) was checked and admitted like any create; nothing
        goes upstream, and its empty Response is answered, settled at no tokens and kept on
        this socket for the next create to chain on."""
        call.response = warmup_response(call.body)
        call.usage = Usage()
        call.status = 200
        await self._whole(call.response, sink)

    def _remember(self, call: Call, *, warmup: bool = False) -> None:
        """A `store: false` response, and any warm-up, stays chainable on this connection (a
        zero data retention key's does not: it may not chain at all)."""
        response, key = call.response, call.principal
        if response is None or key is None or key.zdr or (call.store and not warmup):
            return
        rid = response.get("id")
        if not isinstance(rid, str):
            return
        chained = call.previous is not None or call.conversation is not None
        try:
            # The input as the upstream read it (redacted by the guardrails): a chained turn's
            # own items were set apart from its context; an unchained turn's are the body's.
            items = call.input_items if chained else as_items(call.body.get("input"))
        except GatewayError:
            items = []
        record = {"owner": key.owner, "response": response, "input": items, "chain": call.chain}
        if call.target is not None and call.account is not None:
            # Where it was served: the next turn of the chain goes there, as a stored one's.
            record["served"] = served(
                call.target.provider.name, call.account.name, call.target.model
            )
        self.store.remember(rid, record)


def _request_id() -> str:
    return f"req_{getrandbits(128):032x}"

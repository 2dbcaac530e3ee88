"""Serving: the runner (protocol errors in the envelope too) and the SIGTERM drain sequence."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import resource
import signal
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast

import orjson
import uvloop
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.app import create_app
from gateway.config import ServerSettings, Settings
from gateway.errors import envelope
from gateway.keys import DEPS, DRAINING, WORKERS
from gateway.observability import setup_logging

log = logging.getLogger("gateway")

DEFAULT_SOMAXCONN_FILE = Path("/proc/sys/net/core/somaxconn")


class _EnvelopeRequestHandler(RequestHandler):
    """One client connection: answers what never reaches a handler (a malformed request line,
    a bad header) as JSON without logging the bytes the client sent, closes a connection that
    has not sent a whole request head within `header_timeout_s`, and marks one opened past
    `max_connections` so that its requests are refused."""

    __slots__ = ("_head_timer", "over_limit")

    over_limit: bool
    _head_timer: asyncio.TimerHandle | None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = cast(_EnvelopeServer, self._manager)
        self.over_limit = server.open_connections >= server.max_connections
        self._head_timer = None
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._cancel_head_timer()
        elif self._head_timer is None and self._waiter is not None and not self._force_close:
            # Between requests (no handler running) these bytes start the next request's head.
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        server = self._manager
        if isinstance(server, _EnvelopeServer) and server.header_timeout_s > 0:
            self._head_timer = self._loop.call_later(server.header_timeout_s, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._waiter is not None and not self._messages:
            log.debug("closing a connection that sent no whole request head in time")
            self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError | web.RequestPayloadError):
            # The rest of a body that failed to decode, read after the 400 went out: the
            # client's fault, already answered.
            log.debug("dropped the rest of a broken request body: %s", type(exc).__name__)
            return
        super().log_exception(*args, **kw)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own handler logs a parse error's text, which quotes the raw request bytes,
        # credentials included: only the kind of error is logged for those.
        kind = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            log.error("error answering a request from %s: %s", request.remote, kind, exc_info=exc)
        else:
            log.info("unparsable HTTP request from %s: %s", request.remote, kind)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had started: no error answer can follow")
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        text = "The request could not be parsed as HTTP." if status == 400 else reason
        code = None
        if isinstance(exc, ContentEncodingError):
            text = (
                "The gateway cannot decode the request's Content-Encoding: "
                "send gzip, deflate or an uncompressed body."
            )
            code = "invalid_content_encoding"
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = envelope(text, kind, None, code)
        out = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
        out.force_close()
        return out


class _EnvelopeServer(web.Server):
    header_timeout_s: float
    max_connections: int
    open_connections: int

    def __call__(self) -> RequestHandler:
        return _EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        self.open_connections += 1
        super().connection_made(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.open_connections -= 1
        super().connection_lost(handler, exc)


class GatewayRunner(web.AppRunner):
    def __init__(self, app: web.Application, settings: ServerSettings, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=settings.keepalive_timeout_s, **kwargs)
        self._server_settings = settings

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _EnvelopeServer
        edge = cast(_EnvelopeServer, server)
        edge.header_timeout_s = self._server_settings.header_timeout_s
        edge.max_connections = self._server_settings.max_connections
        edge.open_connections = 0
        return server


async def drain(runner: web.AppRunner, app: web.Application, grace_s: float) -> None:
    """Refuse new connections, let open streams run for `grace_s`, then end the rest with
    their terminal event (never a cut)."""
    for site in list(runner.sites):
        await site.stop()
    streams = app[DEPS].streams
    if not await streams.wait_empty(grace_s):
        log.warning("ending %d streams still open after the %.0f s grace", len(streams), grace_s)
        streams.abort_all()
        await streams.wait_empty(5)


def make_runner(app: web.Application, settings: Settings) -> GatewayRunner:
    return GatewayRunner(
        app,
        settings.server,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=settings.server.shutdown_grace_s,
    )


def raise_fd_limit(max_connections: int) -> int:
    """Lifts the soft open-file limit towards what `max_connections` clients (and as many
    upstream connections) need, so the connection limit answers 503 before accept() fails;
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * max_connections + 256
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < max_connections + 256:
        log.warning(
            "the open-file limit (%d) is below server.max_connections (%d): raise `ulimit -n`"
            " or lower max_connections, or clients past the limit are refused unanswered",
            soft,
            max_connections,
        )
    return soft


def listen_backlog(wanted: int, somaxconn_file: Path = DEFAULT_SOMAXCONN_FILE) -> int:
    """The backlog to ask of listen(): `server.backlog`, or the kernel's cap on it
    (net.core.somaxconn, which listen() applies silently) when that is lower, with a warning."""
    try:
        cap = int(somaxconn_file.read_text().strip())
    except (OSError, ValueError):
        return wanted
    if cap < wanted:
        log.warning(
            "net.core.somaxconn (%d) is below server.backlog (%d): a burst of more than %d"
            " connects loses some; raise it with `sysctl -w net.core.somaxconn=%d`",
            cap,
            wanted,
            cap,
            wanted,
        )
        return cap
    return wanted


async def serve(settings: Settings, host: str, port: int, *, reuse_port: bool, banner: str) -> None:
    """Serve until SIGTERM or SIGINT, then drain: /readyz fails at once, new connections are
    refused after `shutdown_delay_s`, open requests get `shutdown_grace_s` to finish."""
    raise_fd_limit(settings.server.max_connections)
    app = create_app(settings)
    runner = make_runner(app, settings)
    await runner.setup()
    # Everything made at start-up lives as long as the process: keep it out of every
    # collection, so a full one scans only what requests left behind.
    gc.collect()
    gc.freeze()
    handing_back: asyncio.Task[None] | None = None
    try:
        backlog = listen_backlog(settings.server.backlog)
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=backlog)
        await site.start()
        if banner:
            print(banner, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        app[DRAINING].append(True)
        # Jobs stop being taken at once; those still running after the grace go back to the queue.
        handing_back = asyncio.create_task(app[WORKERS].stop(settings.server.shutdown_grace_s))
        # Endpoints take time to drop a pod that reports unready: keep serving meanwhile.
        await asyncio.sleep(settings.server.shutdown_delay_s)
        await drain(runner, app, settings.server.shutdown_grace_s)
    finally:
        await runner.cleanup()
        if handing_back is not None:
            await handing_back


def run(settings: Settings, host: str, port: int, banner: str, *, reuse_port: bool) -> None:
    """One serving process on its own uvloop (a `--workers` child too: importable by spawn)."""
    if multiprocessing.parent_process() is not None:
        setup_logging(settings.server.log_level, settings.server.access_log)
    uvloop.run(serve(settings, host, port, reuse_port=reuse_port, banner=banner))

"""Serving: the runner (protocol errors in the envelope too) and the SIGTERM drain sequence."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import signal
from http import HTTPStatus

import orjson
import uvloop
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.app import create_app
from gateway.config import Settings
from gateway.keys import DEPS, DRAINING, WORKERS
from gateway.observability import setup_logging

log = logging.getLogger("gateway")


class _EnvelopeRequestHandler(RequestHandler):
    """Answers what never reaches a handler (a malformed request line, a bad header) as JSON."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        resp = super().handle_error(request, status, exc, message)
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        text = "The request could not be parsed as HTTP." if status == 400 else reason
        body = {
            "error": {
                "message": text,
                "type": "invalid_request_error" if status < 500 else "server_error",
                "param": None,
                "code": None,
            }
        }
        out = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
        out.force_close()
        del resp
        return out


class _EnvelopeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _EnvelopeServer
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
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=settings.server.shutdown_grace_s,
    )


async def serve(settings: Settings, host: str, port: int, *, reuse_port: bool, banner: str) -> None:
    """Serve until SIGTERM or SIGINT, then drain: /readyz fails at once, new connections are
    refused after `shutdown_delay_s`, open requests get `shutdown_grace_s` to finish."""
    app = create_app(settings)
    runner = make_runner(app, settings)
    await runner.setup()
    # Everything made at start-up lives as long as the process: keep it out of every
    # collection, so a full one scans only what requests left behind.
    gc.collect()
    gc.freeze()
    handing_back: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
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

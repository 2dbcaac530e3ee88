"""The benchmark's floor: a bare aiohttp + uvloop pass-through with no auth and no validation."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from upstream import serve  # bench/, beside this script

SESSION: Final = web.AppKey("session", ClientSession)
UPSTREAM: Final = web.AppKey("upstream", str)


async def create_response(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    async with session.post(
        request.app[UPSTREAM], data=body, headers={"Content-Type": "application/json"}
    ) as upstream:
        if upstream.content_type != "text/event-stream":
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                content_type=upstream.content_type,
            )
        response = web.StreamResponse(
            status=upstream.status,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the load generator closed its sockets at the end of a run
        return response


def create_app(upstream: str) -> web.Application:
    async def session(app: web.Application) -> AsyncIterator[None]:
        connector = TCPConnector(limit=0)
        async with ClientSession(connector=connector, timeout=ClientTimeout(total=None)) as http:
            app[SESSION] = http
            yield

    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/") + "/responses"
    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/responses", create_response)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--upstream", default="http://127.0.0.1:9100/v1", help="its base URL")
    args = parser.parse_args()
    serve(create_app(args.upstream), args.host, args.port)


if __name__ == "__main__":
    main()

"""Letting go of gateways a test has finished with.

aiohttp caches each handler's middleware chain together with the app it belongs to (up to
1,024 chains, `aiohttp.web_app._cached_build_middleware`), which keeps every finished test's
gateway alive: gigabytes by the end of the run, and garbage-collector pauses of seconds that
fail whichever timed test is running then. One process serves one app, so this costs nothing
outside tests.
"""

from __future__ import annotations

from aiohttp import web_app


def forget_finished_apps() -> None:
    cache = getattr(web_app, "_cached_build_middleware", None)
    if cache is not None:
        cache.cache_clear()

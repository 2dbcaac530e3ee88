"""GET /console and its static files: the page with no-cache, the files under a content hash
with a year's immutable caching, every answer with a strict Content-Security-Policy.

Served only when the admin API is on (the admin key's variable is set): the page does nothing
without it. The files are read once, at start-up, from the package.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.config import Settings

STATIC: Final = Path(__file__).with_name("static")
PAGE: Final = "index.html"
PREFIX: Final = "/console/static/"

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
PAGE_CACHE: Final = "no-cache"
FILE_CACHE: Final = "public, max-age=31536000, immutable"
_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Bundle:
    version: str  # a hash of every file: a changed file is a new URL
    page: bytes
    files: dict[str, Asset]


@cache
def bundle() -> Bundle:
    files: dict[str, Asset] = {}
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        if path.name == PAGE or not path.is_file():
            continue
        body = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + body + b"\0")
        kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        files[path.name] = Asset(body, kind or "application/octet-stream")
    version = digest.hexdigest()[:16]
    page = (STATIC / PAGE).read_bytes().replace(b"{{static}}", f"{PREFIX}{version}".encode())
    return Bundle(version, page, files)


def add_console_routes(router: web.UrlDispatcher, settings: Settings) -> None:
    """The console's routes, when the admin API is on; otherwise /console stays a 404."""
    if settings.admin_key_sha256 is None:
        return
    bundle()  # read the files at start-up, not on the first request
    router.add_get("/console", console_page, allow_head=False)
    router.add_get("/console/", console_page, allow_head=False)
    router.add_get(PREFIX + "{version}/{name}", console_file, allow_head=False)


def _secured(response: web.Response) -> web.Response:
    response.headers.update(SECURITY_HEADERS)
    return response


async def console_page(request: web.Request) -> web.Response:
    response = web.Response(body=bundle().page, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = PAGE_CACHE
    return _secured(response)


async def console_file(request: web.Request) -> web.Response:
    found = bundle()
    asset = found.files.get(request.match_info["name"])
    if request.match_info["version"] != found.version or asset is None:
        raise web.HTTPNotFound()
    response = web.Response(body=asset.body, content_type=asset.content_type)
    if asset.content_type.startswith("text/"):
        response.charset = "utf-8"
    response.headers["Cache-Control"] = FILE_CACHE
    return _secured(response)

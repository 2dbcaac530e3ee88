"""GET /console over HTTP: served only with an admin key, under strict security headers, its
files versioned by content and cached for good, the page itself revalidated."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.app import create_app
from gateway.console.routes import STATIC, bundle
from tests.support.configs import UPSTREAM_KEY, settings_from

Client = TestClient[Any, Any]
SECURITY = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def assert_secured(headers: Any) -> None:
    for name, value in SECURITY.items():
        assert headers[name] == value
    csp = {
        part.split()[0]: part.split()[1:] for part in headers["Content-Security-Policy"].split("; ")
    }
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["img-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in headers["Content-Security-Policy"]


def static_urls(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page)


async def test_the_page_and_its_files(gateway: Client) -> None:
    resp = await gateway.get("/console")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert_secured(resp.headers)
    page = await resp.text()
    assert "<script>" not in page  # nothing inline
    assert "style=" not in page
    urls = static_urls(page)
    assert {u.rsplit("/", 1)[1] for u in urls} >= {"app.js", "console.css"}
    version = bundle().version
    for url in urls:
        assert url.startswith(f"/console/static/{version}/")
        got = await gateway.get(url)
        assert got.status == 200, url
        assert got.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert_secured(got.headers)
        assert await got.read() == (STATIC / url.rsplit("/", 1)[1]).read_bytes()
    js = await gateway.get(f"/console/static/{version}/app.js")
    assert js.content_type == "text/javascript"


async def test_every_module_is_served(gateway: Client) -> None:
    version = bundle().version
    for path in STATIC.glob("*.js"):
        resp = await gateway.get(f"/console/static/{version}/{path.name}")
        assert resp.status == 200, path.name


async def test_an_old_version_or_unknown_file_is_a_404(gateway: Client) -> None:
    for url in (
        "/console/static/0000000000000000/app.js",
        f"/console/static/{bundle().version}/nope.js",
        f"/console/static/{bundle().version}/index.html",
        f"/console/static/{bundle().version}/..%2F..%2Froutes.py",
    ):
        resp = await gateway.get(url)
        assert resp.status == 404, url
        assert (await resp.json())["error"]["code"] == "unknown_url"


async def test_no_admin_key_no_console(aiohttp_client: AiohttpClient, config: Any) -> None:
    gateway = await aiohttp_client(create_app(settings_from(config, {"UP_KEY": UPSTREAM_KEY})))
    for url in ("/console", f"/console/static/{bundle().version}/app.js"):
        resp = await gateway.get(url)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "unknown_url"


def test_the_scripts_never_write_html() -> None:
    # Data reaches the page as text only: no HTML parsing, no string evaluation.
    banned = (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
    )
    for path in Path(STATIC).glob("*.js"):
        text = path.read_text()
        for word in banned:
            assert word not in text, f"{path.name} uses {word}"
    for word in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
        for path in Path(STATIC).glob("*.js"):
            assert word not in path.read_text(), f"{path.name} uses {word}"

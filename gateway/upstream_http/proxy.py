"""Which origins the environment sends through a proxy (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)."""

from __future__ import annotations

from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment  # type: ignore[attr-defined]


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for url, or None when it goes direct."""
    parts = urlsplit(url)
    proxies = getproxies_environment()
    proxy = proxies.get(parts.scheme.lower())
    if not proxy or not parts.hostname:
        return None
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if proxy_bypass_environment(host, proxies):
        return None
    return proxy

"""API keys: the gateway's own, kept as SHA-256 digests, never the providers'."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from gateway.config import KeySettings
from gateway.errors import AuthenticationError


class KeyRing:
    """Finds the key a bearer token belongs to."""

    def __init__(self, keys: Iterable[KeySettings], admin_sha256: str | None = None) -> None:
        self._by_digest = {k.sha256: k for k in keys if k.sha256}
        self._admin = admin_sha256

    async def authenticate(self, authorization: str | None) -> KeySettings:
        """The caller behind an Authorization header, or AuthenticationError."""
        return self.lookup(authorization)

    def lookup(self, authorization: str | None) -> KeySettings:
        token = bearer_token(authorization)
        found = hashlib.sha256(token.encode()).hexdigest()
        key = self._by_digest.get(found)
        # The dict is keyed by digests, so its timing tells nothing about the secret itself;
        # the final comparison is constant-time all the same.
        if key is None or not hmac.compare_digest(key.sha256, found) or key.disabled:
            raise AuthenticationError(f"Incorrect API key provided: {redact(token)}.")
        return key

    def is_admin(self, authorization: str | None) -> bool:
        if self._admin is None:
            return False
        token = bearer_token(authorization)
        return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), self._admin)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code=None,
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "The Authorization header must be 'Bearer <your gateway key>'.", code=None
        )
    return token


def redact(token: str) -> str:
    return f"{token[:3]}***{token[-4:]}" if len(token) >= 12 else "***"

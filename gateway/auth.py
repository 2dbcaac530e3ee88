"""Who is calling: static keys and admin-made keys (SHA-256 digests), or OAuth2 bearer JWTs."""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from gateway.config import ADMIN_KEY_ENV, JwtSettings, KeySettings, Settings, digest
from gateway.errors import AuthenticationError
from gateway.keystore import KeyStore, stored_key

if TYPE_CHECKING:
    from gateway.jwt_auth import JwtVerifier

# A key disabled, changed or deleted on another replica stops working here within this.
CACHE_TTL_S: Final = 1.0
# Bounds memory under a flood of distinct wrong keys (each is remembered as wrong for CACHE_TTL_S).
MAX_CACHED: Final = 10_000
_JWT_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(slots=True)
class _Cached:
    key: KeySettings | None
    until: float


class KeyRing:
    """Finds the caller behind an Authorization header: config keys, stored keys, then JWTs.

    A stored key costs at most one store round trip per CACHE_TTL_S on this replica, however
    many requests use it at once; unknown digests are cached too.
    """

    def __init__(
        self,
        keys: Iterable[KeySettings],
        admin_sha256: str | None = None,
        *,
        store: KeyStore | None = None,
        jwt: JwtSettings | None = None,
        admin_env: str = ADMIN_KEY_ENV,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config_keys = tuple(keys)
        self.config_ids = {k.id: k for k in self.config_keys}
        self.store = store
        self._by_digest = {k.sha256: k for k in self.config_keys if k.sha256}
        self._admin = admin_sha256
        self._admin_env = admin_env
        self._jwt: JwtVerifier | None = None
        if jwt is not None:
            from gateway.jwt_auth import JwtVerifier  # PyJWT only when tokens are configured

            self._jwt = JwtVerifier(jwt)
        self.clock = clock  # injectable: the key cache TTL runs on it
        self._cache: dict[str, _Cached] = {}
        self._fetching: dict[str, asyncio.Task[KeySettings | None]] = {}
        self._generation = 0

    @classmethod
    def for_app(cls, settings: Settings, store: KeyStore) -> KeyRing:
        return cls(
            settings.keys,
            settings.admin_key_sha256,
            store=store,
            jwt=settings.jwt,
            admin_env=settings.admin_key_env,
        )

    async def authenticate(self, authorization: str | None) -> KeySettings:
        """The caller behind an Authorization header, or AuthenticationError (401)."""
        token = bearer_token(authorization)
        found = digest(token)
        # The dict is keyed by digests, so its timing tells nothing about the secret itself;
        # the final comparison is constant-time all the same.
        key = self._by_digest.get(found)
        if key is None or not hmac.compare_digest(key.sha256, found):
            if self._jwt is not None and _JWT_SHAPE.fullmatch(token):
                return await self._jwt.principal(token)
            key = await self._stored(found)
        if key is None:
            raise AuthenticationError(f"Incorrect API key provided: {redact(token)}.")
        if key.disabled:
            raise AuthenticationError(f"The API key {redact(token)} has been disabled.")
        return key

    async def _stored(self, sha256: str) -> KeySettings | None:
        if self.store is None:
            return None
        hit = self._cache.get(sha256)
        if hit is not None and self.clock() < hit.until:
            return hit.key
        task = self._fetching.get(sha256)
        if task is None:
            task = asyncio.ensure_future(self._fetch(self.store, sha256))
            task.add_done_callback(_retrieve)
            self._fetching[sha256] = task
        # Shielded: a caller that goes away must not cancel the lookup the others wait on.
        return await asyncio.shield(task)

    async def _fetch(self, store: KeyStore, sha256: str) -> KeySettings | None:
        started, generation = self.clock(), self._generation
        try:
            record = await store.find(sha256)
        finally:
            if self._fetching.get(sha256) is asyncio.current_task():
                del self._fetching[sha256]
        key = None if record is None else stored_key(record)
        if generation == self._generation:  # no local write raced this read
            self._cache.pop(sha256, None)
            if len(self._cache) >= MAX_CACHED:
                del self._cache[next(iter(self._cache))]  # the oldest entry
            self._cache[sha256] = _Cached(key, started + CACHE_TTL_S)
        return key

    def forget(self, sha256: str) -> None:
        """After a change made through this replica: the next request reads the store."""
        self._generation += 1
        self._cache.pop(sha256, None)
        self._fetching.pop(sha256, None)

    def require_admin(self, authorization: str | None) -> None:
        """Return only for the admin key; otherwise AuthenticationError (401)."""
        if self._admin is None:
            raise AuthenticationError(
                "The admin API is disabled: set the environment variable "
                f"{self._admin_env} to an admin key and restart the gateway."
            )
        token = bearer_token(authorization)
        if not hmac.compare_digest(digest(token), self._admin):
            raise AuthenticationError(
                f"Incorrect admin key provided: {redact(token)}. The admin API takes only the "
                f"admin key (from {self._admin_env})."
            )

    def is_admin(self, authorization: str | None) -> bool:
        try:
            self.require_admin(authorization)
        except AuthenticationError:
            return False
        return True


def _retrieve(task: asyncio.Task[KeySettings | None]) -> None:
    # Marks a failure as seen even when every waiter went away before it came.
    if not task.cancelled():
        task.exception()


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

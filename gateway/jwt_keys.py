"""A token issuer's signing keys: from a PEM file, a JWKS file, or a JWKS URL fetched and kept."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Final, TypeAlias

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.algorithms import AllowedPublicKeys

from gateway.errors import ServiceUnavailableError

SigningKey: TypeAlias = PyJWK | AllowedPublicKeys
# Verification keys by kid; None holds the key for tokens without a kid (a one-key set).
KeysByKid: TypeAlias = dict[str | None, SigningKey]

JWKS_LIFESPAN_S: Final = 300.0
# An unknown kid refetches the JWKS at most this often, so random kids cannot flood the issuer.
JWKS_COOLDOWN_S: Final = 30.0
JWKS_RETRY_S: Final = 1.0


def public_key(pem: str) -> SigningKey:
    """The key of a PEM public key or certificate, or ValueError saying why not."""
    data = pem.encode()
    try:
        if b"BEGIN CERTIFICATE" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key or certificate ({exc})") from None
    if not isinstance(
        key, RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey
    ):
        raise ValueError("not an RSA, EC or EdDSA public key")
    return key


def jwks_keys(jwks: Any) -> KeysByKid:
    """The signing keys of a parsed JWKS document by kid, or ValueError saying why not."""
    if not isinstance(jwks, dict):
        raise ValueError("a JWKS must be a JSON object with 'keys'")
    try:
        found = PyJWKSet.from_dict(jwks)
    except jwt.PyJWTError as exc:
        raise ValueError(f"not a usable JWKS: {exc}") from None
    return _by_kid(found)


def _by_kid(found: PyJWKSet) -> KeysByKid:
    keys = [k for k in found.keys if k.public_key_use in ("sig", None)]
    out: KeysByKid = {k.key_id: k for k in keys if k.key_id}
    if len(keys) == 1:
        out[None] = keys[0]
    return out


class FileKeys:
    """Keys read from a file: a PEM key, for every token, or a JWKS, picked by the token's kid.

    Parsed when made (ValueError says what is wrong); pickled as what they were made from, so
    the settings holding them can go to a worker process.
    """

    __slots__ = ("_by_kid", "_made_from", "_one")

    def __init__(self, pem: str | None = None, jwks: Any = None) -> None:
        self._made_from = (pem, jwks)
        self._one = None if pem is None else public_key(pem)
        self._by_kid = {} if jwks is None else jwks_keys(jwks)

    def get(self, kid: str | None) -> SigningKey | None:
        return self._one if self._one is not None else self._by_kid.get(kid)

    def __reduce__(self) -> tuple[type[FileKeys], tuple[str | None, Any]]:
        return FileKeys, self._made_from


class JwksUrlKeys:
    """The issuer's JWKS, fetched by PyJWKClient in a thread (it blocks) and kept for a while."""

    def __init__(self, url: str) -> None:
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=5)
        self._keys: KeysByKid = {}
        self._expires = -math.inf
        self._retry_at = -math.inf
        self._down = False
        self._lock = asyncio.Lock()

    def _due(self, kid: str | None) -> bool:
        now = time.monotonic()
        return now >= self._retry_at and (kid not in self._keys or now >= self._expires)

    async def get(self, kid: str | None) -> SigningKey | None:
        if self._due(kid):
            async with self._lock:
                if self._due(kid):
                    await self._refresh()
        key = self._keys.get(kid)
        if key is None and self._down:
            raise ServiceUnavailableError(
                "The gateway cannot fetch the token issuer's signing keys (JWKS); try again "
                "shortly.",
                code="jwks_unavailable",
                headers={"retry-after": "1"},
            )
        return key

    async def _refresh(self) -> None:
        try:
            found = await asyncio.to_thread(self._client.get_jwk_set, True)
        except (jwt.PyJWTError, OSError, ValueError):  # unreachable, or not JSON
            # Keys already known keep working while the issuer is unreachable.
            self._down, self._retry_at = True, time.monotonic() + JWKS_RETRY_S
            return
        now = time.monotonic()
        self._keys, self._down = _by_kid(found), False
        self._expires, self._retry_at = now + JWKS_LIFESPAN_S, now + JWKS_COOLDOWN_S

"""OAuth2 bearer tokens (JWTs) as callers: signature, expiry, issuer, audience and scope checked."""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.algorithms import AllowedPublicKeys

from gateway.config import JwtSettings, KeySettings, key_from_fields
from gateway.errors import AuthenticationError, PermissionDeniedError, ServiceUnavailableError

LEEWAY_S: Final = 30
JWKS_LIFESPAN_S: Final = 300.0
# An unknown kid refetches the JWKS at most this often, so random kids cannot flood the issuer.
JWKS_COOLDOWN_S: Final = 30.0
JWKS_RETRY_S: Final = 1.0
# Subjects and projects become parts of Redis keys: no spaces, no hash-tag braces.
_SUBJECT: Final = re.compile(r"[!-z|~]{1,200}")
_PROJECT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")

# Most specific first: InvalidSignatureError is a DecodeError.
_REASONS: Final[tuple[tuple[type[Exception], str], ...]] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf)"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not allowed"),
    (jwt.InvalidKeyError, "the signing key does not fit the token's algorithm"),
    (jwt.DecodeError, "malformed token"),
)


def invalid(reason: str) -> AuthenticationError:
    return AuthenticationError(f"Invalid bearer token: {reason}.")


def load_keys(settings: JwtSettings) -> dict[str | None, PyJWK | AllowedPublicKeys]:
    """The configured verification keys by kid (None: tokens without one), or ValueError."""
    if settings.public_key_pem is not None:
        return {None: _pem_key(settings.public_key_pem)}
    if settings.jwks is None:
        return {}
    if not isinstance(settings.jwks, dict):
        raise ValueError("a JWKS must be a JSON object with 'keys'")
    try:
        found = PyJWKSet.from_dict(settings.jwks)
    except jwt.PyJWTError as exc:
        raise ValueError(f"not a usable JWKS: {exc}") from None
    return _by_kid(found)


def _by_kid(found: PyJWKSet) -> dict[str | None, PyJWK | AllowedPublicKeys]:
    keys = [k for k in found.keys if k.public_key_use in ("sig", None)]
    out: dict[str | None, PyJWK | AllowedPublicKeys] = {k.key_id: k for k in keys if k.key_id}
    if len(keys) == 1:
        out[None] = keys[0]
    return out


def _pem_key(pem: str) -> AllowedPublicKeys:
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


class JwksUrlKeys:
    """The issuer's JWKS, fetched by PyJWKClient in a thread (it blocks) and kept for a while."""

    def __init__(self, url: str) -> None:
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=5)
        self._keys: dict[str | None, PyJWK | AllowedPublicKeys] = {}
        self._expires = -math.inf
        self._retry_at = -math.inf
        self._down = False
        self._lock = asyncio.Lock()

    def _due(self, kid: str | None) -> bool:
        now = time.monotonic()
        return now >= self._retry_at and (kid not in self._keys or now >= self._expires)

    async def get(self, kid: str | None) -> PyJWK | AllowedPublicKeys | None:
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


class JwtVerifier:
    """A verified token becomes a KeySettings with id `jwt:<subject>`, which no key can take."""

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self._keys = load_keys(settings)
        self._remote = JwksUrlKeys(settings.jwks_url) if settings.jwks_url else None
        self._algorithms = list(settings.algorithms)
        self._audience = list(settings.audience)
        self._require = ["exp", "iss", "aud", settings.key_id_claim]

    async def principal(self, token: str) -> KeySettings:
        claims = self._claims(token, await self._key(token))
        self._check_scope(claims)
        return self._key_settings(claims)

    async def _key(self, token: str) -> PyJWK | AllowedPublicKeys:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise invalid("malformed token") from None
        if not isinstance(kid, str | None):
            raise invalid("malformed token")
        if self._remote is not None:
            key = await self._remote.get(kid)
        elif self.settings.public_key_pem is not None:
            key = self._keys[None]
        else:
            key = self._keys.get(kid)
        if key is None:
            raise invalid("no signing key matches the token's key id (kid)")
        return key

    def _claims(self, token: str, key: PyJWK | AllowedPublicKeys) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self.settings.issuer,
                leeway=LEEWAY_S,
                options={"require": self._require},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise invalid(f"the token has no '{exc.claim}' claim") from None
        except jwt.PyJWTError as exc:
            reason = next((r for kind, r in _REASONS if isinstance(exc, kind)), "invalid token")
            raise invalid(reason) from None
        except (TypeError, ValueError):  # PyJWT's word for a key of another type than `alg`
            raise invalid("the signing key does not fit the token's algorithm") from None

    def _check_scope(self, claims: dict[str, Any]) -> None:
        needed = self.settings.required_scope
        if needed is None:
            return
        granted = _scopes(claims.get(self.settings.scope_claim)) | _scopes(claims.get("scp"))
        if needed not in granted:
            raise PermissionDeniedError(
                f"The bearer token lacks the scope '{needed}', which this gateway requires.",
                code="insufficient_scope",
            )

    def _key_settings(self, claims: dict[str, Any]) -> KeySettings:
        subject = claims[self.settings.key_id_claim]
        if isinstance(subject, int) and not isinstance(subject, bool):
            subject = str(subject)
        if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
            raise invalid(f"the '{self.settings.key_id_claim}' claim is not a usable caller id")
        fields = dict(self.settings.defaults)
        claim = self.settings.project_claim
        if claim and claims.get(claim) is not None:
            project = claims[claim]
            if not isinstance(project, str) or not _PROJECT.fullmatch(project):
                raise invalid(f"the '{claim}' claim is not a project id")
            fields["project"] = project
            if "projects" in fields:  # the token's project may always be named
                fields["projects"] = [project, *(p for p in fields["projects"] if p != project)]
        fields["id"] = f"jwt:{subject}"
        return key_from_fields(fields, "")


def _scopes(value: object) -> set[str]:
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()

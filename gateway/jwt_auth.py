"""OAuth2 bearer tokens (JWTs) as callers: signature, expiry, issuer, audience and scope checked."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final

import jwt

from gateway.config import JwtSettings, KeySettings
from gateway.errors import AuthenticationError, PermissionDeniedError
from gateway.jwt_keys import JwksUrlKeys, SigningKey

LEEWAY_S: Final = 30
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


class JwtVerifier:
    """A verified token becomes a KeySettings with id `jwt:<subject>`, which no key can take."""

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self._remote = JwksUrlKeys(settings.jwks_url) if settings.jwks_url else None
        self._algorithms = list(settings.algorithms)
        self._audience = list(settings.audience)
        self._require = ["exp", "iss", "aud", settings.key_id_claim]

    async def principal(self, token: str) -> KeySettings:
        claims = self._claims(token, await self._key(token))
        self._check_scope(claims)
        return self._key_settings(claims)

    async def _key(self, token: str) -> SigningKey:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise invalid("malformed token") from None
        if not isinstance(kid, str | None):
            raise invalid("malformed token")
        if self._remote is not None:
            key = await self._remote.get(kid)
        elif self.settings.file_keys is not None:
            key = self.settings.file_keys.get(kid)
        else:
            key = None
        if key is None:
            raise invalid("no signing key matches the token's key id (kid)")
        return key

    def _claims(self, token: str, key: SigningKey) -> dict[str, Any]:
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
        key_id = f"jwt:{subject}"
        defaults = self.settings.defaults
        claim = self.settings.project_claim
        if not claim or claims.get(claim) is None:
            return dataclasses.replace(defaults, id=key_id, owner=key_id)
        project = claims[claim]
        if not isinstance(project, str) or not _PROJECT.fullmatch(project):
            raise invalid(f"the '{claim}' claim is not a project id")
        # The token's project may always be named, beside what the defaults list.
        listed = (p for p in self.settings.defaults_projects if p != project)
        return dataclasses.replace(
            defaults, id=key_id, owner=key_id, project=project, projects=(project, *listed)
        )


def _scopes(value: object) -> set[str]:
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()

"""OAuth2 bearer tokens (JWTs): keys and tokens made here, checked by the gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pytest_aiohttp import AiohttpServer

from gateway.auth import KeyRing
from gateway.config import JwtSettings
from gateway.errors import AuthenticationError, ConfigError
from tests.conftest import MakeGateway
from tests.support.configs import settings_from
from tests.support.redis_server import free_port

Client = TestClient[Any, Any]
ISSUER = "https://login.example.test"
AUDIENCE = "responses-gateway"
SCOPE = "api:use-language-models-execute"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def token(key: Any, alg: str = "RS256", kid: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "scope": f"openid {SCOPE}",
        **claims,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def auth(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


@pytest.fixture
def jwt_config(
    config: dict[str, Any], tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> dict[str, Any]:
    path = tmp_path / "issuer.pem"
    path.write_text(pem(rsa_key))
    config["auth"]["jwt"] = {
        "issuer": ISSUER,
        "audience": [AUDIENCE, "other-api"],
        "public_key_file": str(path),
        "project_claim": "proj",
        "defaults": {"models": ["mock-*", "cheap"], "project": "proj-default", "rpm": 100},
    }
    return config


def jwt_settings(config: dict[str, Any]) -> JwtSettings:
    found = settings_from(config).jwt
    assert found is not None
    return found


async def test_a_token_with_the_scope_is_a_caller(
    make_gateway: MakeGateway, jwt_config: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    gateway = await make_gateway(jwt_config)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=token(rsa_key), max_retries=0
    ) as client:
        assert sorted([m.id async for m in client.models.list()]) == ["cheap", "mock-model"]
        response = await client.responses.create(model="mock-model", input="hello")
        assert response.status == "completed"


@pytest.mark.parametrize(
    ("claims", "key_id", "project"),
    [
        ({}, "jwt:alice", "proj-default"),
        ({"proj": "proj-z"}, "jwt:alice", "proj-z"),
        ({"sub": "auth0|12345"}, "jwt:auth0|12345", "proj-default"),
        ({"uid": 42}, "jwt:42", "proj-default"),
    ],
    ids=["defaults", "project_claim", "provider_sub", "numeric_custom_claim"],
)
async def test_the_principal_comes_from_the_claims_and_defaults(
    jwt_config: dict[str, Any],
    rsa_key: rsa.RSAPrivateKey,
    claims: dict[str, Any],
    key_id: str,
    project: str,
) -> None:
    if "uid" in claims:
        jwt_config["auth"]["jwt"]["key_id_claim"] = "uid"
    ring = KeyRing([], jwt=jwt_settings(jwt_config))
    key = await ring.authenticate(f"Bearer {token(rsa_key, **claims)}")
    assert (key.id, key.project, key.rpm, key.models) == (key_id, project, 100, ("mock-*", "cheap"))


def hs256_with_public_key(public_pem: str) -> str:
    """The classic algorithm confusion: an HMAC keyed with the issuer's public key."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    signing = f"{part({'alg': 'HS256', 'typ': 'JWT'})}." + part(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300, "scope": SCOPE}
    )
    mac = hmac.new(public_pem.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "not_yet",
        "audience",
        "issuer",
        "signature",
        "no_sub",
        "no_exp",
        "hs256",
        "none",
        "wrong_key_type",
        "bad_sub",
        "bad_project",
    ],
)
async def test_an_invalid_token_is_401_with_the_reason(
    make_gateway: MakeGateway,
    jwt_config: dict[str, Any],
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    case: str,
) -> None:
    now = int(time.time())
    reasons = {
        "expired": (token(rsa_key, exp=now - 120), "expired"),
        "not_yet": (token(rsa_key, nbf=now + 120), "not valid yet"),
        "audience": (token(rsa_key, aud="someone-else"), "wrong audience"),
        "issuer": (token(rsa_key, iss="https://evil.test"), "wrong issuer"),
        "signature": (
            token(rsa_key).rsplit(".", 1)[0] + "." + token(rsa_key, sub="bob").rsplit(".", 1)[1],
            "bad signature",
        ),
        "no_sub": (token(rsa_key, sub=None), "'sub'"),
        "no_exp": (token(rsa_key, exp=None), "'exp'"),
        "hs256": (hs256_with_public_key(pem(rsa_key)), "algorithm"),
        "none": (jwt.encode({"sub": "x"}, "", algorithm="none"), "Incorrect API key"),
        "wrong_key_type": (token(ec_key, alg="ES256"), "signing key"),
        "bad_sub": (token(rsa_key, sub="a {b}"), "'sub' claim is not a usable caller id"),
        "bad_project": (token(rsa_key, proj="has space"), "'proj' claim is not a project id"),
    }
    bearer, reason = reasons[case]
    gateway = await make_gateway(jwt_config)
    resp = await gateway.get("/v1/models", headers=auth(bearer))
    assert resp.status == 401
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_api_key"
    assert reason in error["message"]
    signature = bearer.split(".")[-1]
    assert bearer not in error["message"]
    assert not signature or signature not in error["message"]


async def test_clock_skew_within_the_leeway_is_accepted(
    jwt_config: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    ring = KeyRing([], jwt=jwt_settings(jwt_config))
    now = int(time.time())
    key = await ring.authenticate(f"Bearer {token(rsa_key, exp=now - 10, nbf=now + 10)}")
    assert key.id == "jwt:alice"


async def test_a_token_without_the_scope_is_403(
    make_gateway: MakeGateway, jwt_config: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    gateway = await make_gateway(jwt_config)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")),
        max_retries=0,
        api_key=token(rsa_key, scope="openid profile"),
    ) as client:
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await client.models.list()
    assert denied.value.code == "insufficient_scope"
    assert SCOPE in denied.value.message


@pytest.mark.parametrize(
    ("required", "claims"),
    [
        (SCOPE, {"scope": None, "scp": ["openid", SCOPE]}),
        (SCOPE, {"scope": [SCOPE]}),
        (None, {"scope": None}),
    ],
    ids=["scp_list", "scope_list", "no_scope_required"],
)
async def test_scope_forms(
    jwt_config: dict[str, Any],
    rsa_key: rsa.RSAPrivateKey,
    required: str | None,
    claims: dict[str, Any],
) -> None:
    jwt_config["auth"]["jwt"]["required_scope"] = required
    ring = KeyRing([], jwt=jwt_settings(jwt_config))
    assert (await ring.authenticate(f"Bearer {token(rsa_key, **claims)}")).id == "jwt:alice"


def jwks(*pairs: tuple[str, Any]) -> dict[str, Any]:
    keys = []
    for kid, key in pairs:
        algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
        keys.append({**algorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"})
    return {"keys": keys}


async def test_a_jwks_file_picks_the_key_by_kid(
    config: dict[str, Any],
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(("r1", rsa_key), ("e1", ec_key))))
    config["auth"]["jwt"] = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(path)}
    ring = KeyRing([], jwt=jwt_settings(config))
    assert (await ring.authenticate(f"Bearer {token(ec_key, 'ES256', 'e1')}")).id == "jwt:alice"
    assert (await ring.authenticate(f"Bearer {token(rsa_key, kid='r1')}")).id == "jwt:alice"
    for kid in ("r2", None):
        with pytest.raises(AuthenticationError, match="no signing key"):
            await ring.authenticate(f"Bearer {token(rsa_key, kid=kid)}")


async def test_a_jwks_url_is_fetched_once_and_cached(
    aiohttp_server: AiohttpServer, config: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    fetched: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.json_response(jwks(("r1", rsa_key)))

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve)
    server = await aiohttp_server(app)
    config["auth"]["jwt"] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": str(server.make_url("/.well-known/jwks.json")),
    }
    ring = KeyRing([], jwt=jwt_settings(config))
    for _ in range(3):
        assert (await ring.authenticate(f"Bearer {token(rsa_key, kid='r1')}")).id == "jwt:alice"
    with pytest.raises(AuthenticationError, match="no signing key"):
        await ring.authenticate(f"Bearer {token(rsa_key, kid='unknown')}")
    assert fetched == ["/.well-known/jwks.json"]


async def test_an_unreachable_jwks_url_is_503(
    make_gateway: MakeGateway, config: dict[str, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    config["auth"]["jwt"] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": f"http://127.0.0.1:{free_port()}/jwks",
    }
    gateway = await make_gateway(config)
    resp = await gateway.get("/v1/models", headers=auth(token(rsa_key, kid="r1")))
    assert resp.status == 503
    assert resp.headers["retry-after"] == "1"
    assert (await resp.json())["error"]["code"] == "jwks_unavailable"


async def test_without_auth_jwt_a_token_is_just_a_wrong_key(
    gateway: Client, rsa_key: rsa.RSAPrivateKey
) -> None:
    resp = await gateway.get("/v1/models", headers=auth(token(rsa_key)))
    assert resp.status == 401
    assert "Incorrect API key" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"public_key_file": None}, "exactly one of public_key_file, jwks_file, jwks_url"),
        ({"jwks_url": "https://idp.test/jwks"}, "exactly one of"),
        ({"public_key_file": "/nonexistent/issuer.pem"}, "auth.jwt.public_key_file: cannot read"),
        ({"public_key_file": __file__}, "auth.jwt.public_key_file: not a PEM"),
        ({"defaults": {"rpm": 0}}, "auth.jwt.defaults.rpm"),
        ({"defaults": {"key": "sk-secret-123"}}, "auth.jwt.defaults"),
        ({"audience": []}, "auth.jwt.audience"),
    ],
    ids=[
        "no_source",
        "two_sources",
        "unreadable",
        "not_pem",
        "bad_default",
        "secret_default",
        "empty_audience",
    ],
)
def test_bad_jwt_config_stops_start_up(
    jwt_config: dict[str, Any], change: dict[str, Any], problem: str
) -> None:
    section = jwt_config["auth"]["jwt"]
    for name, value in change.items():
        if value is None:
            del section[name]
        else:
            section[name] = value
    with pytest.raises(ConfigError) as raised:
        settings_from(jwt_config)
    assert problem in str(raised.value)


def test_a_config_key_cannot_take_a_token_id(jwt_config: dict[str, Any]) -> None:
    jwt_config["auth"]["keys"][0]["id"] = "jwt:alice"
    with pytest.raises(ConfigError, match="jwt:"):
        settings_from(jwt_config)

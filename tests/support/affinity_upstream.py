"""An upstream whose reasoning is bound to the account that made it, as OpenAI's is, and the
gateway config with several accounts of it that the affinity tests route over."""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from gateway.mockgen import build_response
from tests.support.configs import ENV, UPSTREAM_KEY, base_config
from tests.support.edge_logguard import register_secret
from tests.support.stub import Recorded, StubUpstream

# Upstream keys of the accounts after `main` (whose key is UPSTREAM_KEY).
ACCOUNT_KEYS = {
    "second": register_secret("sk-upstream-second-0042"),
    "third": register_secret("sk-upstream-third-0042"),
}
ACCOUNT_ENV = {f"AFF_{name.upper()}_KEY": key for name, key in ACCOUNT_KEYS.items()}
ACCOUNT_OF_KEY = {UPSTREAM_KEY: "main", **{key: name for name, key in ACCOUNT_KEYS.items()}}


def tag(key: str) -> str:
    """The 'encrypted content' an account makes: readable by that account only."""
    return "enc-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def account_of(recorded: Recorded) -> str:
    return ACCOUNT_OF_KEY[recorded.headers["Authorization"].removeprefix("Bearer ")]


class BoundUpstream(StubUpstream):
    """Every answer carries a reasoning item whose encrypted content only the answering
    account can read; a request replaying another account's is refused with 400
    invalid_encrypted_content."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def accounts(self) -> list[str]:
        """The account each successful answer came from, in order."""
        return [account_of(r) for r in self.requests if r.path == "/v1/responses"]

    def tally(self) -> Counter[str]:
        return Counter(self.accounts())

    def refusal(self, key: str, body: dict[str, Any]) -> web.Response | None:
        """OpenAI's answer to replayed reasoning or compaction items another account sealed."""
        sent = body.get("input")
        replayed = [
            i
            for i in (sent if isinstance(sent, list) else [])
            if isinstance(i, dict) and i.get("type") in ("reasoning", "compaction")
        ]
        if all(i.get("encrypted_content") == tag(key) for i in replayed):
            return None
        self.refused += 1
        error = {
            "message": "The encrypted content could not be verified.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_encrypted_content",
        }
        return web.json_response({"error": error}, status=400)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if key in self.behaviour.fail_keys:
            return await super().responses(request)
        raw = await request.read()
        body = orjson.loads(raw)
        refused = self.refusal(key, body)
        if refused is not None:
            return refused
        self.requests.append(Recorded(request.path, dict(request.headers), raw))
        run = build_response(body, model=body.get("model", "stub"))
        reasoning = {
            "type": "reasoning",
            "id": "rs_" + secrets.token_hex(8),
            "summary": [],
            "encrypted_content": tag(key),
        }
        run.response["output"] = [*run.response["output"], reasoning]
        if not body.get("stream"):
            return web.json_response(run.response)
        return await self._stream(request, self.behaviour, run.events())


def affinity_config(upstream_url: str, weights: tuple[float, ...] = (1, 1, 1)) -> dict[str, Any]:
    """The base config, with provider `up` given as many accounts as `weights` (at most 3)."""
    config = base_config(upstream_url)
    names = ["main", *ACCOUNT_KEYS][: len(weights)]
    envs = ["UP_KEY", *ACCOUNT_ENV][: len(weights)]
    config["providers"][0]["accounts"] = [
        {"name": n, "api_key_env": e, "weight": w}
        for n, e, w in zip(names, envs, weights, strict=True)
    ]
    return config


AFFINITY_ENV = {**ENV, **ACCOUNT_ENV}

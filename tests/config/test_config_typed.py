"""Config sections arrive typed: what the file leaves out is the dataclass field's default."""

from __future__ import annotations

import dataclasses
import pickle
import textwrap
import time
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import config
from gateway.auth import KeyRing
from gateway.config import (
    Account,
    JobSettings,
    JwtSettings,
    KeySettings,
    LimitSettings,
    ModelLimits,
    ModelSettings,
    Policy,
    Price,
    ProjectLimits,
    ProviderSettings,
    RoutingSettings,
    ServerSettings,
    Settings,
    StoreSettings,
    TargetSettings,
    TracingSettings,
    key_from_fields,
    load,
)
from gateway.config.schema import config_schema
from gateway.errors import GatewayError
from gateway.limits import Governor, Subject

# The config of the outside contract, every section set (guardrails aside).
FULL = """
server:
  host: 0.0.0.0
  port: 9090
  max_body_bytes: 4096
  mounts: ["/v1", "/api/llm"]
  shutdown_delay_s: 1
  shutdown_grace_s: 5
  header_timeout_s: 3
  keepalive_timeout_s: 30
  max_connections: 100
  log_level: warning
  access_log: false
  print_snippet: true
store: {url: "redis://r:6379/0", prefix: "x:", response_ttl_s: 60}
auth:
  admin_key_env: MY_ADMIN
  keys:
    - id: team-a
      key: sk-team-a-dev
      models: ["gpt-4.1", "local/*"]
      rpm: 600
      tpm: 2000000
      max_concurrent: 50
      budget_usd: 100.0
      budget_period: week
      project: proj-a
      projects: [proj-a, proj-b]
      zdr: true
      regions: [us, eu]
      policy: {store: force_false}
providers:
  - name: openai
    api: responses
    base_url: https://api.openai.com/v1/
    auth_header: api-key
    region: us
    accounts: [{name: main, api_key_env: OPENAI_API_KEY, weight: 2}]
    drop_fields: [user]
    unsupported_tools: [computer_use_preview]
    timeout_s: 5
    cooldown_s: 7
    policy: {store: refuse_true, truncation: refuse, unknown_fields: refuse, file_ids: refuse}
models:
  - name: gpt-4.1
    aliases: ["ri.gpt-4-1"]
    targets: [{provider: openai, model: gpt-4.1, weight: 3}]
    fallbacks: [mini]
    price: {input: 2.0, cached_input: 0.5, output: 8.0}
  - name: mini
    targets: [{provider: openai, model: gpt-4.1-mini}]
jobs: {workers: 2, lease_s: 3, result_ttl_s: 60}
limits:
  on_redis_error: closed
  redis_timeout_ms: 100
  projects: {proj-a: {rpm: 5, budget_usd: 1.5, budget_period: day}}
  models: {gpt-4.1: {tpm: 9}}
routing: {max_attempts: 2, deadline_s: 9}
tracing: {otlp_endpoint: "http://otel:4318", service_name: gw, sample_ratio: 0.5}
"""
ENV = {"OPENAI_API_KEY": "sk-upstream", "MY_ADMIN": "sk-admin-123456"}


def test_every_section_of_a_full_config_is_typed() -> None:
    got = load(FULL, ENV)
    assert got.server == ServerSettings(
        host="0.0.0.0",
        port=9090,
        max_body_bytes=4096,
        mounts=("/v1", "/api/llm"),
        shutdown_delay_s=1,
        shutdown_grace_s=5,
        header_timeout_s=3,
        keepalive_timeout_s=30,
        max_connections=100,
        log_level="warning",
        access_log=False,
        print_snippet=True,
    )
    assert got.store == StoreSettings("redis://r:6379/0", "x:", 60)
    assert got.admin_key_env == "MY_ADMIN"
    assert got.admin_key_sha256 == config.digest("sk-admin-123456")
    assert got.keys == (
        KeySettings(
            id="team-a",
            sha256=config.digest("sk-team-a-dev"),
            models=("gpt-4.1", "local/*"),
            rpm=600,
            tpm=2000000,
            max_concurrent=50,
            budget_usd=100.0,
            budget_period="week",
            project="proj-a",
            projects=("proj-a", "proj-b"),
            zdr=True,
            regions=("us", "eu"),
            policy=Policy(store="force_false"),
        ),
    )
    assert got.providers == (
        ProviderSettings(
            name="openai",
            api="responses",
            base_url="https://api.openai.com/v1",
            auth_header="api-key",
            region="us",
            accounts=(Account("main", "sk-upstream", 2),),
            drop_fields=("user",),
            unsupported_tools=("computer_use_preview",),
            timeout_s=5,
            connect_timeout_s=5,  # unset: never longer than timeout_s
            cooldown_s=7,
            policy=Policy("refuse_true", "refuse", "refuse", "refuse"),
        ),
    )
    assert got.models == (
        ModelSettings(
            name="gpt-4.1",
            aliases=("ri.gpt-4-1",),
            targets=(TargetSettings("openai", "gpt-4.1", 3),),
            fallbacks=("mini",),
            price=Price(2.0, 0.5, 8.0),
        ),
        ModelSettings(name="mini", targets=(TargetSettings("openai", "gpt-4.1-mini"),)),
    )
    assert got.jobs == JobSettings(2, 3, 60)
    assert got.limits == LimitSettings(
        on_redis_error="closed",
        redis_timeout_ms=100,
        projects={"proj-a": ProjectLimits(rpm=5, budget_usd=1.5, budget_period="day")},
        models={"gpt-4.1": ModelLimits(tpm=9)},
    )
    assert got.routing == RoutingSettings(2, 9)
    assert got.tracing == TracingSettings("http://otel:4318", "gw", 0.5)


def test_settings_cross_to_a_worker_process_whole() -> None:
    """`serve --workers N` hands Settings to spawned processes: they must pickle."""
    settings = load(FULL, ENV)
    assert pickle.loads(pickle.dumps(settings)) == settings


def test_what_the_file_leaves_out_is_the_dataclass_default() -> None:
    assert load("", {}) == Settings()
    minimal = load(
        "providers: [{name: p, api: responses, base_url: 'https://x/v1'}]\n"
        "models: [{name: m, targets: [{provider: p, model: up}]}]\n"
        "auth: {keys: [{id: k, key_sha256: '" + "0" * 64 + "'}]}\n"
        "limits: {projects: {a: {}}, models: {m: {}}}\n",
        {},
    )
    assert minimal.providers == (ProviderSettings("p", "responses", "https://x/v1"),)
    assert minimal.models == (ModelSettings("m", (TargetSettings("p", "up"),)),)
    assert minimal.keys == (KeySettings("k", "0" * 64),)
    assert minimal.limits == LimitSettings(
        projects={"a": ProjectLimits()}, models={"m": ModelLimits()}
    )


def _schema_properties(node: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    return set(node["properties"])


@pytest.mark.parametrize(
    ("where", "section", "parsed"),
    [
        (("server",), ServerSettings, set()),
        (("store",), StoreSettings, set()),
        (("jobs",), JobSettings, set()),
        (("routing",), RoutingSettings, set()),
        (("tracing",), TracingSettings, set()),
        (("limits",), LimitSettings, set()),
        (("limits", "projects", "additionalProperties"), ProjectLimits, set()),
        (("limits", "models", "additionalProperties"), ModelLimits, set()),
        (("$key",), KeySettings, {"key", "key_env", "key_sha256"}),
        (("$provider",), ProviderSettings, set()),
        (("$account",), Account, {"api_key_env"}),
        (("$target",), TargetSettings, set()),
        (("$model",), ModelSettings, set()),
        (("$model", "price"), Price, set()),
        (("$policy",), Policy, set()),
        (
            ("auth", "jwt"),
            JwtSettings,
            {"public_key_file", "jwks_file"},
        ),
    ],
)
def test_every_schema_key_is_a_field_of_its_section(
    where: tuple[str, ...], section: type[Any], parsed: set[str]
) -> None:
    """The loader hands a section's keys to its dataclass: the two must agree on the names."""
    schema = config_schema()
    defs = schema["$defs"]
    first, *rest = where
    node = defs[first[1:]] if first.startswith("$") else schema["properties"][first]
    for step in rest:
        node = node[step] if step == "additionalProperties" else node["properties"][step]
    names = _schema_properties(node, defs)
    fields = {f.name for f in dataclasses.fields(section)}
    assert names - parsed <= fields


def _issuer(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "issuer.pem"
    path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return key, path


def _jwt_config(path: Path, defaults: str) -> str:
    return textwrap.dedent(
        f"""
        auth:
          jwt:
            issuer: https://idp.test
            audience: gw
            public_key_file: {path}
            project_claim: proj
            defaults: {defaults}
        """
    )


def test_jwt_key_material_and_defaults_are_parsed_at_load(tmp_path: Path) -> None:
    _, path = _issuer(tmp_path)
    found = load(_jwt_config(path, "{rpm: 7, project: d, policy: {store: pass}}"), {}).jwt
    assert found is not None
    assert found.file_keys is not None
    assert found.file_keys.get(None) is found.file_keys.get("any kid") is not None
    assert found.audience == ("gw",)
    assert found.defaults == KeySettings(id="jwt:", rpm=7, project="d", projects=("d",))
    assert found.defaults_projects == ()


@pytest.mark.parametrize(
    ("defaults", "claim", "projects"),
    [
        ("{project: d}", None, ("d",)),
        ("{project: d}", "p", ("p",)),
        ("{project: d, projects: [d, e]}", "p", ("p", "d", "e")),
        ("{project: d, projects: [d, e]}", "e", ("e", "d")),
        ("{project: d, projects: []}", "p", ("p",)),
    ],
)
async def test_a_tokens_project_joins_only_the_projects_the_defaults_list(
    tmp_path: Path, defaults: str, claim: str | None, projects: tuple[str, ...]
) -> None:
    key, path = _issuer(tmp_path)
    settings = load(_jwt_config(path, defaults), {}).jwt
    claims = {"iss": "https://idp.test", "aud": "gw", "sub": "alice", "exp": time.time() + 60}
    claims["scope"] = "api:use-language-models-execute"
    if claim:
        claims["proj"] = claim
    ring = KeyRing([], jwt=settings)
    found = await ring.authenticate(f"Bearer {jwt.encode(claims, key, algorithm='RS256')}")
    assert (found.id, found.owner, found.project, found.projects) == (
        "jwt:alice",
        "jwt:alice",
        claim or "d",
        projects,
    )


def test_a_saved_key_reads_back_as_the_same_key() -> None:
    key = load(FULL, ENV).keys[0]
    assert key_from_fields(orjson.loads(orjson.dumps(dataclasses.asdict(key))), key.sha256) == key


async def test_the_governor_takes_the_limits_the_config_sets() -> None:
    settings = load("limits: {models: {m: {rpm: 1}}, projects: {p: {rpm: 5}}}\n", {})
    governor = Governor(settings, None, "t:")
    who = Subject(KeySettings(id="k"), ("p",), "m", None)
    await governor.admit(who, 1)
    with pytest.raises(GatewayError) as refused:
        await governor.admit(who, 1)
    assert refused.value.status == 429


@pytest.mark.parametrize("source", ["public_key_file", "jwks_file"])
async def test_settings_with_signing_keys_cross_to_a_worker_process(
    tmp_path: Path, source: str
) -> None:
    """`serve --workers N` hands Settings to spawned processes: they must pickle, keys and all."""
    key, path = _issuer(tmp_path)
    if source == "jwks_file":
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        path = tmp_path / "jwks.json"
        path.write_bytes(orjson.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
    text = _jwt_config(path, "{rpm: 7}").replace("public_key_file", source)
    settings = pickle.loads(pickle.dumps(load(text, {})))
    claims = {"iss": "https://idp.test", "aud": "gw", "sub": "alice", "exp": time.time() + 60}
    claims["scope"] = "api:use-language-models-execute"
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    found = await KeyRing([], jwt=settings.jwt).authenticate(f"Bearer {token}")
    assert (found.id, found.rpm) == ("jwt:alice", 7)

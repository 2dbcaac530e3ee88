"""Settings (frozen dataclasses) and `load(text, environ)`, checked against the config schema."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import yaml

from gateway.errors import ConfigError

SCHEMA_DIR = resources.files("gateway") / "schema_files"
DEFAULT_MOUNTS = ("/v1", "/openai/v1", "/openai", "/api/llm", "/api/v2/llm/proxy/openai/v1")


@dataclass(frozen=True, slots=True)
class Policy:
    store: str = "pass"
    truncation: str = "pass"
    unknown_fields: str = "forward"
    file_ids: str = "pass"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 20 * 1024 * 1024
    mounts: tuple[str, ...] = DEFAULT_MOUNTS
    shutdown_delay_s: float = 2.0
    shutdown_grace_s: float = 25.0
    header_timeout_s: float = 10.0  # a connection without a whole request head by then is closed
    keepalive_timeout_s: float = 75.0  # an idle keep-alive connection is closed after this
    max_connections: int = 10000  # per process; past it new requests get a 503
    backlog: int = 4096  # connects the kernel queues for accept(); capped by net.core.somaxconn
    log_level: str = "info"
    access_log: bool = True
    print_snippet: bool = False  # show an SDK snippet with a key written in the file (demos)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    url: str = "memory://"
    prefix: str = "gw:"
    response_ttl_s: int = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class KeySettings:
    """A caller of the gateway: a static key from the file, or one made through the admin API."""

    id: str
    sha256: str = ""
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    budget_usd: float | None = None
    budget_period: str = "month"
    project: str | None = None
    projects: tuple[str, ...] = ()
    zdr: bool = False
    regions: tuple[str, ...] | None = None
    policy: Policy = field(default_factory=Policy)
    disabled: bool = False
    # Whose stored responses, conversations and jobs these are. A key made through the admin
    # API gets a random one when it is made, so a later key under the same id owns nothing of
    # it; a key from the file (or a bearer token's subject) owns under its id.
    owner: str = ""

    def __post_init__(self) -> None:
        if not self.owner:
            object.__setattr__(self, "owner", self.id)


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """OAuth2 bearer tokens (JWTs) accepted as callers; key material read at start-up."""

    issuer: str
    audience: tuple[str, ...]
    public_key_pem: str | None = field(default=None, repr=False)
    jwks: Mapping[str, Any] | None = field(default=None, repr=False)
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    required_scope: str | None = "api:use-language-models-execute"
    scope_claim: str = "scope"
    key_id_claim: str = "sub"
    project_claim: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)  # auth.keys[] fields for every token


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    api_key: str | None = field(default=None, repr=False)
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    api: str
    base_url: str = ""
    auth_header: str = "authorization"
    region: str | None = None
    accounts: tuple[Account, ...] = (Account("default"),)
    drop_fields: tuple[str, ...] = ()
    unsupported_tools: tuple[str, ...] = ()
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    cooldown_s: float = 30.0
    token_delay_ms: float = 0.0
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True, slots=True)
class TargetSettings:
    provider: str
    model: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Price:
    input: float = 0.0
    cached_input: float = 0.0
    output: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelSettings:
    name: str
    targets: tuple[TargetSettings, ...]
    aliases: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    price: Price | None = None


@dataclass(frozen=True, slots=True)
class JobSettings:
    workers: int = 8
    lease_s: float = 10.0
    result_ttl_s: int = 3600


@dataclass(frozen=True, slots=True)
class TracingSettings:
    otlp_endpoint: str | None = None  # None: no tracing, nothing sent anywhere
    service_name: str = "responses-gateway"
    sample_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    max_attempts: int = 3  # targets, accounts and fallbacks tried before the first byte
    deadline_s: float = 60.0  # no new attempt starts after this


@dataclass(frozen=True, slots=True)
class LimitSettings:
    on_redis_error: str = "open"
    redis_timeout_ms: int = 250
    projects: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per-project limits
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per-model limits


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    admin_key_sha256: str | None = field(default=None, repr=False)
    keys: tuple[KeySettings, ...] = ()
    providers: tuple[ProviderSettings, ...] = ()
    models: tuple[ModelSettings, ...] = ()
    jobs: JobSettings = field(default_factory=JobSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    admin_key_env: str = "GATEWAY_ADMIN_KEY"
    jwt: JwtSettings | None = None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def load(text: str, environ: Mapping[str, str]) -> Settings:
    """Parse and check a config file's text; every problem is reported at once."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(
            [f"<file>: not valid YAML{where}: {getattr(exc, 'problem', exc)}"]
        ) from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(["<file>: the top level must be a mapping"])
    # JSON Schema sees what a JSON document would hold: YAML dates and the like become strings.
    raw = orjson.loads(orjson.dumps(raw, default=str, option=orjson.OPT_NON_STR_KEYS))
    problems = [
        f"{_path(err.instance_path)}: {err.message}" for err in _config_validator().iter_errors(raw)
    ]
    if problems:
        raise ConfigError(problems)
    builder = _Builder(raw, environ)
    settings = builder.build()
    if builder.problems:
        raise ConfigError(builder.problems)
    return settings


def load_file(path: str | Path, environ: Mapping[str, str]) -> Settings:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return load(text, environ)


_validator: Any = None


def _config_validator() -> Any:
    global _validator
    if _validator is None:
        schema = orjson.loads((SCHEMA_DIR / "config.schema.json").read_bytes())
        _validator = jsonschema_rs.validator_for(schema)
    return _validator


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<file>"


# Slotted dataclasses keep no class-level defaults: read them off default instances.
_SERVER = ServerSettings()
_STORE = StoreSettings()
_PROVIDER = ProviderSettings(name="", api="")


class _Builder:
    def __init__(self, raw: dict[str, Any], environ: Mapping[str, str]) -> None:
        self.raw = raw
        self.env = environ
        self.problems: list[str] = []

    def build(self) -> Settings:
        raw = self.raw
        server = raw.get("server", {})
        store = raw.get("store", {})
        auth = raw.get("auth", {})
        providers = tuple(
            self._provider(p, f"providers[{i}]") for i, p in enumerate(raw.get("providers", []))
        )
        models = tuple(self._model(m) for m in raw.get("models", []))
        keys = tuple(self._key(k, f"auth.keys[{i}]") for i, k in enumerate(auth.get("keys", [])))
        self._check_names(providers, models, keys)
        admin_env = auth.get("admin_key_env", "GATEWAY_ADMIN_KEY")
        admin = self.env.get(admin_env)
        store_url = self.env.get("REDIS_URL") or store.get("url", _STORE.url)
        port = server.get("port", _SERVER.port)
        if self.env.get("GATEWAY_PORT"):
            try:
                port = int(self.env["GATEWAY_PORT"])
            except ValueError:
                self.problems.append(
                    f"GATEWAY_PORT: not a port number: {self.env['GATEWAY_PORT']!r}"
                )
        return Settings(
            server=ServerSettings(
                host=server.get("host", _SERVER.host),
                port=port,
                max_body_bytes=server.get("max_body_bytes", _SERVER.max_body_bytes),
                mounts=tuple(m.rstrip("/") for m in server.get("mounts", DEFAULT_MOUNTS)),
                shutdown_delay_s=server.get("shutdown_delay_s", _SERVER.shutdown_delay_s),
                shutdown_grace_s=server.get("shutdown_grace_s", _SERVER.shutdown_grace_s),
                header_timeout_s=server.get("header_timeout_s", _SERVER.header_timeout_s),
                keepalive_timeout_s=server.get("keepalive_timeout_s", _SERVER.keepalive_timeout_s),
                max_connections=server.get("max_connections", _SERVER.max_connections),
                backlog=server.get("backlog", _SERVER.backlog),
                log_level=server.get("log_level", _SERVER.log_level),
                access_log=server.get("access_log", _SERVER.access_log),
                print_snippet=server.get("print_snippet", _SERVER.print_snippet),
            ),
            store=StoreSettings(
                url=store_url,
                prefix=store.get("prefix", _STORE.prefix),
                response_ttl_s=store.get("response_ttl_s", _STORE.response_ttl_s),
            ),
            admin_key_sha256=digest(admin) if admin else None,
            keys=keys,
            providers=providers,
            models=models,
            jobs=JobSettings(**raw.get("jobs", {})),
            limits=LimitSettings(**raw.get("limits", {})),
            routing=RoutingSettings(**raw.get("routing", {})),
            tracing=TracingSettings(
                **{
                    **raw.get("tracing", {}),
                    **(
                        {"otlp_endpoint": self.env["OTEL_EXPORTER_OTLP_ENDPOINT"]}
                        if self.env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                        else {}
                    ),
                }
            ),
            admin_key_env=admin_env,
            jwt=self._jwt(auth["jwt"], keys) if "jwt" in auth else None,
        )

    def _secret(self, var: str, where: str) -> str | None:
        value = self.env.get(var)
        if not value:
            self.problems.append(f"{where}: environment variable {var} is not set")
            return None
        return value

    def _key(self, raw: dict[str, Any], where: str) -> KeySettings:
        sources = [s for s in ("key", "key_env", "key_sha256") if s in raw]
        sha = ""
        if len(sources) != 1:
            self.problems.append(f"{where}: exactly one of key, key_env, key_sha256 is required")
        elif sources[0] == "key":
            sha = digest(raw["key"])
        elif sources[0] == "key_env":
            secret = self._secret(raw["key_env"], f"{where}.key_env")
            sha = digest(secret) if secret else ""
        else:
            sha = raw["key_sha256"]
        return key_from_fields(raw, sha)

    def _jwt(self, raw: dict[str, Any], keys: tuple[KeySettings, ...]) -> JwtSettings | None:
        where = "auth.jwt"
        sources = [s for s in ("public_key_file", "jwks_file", "jwks_url") if s in raw]
        if len(sources) != 1:
            self.problems.append(
                f"{where}: exactly one of public_key_file, jwks_file, jwks_url is required"
            )
            return None
        pem = jwks = None
        if "jwks_url" not in raw:
            path = raw[sources[0]]
            try:
                text = Path(path).read_text()
            except OSError as exc:
                self.problems.append(f"{where}.{sources[0]}: cannot read {path}: {exc.strerror}")
                return None
            if sources[0] == "public_key_file":
                pem = text
            else:
                try:
                    jwks = orjson.loads(text)
                except orjson.JSONDecodeError:
                    self.problems.append(f"{where}.jwks_file: {path} is not JSON")
                    return None
        defaults = raw.get("defaults", {})
        fields = jsonschema_rs.validator_for(key_fields_schema((*SECRET_FIELDS, "id", "disabled")))
        self.problems += [
            f"{_path([*where.split('.'), 'defaults', *e.instance_path])}: {e.message}"
            for e in fields.iter_errors(defaults)
        ]
        self.problems += [
            f"auth.keys: key id {k.id!r} starts with 'jwt:', which names bearer tokens"
            for k in keys
            if k.id.startswith("jwt:")
        ]
        audience = raw["audience"]
        settings = JwtSettings(
            issuer=raw["issuer"],
            audience=(audience,) if isinstance(audience, str) else tuple(audience),
            public_key_pem=pem,
            jwks=jwks,
            jwks_url=raw.get("jwks_url"),
            algorithms=tuple(raw.get("algorithms", ("RS256", "ES256"))),
            required_scope=raw.get("required_scope", "api:use-language-models-execute"),
            scope_claim=raw.get("scope_claim", "scope"),
            key_id_claim=raw.get("key_id_claim", "sub"),
            project_claim=raw.get("project_claim"),
            defaults=defaults,
        )
        from gateway.jwt_auth import load_keys  # imports PyJWT, only when tokens are configured

        try:
            load_keys(settings)
        except ValueError as exc:
            self.problems.append(f"{where}.{sources[0]}: {exc}")
        return settings

    def _provider(self, raw: dict[str, Any], where: str) -> ProviderSettings:
        api = raw["api"]
        if api != "mock" and not raw.get("base_url"):
            self.problems.append(f"{where}.base_url: required for api {api}")
        accounts = []
        for j, acc in enumerate(raw.get("accounts", [{"name": "default"}])):
            secret = None
            if "api_key_env" in acc:
                secret = self._secret(acc["api_key_env"], f"{where}.accounts[{j}].api_key_env")
            accounts.append(Account(acc["name"], secret, acc.get("weight", 1.0)))
        timeout = raw.get("timeout_s", _PROVIDER.timeout_s)
        return ProviderSettings(
            name=raw["name"],
            api=api,
            base_url=raw.get("base_url", "").rstrip("/"),
            auth_header=raw.get("auth_header", "authorization"),
            region=raw.get("region"),
            accounts=tuple(accounts),
            drop_fields=tuple(raw.get("drop_fields", ())),
            unsupported_tools=tuple(raw.get("unsupported_tools", ())),
            timeout_s=timeout,
            connect_timeout_s=raw.get("connect_timeout_s", min(10.0, timeout)),
            cooldown_s=raw.get("cooldown_s", _PROVIDER.cooldown_s),
            token_delay_ms=raw.get("token_delay_ms", 0.0),
            policy=Policy(**raw.get("policy", {})),
        )

    def _model(self, raw: dict[str, Any]) -> ModelSettings:
        return ModelSettings(
            name=raw["name"],
            aliases=tuple(raw.get("aliases", ())),
            targets=tuple(TargetSettings(**t) for t in raw["targets"]),
            fallbacks=tuple(raw.get("fallbacks", ())),
            price=Price(**raw["price"]) if "price" in raw else None,
        )

    def _check_names(
        self,
        providers: tuple[ProviderSettings, ...],
        models: tuple[ModelSettings, ...],
        keys: tuple[KeySettings, ...],
    ) -> None:
        provider_names = _duplicates(
            [p.name for p in providers], "providers", "provider name", self.problems
        )
        _duplicates([k.id for k in keys], "auth.keys", "key id", self.problems)
        _duplicates([k.sha256 for k in keys if k.sha256], "auth.keys", "key secret", self.problems)
        model_names = _duplicates(
            [n for m in models for n in (m.name, *m.aliases)],
            "models",
            "model name or alias",
            self.problems,
        )
        for i, model in enumerate(models):
            for j, target in enumerate(model.targets):
                if target.provider not in provider_names:
                    self.problems.append(
                        f"models[{i}].targets[{j}].provider: unknown provider {target.provider!r}"
                    )
            for j, fallback in enumerate(model.fallbacks):
                if fallback not in model_names or fallback in (model.name, *model.aliases):
                    self.problems.append(
                        f"models[{i}].fallbacks[{j}]: not another configured model: {fallback!r}"
                    )


def _duplicates(names: list[str], where: str, what: str, problems: list[str]) -> set[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            shown = "(hidden)" if what == "key secret" else repr(name)
            problems.append(f"{where}: duplicate {what} {shown}")
        seen.add(name)
    return seen


SECRET_FIELDS = ("key", "key_env", "key_sha256")


def key_fields_schema(exclude: tuple[str, ...] = SECRET_FIELDS) -> dict[str, Any]:
    """`$defs/key` of the config schema with no field required and `exclude` left out."""
    schema = orjson.loads((SCHEMA_DIR / "config.schema.json").read_bytes())
    key = dict(schema["$defs"]["key"])
    key.pop("required", None)
    key["properties"] = {k: v for k, v in key["properties"].items() if k not in exclude}
    return {"$schema": schema["$schema"], "$defs": schema["$defs"], **key}


def key_from_fields(raw: Mapping[str, Any], sha256: str) -> KeySettings:
    """A KeySettings from the fields of an `auth.keys[]` entry (file or admin API)."""
    project = raw.get("project")
    projects = tuple(raw.get("projects", ())) or ((project,) if project else ())
    models = raw.get("models")
    regions = raw.get("regions")
    return KeySettings(
        id=raw["id"],
        sha256=sha256,
        models=tuple(models) if models is not None else None,
        rpm=raw.get("rpm"),
        tpm=raw.get("tpm"),
        max_concurrent=raw.get("max_concurrent"),
        budget_usd=raw.get("budget_usd"),
        budget_period=raw.get("budget_period", "month"),
        project=project,
        projects=projects,
        zdr=raw.get("zdr", False),
        regions=tuple(regions) if regions is not None else None,
        policy=Policy(**raw.get("policy", {})),
        disabled=raw.get("disabled", False),
    )

"""The config file's sections as frozen dataclasses; a field's default is the setting's default.

The loader fills only what the file sets, so these defaults are the only ones there are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.jwt_keys import FileKeys

__all__ = [
    "ADMIN_KEY_ENV",
    "DEFAULT_MOUNTS",
    "Account",
    "GuardrailRule",
    "GuardrailWebhook",
    "JobSettings",
    "JwtSettings",
    "KeySettings",
    "LimitSettings",
    "ModelLimits",
    "ModelSettings",
    "Policy",
    "Price",
    "ProjectLimits",
    "ProviderSettings",
    "RoutingSettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "TargetSettings",
    "TracingSettings",
]

ADMIN_KEY_ENV = "GATEWAY_ADMIN_KEY"
DEFAULT_MOUNTS = ("/v1", "/openai/v1", "/openai", "/api/llm", "/api/v2/llm/proxy/openai/v1")


@dataclass(frozen=True, slots=True)
class Policy:
    """Request-field policies of a provider or a key; where both set one, the stricter wins."""

    store: str = "pass"  # pass | force_false (served, nothing kept) | refuse_true (400)
    truncation: str = "pass"  # pass | refuse (400, param truncation)
    unknown_fields: str = "forward"  # forward | refuse (400 unknown_parameter)
    file_ids: str = "pass"  # pass | refuse (an input_file.file_id is a 400)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080  # GATEWAY_PORT overrides
    max_body_bytes: int = 20 * 1024 * 1024
    mounts: tuple[str, ...] = DEFAULT_MOUNTS  # path prefixes the API answers under
    shutdown_delay_s: float = 2.0  # on SIGTERM /readyz fails at once; new connections stop after
    shutdown_grace_s: float = 25.0  # then open streams get this long, and end response.failed
    header_timeout_s: float = 10.0  # a connection without a whole request head by then is closed
    keepalive_timeout_s: float = 75.0  # an idle keep-alive connection is closed after this
    max_connections: int = 10000  # per process; past it new requests get a 503
    backlog: int = 4096  # connects the kernel queues for accept(); capped by net.core.somaxconn
    log_level: str = "info"  # debug | info | warning | error
    access_log: bool = True  # one line per request
    print_snippet: bool = False  # show an SDK snippet with a key written in the file (demos)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    url: str = "memory://"  # memory:// | redis://… | rediss://… | unix://…; REDIS_URL overrides
    prefix: str = "gw:"  # put before every Redis key
    response_ttl_s: int = 30 * 24 * 3600  # stored responses and conversations


@dataclass(frozen=True, slots=True)
class KeySettings:
    """A caller of the gateway: a static key from the file, or one made through the admin API."""

    id: str
    sha256: str = ""  # digest of the secret (from key, key_env or key_sha256)
    models: tuple[str, ...] | None = None  # glob patterns; None: every model
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute
    max_concurrent: int | None = None  # requests in flight at once
    budget_usd: float | None = None  # spend per budget_period
    budget_period: str = "month"  # day | week | month | total
    project: str | None = None  # default attribution
    projects: tuple[str, ...] = ()  # what the attribution header may name; default (project,)
    zdr: bool = False  # zero data retention: store must be false, nothing kept
    regions: tuple[str, ...] | None = None  # allowed provider regions; None: any
    policy: Policy = field(default_factory=Policy)
    disabled: bool = False
    # Whose stored responses, conversations and jobs these are. A key made through the admin
    # API gets a random one when it is made, so a later key under the same id owns nothing of
    # it; a key from the file (or a bearer token's subject) owns under its id.
    owner: str = ""
    compat: str | None = None  # bifrost: JSON answers carry Bifrost's usage.cost, extra_fields

    def __post_init__(self) -> None:
        if not self.projects and self.project:
            object.__setattr__(self, "projects", (self.project,))
        if not self.owner:
            object.__setattr__(self, "owner", self.id)


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """OAuth2 bearer tokens (JWTs) accepted as callers; key material read at load time."""

    issuer: str
    audience: tuple[str, ...]
    # One source of signing keys: public_key_file or jwks_file (read at load), or jwks_url
    # (fetched while serving).
    file_keys: FileKeys | None = field(default=None, repr=False, compare=False)
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    required_scope: str | None = "api:use-language-models-execute"  # None: no scope needed
    scope_claim: str = "scope"  # also read: scp
    key_id_claim: str = "sub"  # the caller is key id `jwt:<claim value>`
    project_claim: str | None = None  # a claim naming the caller's project
    # The auth.keys[] fields every token's caller gets (id and secrets aside).
    defaults: KeySettings = field(default_factory=lambda: KeySettings(id="jwt:"))
    # defaults.projects as written: a token's project is added to these, else it replaces them.
    defaults_projects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Account:
    """One set of upstream credentials of a provider."""

    name: str
    api_key: str | None = field(default=None, repr=False)  # from api_key_env
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    api: str  # responses | chat_completions | mock
    base_url: str = ""  # required unless api is mock
    auth_header: str = "authorization"  # authorization (Bearer) | api-key
    region: str | None = None
    accounts: tuple[Account, ...] = (Account("default"),)
    drop_fields: tuple[str, ...] = ()  # request fields removed before forwarding
    unsupported_tools: tuple[str, ...] = ()  # tool types answered with a clear 400
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0  # when unset, never longer than timeout_s
    cooldown_s: float = 30.0  # a failed target is skipped this long (or its retry-after)
    token_delay_ms: float = 0.0  # api mock: pause between streamed tokens
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True, slots=True)
class TargetSettings:
    provider: str
    model: str  # the upstream's model name
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens."""

    input: float = 0.0
    cached_input: float = 0.0
    output: float = 0.0
    cache_write: float | None = None  # input written to the prompt cache; None: at `input`


@dataclass(frozen=True, slots=True)
class ModelSettings:
    name: str
    targets: tuple[TargetSettings, ...]
    aliases: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()  # other models tried when every target failed
    price: Price | None = None  # None: requests cost nothing


@dataclass(frozen=True, slots=True)
class JobSettings:
    workers: int = 8  # background and async jobs run at once per process
    lease_s: float = 10.0  # a job whose replica died is reclaimed after this
    result_ttl_s: int = 3600  # default of x-bf-async-job-result-ttl


@dataclass(frozen=True, slots=True)
class TracingSettings:
    otlp_endpoint: str | None = None  # None: no tracing; OTEL_EXPORTER_OTLP_ENDPOINT overrides
    service_name: str = "responses-gateway"
    sample_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    max_attempts: int = 3  # targets, accounts and fallbacks tried before the first byte
    deadline_s: float = 60.0  # no new attempt starts after this


@dataclass(frozen=True, slots=True)
class ProjectLimits:
    """`limits.projects.<name>`: shared by every key that charges the project."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    budget_usd: float | None = None
    budget_period: str = "month"  # day | week | month | total


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """`limits.models.<name>`: shared by every caller of the model."""

    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class LimitSettings:
    on_redis_error: str = "open"  # open: per-process limits take over | closed: 503
    redis_timeout_ms: int = 250
    projects: Mapping[str, ProjectLimits] = field(default_factory=dict)
    models: Mapping[str, ModelLimits] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GuardrailWebhook:
    """An external check in OpenAI's moderation shape: a flagged result is a match."""

    url: str
    timeout_ms: int = 1000
    on_error: str = "open"  # open: the request goes on | closed: 503 guardrail_unavailable


@dataclass(frozen=True, slots=True)
class GuardrailRule:
    """`guardrails[]`: what to look for, where, for whom, and what a match does."""

    name: str
    apply_to: tuple[str, ...] = ("input", "output")
    detect: tuple[str, ...] = ()  # built-in detectors: email phone credit_card iban secret
    patterns: tuple[str, ...] = ()  # Python regular expressions, checked at load
    action: str = "redact"  # redact | block | flag
    keys: tuple[str, ...] | None = None  # None: every key
    projects: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    webhook: GuardrailWebhook | None = None
    max_match_chars: int = 100  # the longest `patterns` match a stream holds text back for


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    admin_key_sha256: str | None = field(default=None, repr=False)  # of $admin_key_env
    keys: tuple[KeySettings, ...] = ()
    providers: tuple[ProviderSettings, ...] = ()
    models: tuple[ModelSettings, ...] = ()
    jobs: JobSettings = field(default_factory=JobSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    admin_key_env: str = ADMIN_KEY_ENV  # auth.admin_key_env: the variable holding the admin key
    jwt: JwtSettings | None = None  # auth.jwt
    guardrails: tuple[GuardrailRule, ...] = ()  # applied in order

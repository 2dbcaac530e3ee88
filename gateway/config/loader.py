"""`load(text, environ)`: YAML, checked against the config schema, parsed into typed Settings.

The schema checks shapes; a key the file leaves out takes its dataclass field's default.
Every problem is reported at once, as `path.in.file: reason`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import yaml

from gateway.config.schema import (
    SECRET_FIELDS,
    config_validator,
    key_fields_schema,
    problem_path,
)
from gateway.config.sections import (
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
)
from gateway.errors import ConfigError
from gateway.guardrails.settings import parse_rules

_KEY_FIELDS = tuple(
    f.name for f in dataclasses.fields(KeySettings) if f.name not in ("id", "sha256", "owner")
)


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
        f"{problem_path(err.instance_path)}: {err.message}"
        for err in config_validator().iter_errors(raw)
    ]
    if problems:
        raise ConfigError(problems)
    parser = _Parser(environ)
    settings = parser.settings(raw)
    if parser.problems:
        raise ConfigError(parser.problems)
    return settings


def load_file(path: str | Path, environ: Mapping[str, str]) -> Settings:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return load(text, environ)


def key_from_fields(raw: Mapping[str, Any], sha256: str) -> KeySettings:
    """A KeySettings from the fields of an `auth.keys[]` entry (file, admin API, saved job)."""
    values = _values({k: raw[k] for k in _KEY_FIELDS if k in raw})
    if "policy" in values:
        values["policy"] = Policy(**values["policy"])
    return KeySettings(id=raw["id"], sha256=sha256, **values)


def _values(raw: Mapping[str, Any], drop: tuple[str, ...] = (), **parsed: Any) -> dict[str, Any]:
    """A section's fields as the file sets them (lists become tuples), `parsed` ones replaced."""
    out = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k not in drop}
    out.update(parsed)
    return out


class _Parser:
    """Schema-checked mappings to sections; what the schema cannot say goes to `problems`."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.problems: list[str] = []

    def settings(self, raw: dict[str, Any]) -> Settings:
        auth = raw.get("auth", {})
        providers = tuple(
            self._provider(p, f"providers[{i}]") for i, p in enumerate(raw.get("providers", []))
        )
        models = tuple(_model(m) for m in raw.get("models", []))
        keys = tuple(self._key(k, f"auth.keys[{i}]") for i, k in enumerate(auth.get("keys", [])))
        self._check_names(providers, models, keys)
        settings = Settings(
            **_values(auth, drop=("keys", "jwt")),
            server=self._server(raw.get("server", {})),
            store=StoreSettings(**{**raw.get("store", {}), **self._env("url", "REDIS_URL")}),
            keys=keys,
            providers=providers,
            models=models,
            jobs=JobSettings(**raw.get("jobs", {})),
            limits=_limits(raw.get("limits", {})),
            routing=RoutingSettings(**raw.get("routing", {})),
            tracing=TracingSettings(
                **{
                    **raw.get("tracing", {}),
                    **self._env("otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
                }
            ),
            jwt=self._jwt(auth["jwt"], keys) if "jwt" in auth else None,
            guardrails=parse_rules(raw.get("guardrails", []), self.problems),
        )
        admin = self.env.get(settings.admin_key_env)
        return dataclasses.replace(settings, admin_key_sha256=digest(admin) if admin else None)

    def _env(self, name: str, var: str) -> dict[str, str]:
        """`{name: $var}` when the environment sets var (it overrides the file), else nothing."""
        value = self.env.get(var)
        return {name: value} if value else {}

    def _server(self, raw: dict[str, Any]) -> ServerSettings:
        values = _values(raw)
        port = self.env.get("GATEWAY_PORT")
        if port:
            try:
                values["port"] = int(port)
            except ValueError:
                self.problems.append(f"GATEWAY_PORT: not a port number: {port!r}")
        return ServerSettings(**values)

    def _secret(self, var: str, where: str) -> str | None:
        value = self.env.get(var)
        if not value:
            self.problems.append(f"{where}: environment variable {var} is not set")
            return None
        return value

    def _key(self, raw: dict[str, Any], where: str) -> KeySettings:
        sources = [s for s in SECRET_FIELDS if s in raw]
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
        found = self._signing_keys(raw, sources[0])
        defaults = raw.get("defaults", {})
        fields = jsonschema_rs.validator_for(key_fields_schema((*SECRET_FIELDS, "id", "disabled")))
        bad_defaults = [
            f"{problem_path([*where.split('.'), 'defaults', *e.instance_path])}: {e.message}"
            for e in fields.iter_errors(defaults)
        ]
        self.problems += bad_defaults
        self.problems += [
            f"auth.keys: key id {k.id!r} starts with 'jwt:', which names bearer tokens"
            for k in keys
            if k.id.startswith("jwt:")
        ]
        if found is None or bad_defaults:
            return None
        audience = raw["audience"]
        return JwtSettings(
            **_values(raw, drop=(*sources, "defaults", "audience")),
            **found,
            audience=(audience,) if isinstance(audience, str) else tuple(audience),
            defaults=key_from_fields({**defaults, "id": "jwt:"}, ""),
            defaults_projects=tuple(defaults.get("projects", ())),
        )

    def _signing_keys(self, raw: dict[str, Any], source: str) -> dict[str, Any] | None:
        """The JwtSettings fields holding the keys `source` names, or None (a problem noted)."""
        if source == "jwks_url":
            return {"jwks_url": raw["jwks_url"]}
        from gateway import jwt_keys  # imports PyJWT, only when tokens are configured

        path = raw[source]
        where = f"auth.jwt.{source}"
        try:
            text = Path(path).read_text()
        except OSError as exc:
            self.problems.append(f"{where}: cannot read {path}: {exc.strerror}")
            return None
        try:
            if source == "public_key_file":
                return {"file_keys": jwt_keys.FileKeys(pem=text)}
            try:
                document = orjson.loads(text)
            except orjson.JSONDecodeError:
                self.problems.append(f"{where}: {path} is not JSON")
                return None
            return {"file_keys": jwt_keys.FileKeys(jwks=document)}
        except ValueError as exc:
            self.problems.append(f"{where}: {exc}")
            return None

    def _provider(self, raw: dict[str, Any], where: str) -> ProviderSettings:
        api = raw["api"]
        if api != "mock" and not raw.get("base_url"):
            self.problems.append(f"{where}.base_url: required for api {api}")
        parsed: dict[str, Any] = {}
        if "base_url" in raw:
            parsed["base_url"] = raw["base_url"].rstrip("/")
        if "accounts" in raw:
            parsed["accounts"] = tuple(
                self._account(a, f"{where}.accounts[{j}]") for j, a in enumerate(raw["accounts"])
            )
        if "policy" in raw:
            parsed["policy"] = Policy(**raw["policy"])
        provider = ProviderSettings(**_values(raw, **parsed))
        if "connect_timeout_s" in raw:
            return provider
        connect = min(provider.connect_timeout_s, provider.timeout_s)
        return dataclasses.replace(provider, connect_timeout_s=connect)

    def _account(self, raw: dict[str, Any], where: str) -> Account:
        secret = None
        if "api_key_env" in raw:
            secret = self._secret(raw["api_key_env"], f"{where}.api_key_env")
        return Account(**_values(raw, drop=("api_key_env",)), api_key=secret)

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


def _model(raw: dict[str, Any]) -> ModelSettings:
    parsed: dict[str, Any] = {"targets": tuple(TargetSettings(**t) for t in raw["targets"])}
    if "price" in raw:
        parsed["price"] = Price(**raw["price"])
    return ModelSettings(**_values(raw, **parsed))


def _limits(raw: dict[str, Any]) -> LimitSettings:
    projects = {name: ProjectLimits(**v) for name, v in raw.get("projects", {}).items()}
    models = {name: ModelLimits(**v) for name, v in raw.get("models", {}).items()}
    return LimitSettings(**_values(raw, projects=projects, models=models))


def _duplicates(names: list[str], where: str, what: str, problems: list[str]) -> set[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            shown = "(hidden)" if what == "key secret" else repr(name)
            problems.append(f"{where}: duplicate {what} {shown}")
        seen.add(name)
    return seen

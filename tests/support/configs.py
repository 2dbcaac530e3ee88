"""Gateway configs for tests, as the dicts a YAML file would hold."""

from __future__ import annotations

from typing import Any

import yaml

from gateway.config import Settings, load

KEY_A = "sk-team-a-0123456789"
KEY_B = "sk-team-b-0123456789"
UPSTREAM_KEY = "sk-upstream-secret-42"
ADMIN_KEY = "sk-admin-0123456789"
ENV = {"UP_KEY": UPSTREAM_KEY, "GATEWAY_ADMIN_KEY": ADMIN_KEY}
# Every credential the tests use: no log line may show one (tests/support/edge_logguard.py).
SECRETS = (KEY_A, KEY_B, UPSTREAM_KEY, ADMIN_KEY)


def base_config(upstream_url: str, store_url: str = "memory://") -> dict[str, Any]:
    return {
        "server": {"access_log": False, "shutdown_delay_s": 0.1, "shutdown_grace_s": 5},
        "jobs": {"workers": 4, "lease_s": 1},
        "store": {"url": store_url},
        "auth": {
            "keys": [
                {"id": "team-a", "key": KEY_A, "project": "proj-a"},
                {"id": "team-b", "key": KEY_B, "project": "proj-b", "models": ["mock-*", "cheap"]},
            ]
        },
        "providers": [
            {
                "name": "up",
                "api": "responses",
                "base_url": f"{upstream_url}/v1",
                "region": "us",
                "accounts": [{"name": "main", "api_key_env": "UP_KEY"}],
                "timeout_s": 5,
            },
            {"name": "mock", "api": "mock", "region": "eu"},
        ],
        "models": [
            {
                "name": "gpt-test",
                "aliases": ["ri.language-model-service..language-model.gpt-test"],
                "targets": [{"provider": "up", "model": "gpt-test"}],
                "price": {"input": 2.0, "cached_input": 0.5, "output": 8.0},
            },
            {"name": "cheap", "targets": [{"provider": "up", "model": "gpt-cheap-upstream"}]},
            {"name": "mock-model", "targets": [{"provider": "mock", "model": "mock-model"}]},
        ],
    }


def settings_from(config: dict[str, Any], env: dict[str, str] | None = None) -> Settings:
    return load(yaml.safe_dump(config), ENV if env is None else env)

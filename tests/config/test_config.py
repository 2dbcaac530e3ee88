"""Config loading: every problem at once as `path.in.file: reason`; secrets from the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import digest, load, load_file
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, env or {})
    return info.value.problems


def test_demo_config_loads() -> None:
    settings = load_file(ROOT / "deploy" / "demo.yaml", {})
    assert settings.store.url == "memory://"
    assert settings.providers[0].api == "mock"
    assert settings.keys[0].sha256 == digest("sk-gateway-demo-key")
    assert settings.server.mounts[0] == "/v1"


def test_empty_file_gives_defaults() -> None:
    settings = load("", {})
    assert settings.server.port == 8080
    assert len(settings.server.mounts) == 5


def test_every_schema_problem_is_listed_with_its_path() -> None:
    found = problems("server: {port: high}\nproviders:\n  - {name: a, api: nope}\nbogus: 1\n")
    joined = "\n".join(found)
    assert "server.port:" in joined
    assert "providers[0].api:" in joined
    assert len(found) >= 3


def test_missing_secret_names_the_variable() -> None:
    found = problems(
        "providers:\n  - name: openai\n    api: responses\n    base_url: https://x/v1\n"
        "    accounts: [{name: main, api_key_env: OPENAI_API_KEY}]\n"
        "auth:\n  keys: [{id: a, key_env: TEAM_A_KEY}]\n"
    )
    assert (
        "providers[0].accounts[0].api_key_env: environment variable OPENAI_API_KEY is not set"
        in found
    )
    assert "auth.keys[0].key_env: environment variable TEAM_A_KEY is not set" in found


def test_key_needs_exactly_one_source() -> None:
    found = problems(
        "auth:\n  keys: [{id: a, key: sk-aaaaaaaaaa, key_sha256: '" + "0" * 64 + "'}, {id: b}]\n"
    )
    assert any(p.startswith("auth.keys[0]:") for p in found)
    assert any(p.startswith("auth.keys[1]:") for p in found)


def test_model_target_must_name_a_provider() -> None:
    found = problems("models:\n  - name: m\n    targets: [{provider: ghost, model: x}]\n")
    assert found == ["models[0].targets[0].provider: unknown provider 'ghost'"]


def test_yaml_syntax_error_says_where() -> None:
    found = problems("server: {port: 1\n")
    assert found[0].startswith("<file>: not valid YAML (line")


def test_environment_overrides() -> None:
    settings = load(
        "store: {url: 'memory://'}\n", {"REDIS_URL": "redis://r:6379/0", "GATEWAY_PORT": "9000"}
    )
    assert settings.store.url == "redis://r:6379/0"
    assert settings.server.port == 9000


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_check_config_cli(tmp_path: Path) -> None:
    ok = run_cli("check-config", str(ROOT / "deploy" / "demo.yaml"))
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: -1}\nmodels: [{name: m, targets: [{provider: x, model: y}]}]\n")
    failed = run_cli("check-config", str(bad))
    assert failed.returncode == 1
    assert "server.port:" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_hash_key_cli() -> None:
    done = run_cli("hash-key", "sk-abc")
    assert done.stdout.strip() == digest("sk-abc")

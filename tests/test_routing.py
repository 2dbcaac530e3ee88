"""Routing: weighted picking, cooldown and recovery, retries to another account, fallbacks, 503."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config import Account, ProviderSettings
from gateway.providers.mock import MockProvider
from gateway.routing import Health, Target
from tests.support.configs import KEY_A, UPSTREAM_KEY
from tests.support.stub import Behaviour, StubUpstream

AUTH = {"Authorization": f"Bearer {KEY_A}"}
SECOND_KEY = "sk-second-account-77"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def target(
    name: str, weight: float, accounts: tuple[Account, ...] = (Account("a"),), cooldown: float = 30
) -> Target:
    settings = ProviderSettings(name=name, api="mock", accounts=accounts, cooldown_s=cooldown)
    return Target(MockProvider(settings), f"{name}-model", weight)


def test_weighted_picking_within_statistical_bounds() -> None:
    health = Health()
    targets = [target("light", 1), target("heavy", 3)]
    counts = Counter(
        health.pick(targets, set())[0].provider.name  # type: ignore[index]
        for _ in range(20000)
    )
    share = counts["heavy"] / 20000
    # 0.75 expected; 20000 draws give a standard deviation near 0.003.
    assert 0.73 < share < 0.77


def test_account_weights_multiply_target_weights() -> None:
    health = Health()
    accounts = (Account("x", weight=1), Account("y", weight=9))
    counts = Counter(
        health.pick([target("p", 1, accounts)], set())[1].name  # type: ignore[index]
        for _ in range(10000)
    )
    assert 0.87 < counts["y"] / 10000 < 0.93


def test_cooldown_then_recovery() -> None:
    clock = Clock()
    health = Health(clock)
    one, two = target("one", 1, cooldown=30), target("two", 1, cooldown=30)
    health.fail(one, one.provider.settings.accounts[0], None)
    assert all(health.pick([one, two], set())[0] is two for _ in range(50))  # type: ignore[index]
    clock.now += 29
    assert health.cooling_for(one, one.provider.settings.accounts[0]) == pytest.approx(1)
    clock.now += 2
    assert health.cooling_for(one, one.provider.settings.accounts[0]) == 0
    assert {
        health.pick([one, two], set())[0].provider.name  # type: ignore[index]
        for _ in range(100)
    } == {"one", "two"}


def test_upstream_retry_after_longer_than_cooldown_wins() -> None:
    clock = Clock()
    health = Health(clock)
    one = target("one", 1, cooldown=5)
    health.fail(one, one.provider.settings.accounts[0], 60)
    clock.now += 30
    assert health.pick([one], set()) is None
    assert health.soonest([one]) == pytest.approx(30)


@pytest.fixture
def two_accounts(config: dict[str, Any]) -> dict[str, Any]:
    config["providers"][0]["accounts"] = [
        {"name": "main", "api_key_env": "UP_KEY"},
        {"name": "second", "api_key_env": "SECOND_KEY"},
    ]
    return config


@pytest.fixture
async def gateway2(aiohttp_client: Any, two_accounts: dict[str, Any]) -> TestClient[Any, Any]:
    from gateway.app import create_app
    from tests.support.configs import ENV, settings_from

    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings_from(two_accounts, {**ENV, "SECOND_KEY": SECOND_KEY}))
    )
    return client


@pytest.mark.parametrize("status", [500, 429, 401])
async def test_failed_account_is_retried_on_the_other(
    gateway2: TestClient[Any, Any], stub: StubUpstream, status: int
) -> None:
    stub.behaviour = Behaviour(fail_keys={UPSTREAM_KEY: status})
    for _ in range(4):
        resp = await gateway2.post(
            "/v1/responses", json={"model": "gpt-test", "input": "x"}, headers=AUTH
        )
        assert resp.status == 200
    used = [r.headers["Authorization"] for r in stub.requests]
    # The failing account was tried at most once, then cooled down.
    assert used.count(f"Bearer {UPSTREAM_KEY}") <= 1
    assert used.count(f"Bearer {SECOND_KEY}") == 4


async def test_fallback_model_serves_when_the_first_is_down(
    make_gateway: Any, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["models"][0]["fallbacks"] = ["mock-model"]
    gateway = await make_gateway(config)
    stub.behaviour = Behaviour(status=503, body=b"down")
    resp = await gateway.post(
        "/v1/responses", json={"model": "gpt-test", "input": "hi"}, headers=AUTH
    )
    assert resp.status == 200
    assert resp.headers["x-gateway-provider"] == "mock"
    assert resp.headers["x-gateway-model"] == "mock-model"
    assert len(stub.requests) == 1


async def test_stream_fallback_happens_before_the_first_byte(
    make_gateway: Any, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["models"][0]["fallbacks"] = ["mock-model"]
    gateway = await make_gateway(config)
    stub.behaviour = Behaviour(raw_stream=b"")
    resp = await gateway.post(
        "/v1/responses", headers=AUTH, json={"model": "gpt-test", "input": "hi", "stream": True}
    )
    assert resp.status == 200
    assert resp.headers["x-gateway-provider"] == "mock"
    assert b"response.completed" in await resp.read()


async def test_every_target_down_is_503_no_accounts(
    gateway2: TestClient[Any, Any], stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(fail_keys={UPSTREAM_KEY: 500, SECOND_KEY: 500})
    first = await gateway2.post(
        "/v1/responses", json={"model": "gpt-test", "input": "x"}, headers=AUTH
    )
    assert first.status == 502
    assert len(stub.requests) == 2
    then = await gateway2.post(
        "/v1/responses", json={"model": "gpt-test", "input": "x"}, headers=AUTH
    )
    assert then.status == 503
    error = (await then.json())["error"]
    assert error["code"] == "no_accounts"
    assert int(then.headers["retry-after"]) >= 1
    assert len(stub.requests) == 2


async def test_client_errors_are_not_retried(
    gateway2: TestClient[Any, Any], stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(status=400, body=b'{"error": {"message": "bad", "type": "x"}}')
    resp = await gateway2.post(
        "/v1/responses", json={"model": "gpt-test", "input": "x"}, headers=AUTH
    )
    assert resp.status == 400
    assert len(stub.requests) == 1

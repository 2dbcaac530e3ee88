"""Shared fixtures: a real redis-server, a stub upstream, the gateway and the official SDK."""

from __future__ import annotations

import gc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.app import create_app
from tests.support.configs import KEY_A, base_config, settings_from
from tests.support.edge_logguard import LogGuard
from tests.support.finished_apps import forget_finished_apps
from tests.support.redis_server import RedisServer
from tests.support.stream_faults import AccessLines, access_log
from tests.support.stub import StubUpstream

MakeGateway = Callable[..., Awaitable[TestClient[Any, Any]]]

# Everything logged during the run, in process and by gateway processes, is searched for the
# tests' secrets at the end; one hit fails the run.
LOG_GUARD = LogGuard()


def pytest_sessionstart(session: pytest.Session) -> None:
    LOG_GUARD.install()


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported (the SDKs, pydantic's models, every test module) lives as long
    as the run: the garbage collector stops scanning it, which keeps its pauses short."""
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    LOG_GUARD.uninstall()
    findings = LOG_GUARD.findings()
    if not findings:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["a secret was logged:", *(f"  {f}" for f in findings[:20])]
    if reporter is not None:
        reporter.write_sep("=", "log guard", red=True)
        for line in lines:
            reporter.write_line(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """Each test's gateways are let go when it ends (tests/support/finished_apps.py)."""
    yield
    forget_finished_apps()


@pytest.fixture
def access() -> Iterator[AccessLines]:
    """The gateway's access-log lines during the test."""
    with access_log() as lines:
        yield lines


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def stub(aiohttp_server: AiohttpServer) -> StubUpstream:
    upstream = StubUpstream()
    server = await aiohttp_server(upstream.app)
    upstream.url = str(server.make_url("")).rstrip("/")
    return upstream


@pytest.fixture
def config(stub: StubUpstream) -> dict[str, Any]:
    return base_config(stub.url)


@pytest.fixture
def make_gateway(aiohttp_client: AiohttpClient, config: dict[str, Any]) -> MakeGateway:
    async def make(cfg: dict[str, Any] | None = None, **kwargs: Any) -> TestClient[Any, Any]:
        return await aiohttp_client(create_app(settings_from(cfg or config)), **kwargs)

    return make


@pytest.fixture
async def gateway(make_gateway: MakeGateway) -> TestClient[Any, Any]:
    return await make_gateway()


@pytest.fixture
async def sdk(gateway: TestClient[Any, Any]) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        yield client


@pytest.fixture(params=["memory", "redis"])
async def store_gateway(
    request: pytest.FixtureRequest, make_gateway: MakeGateway, config: dict[str, Any]
) -> TestClient[Any, Any]:
    """The gateway on each store backend: in memory, and on the session's redis-server under a
    prefix of its own."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        config["store"] = {"url": server.url, "prefix": f"t{uuid.uuid4().hex[:12]}:"}
    return await make_gateway(config)

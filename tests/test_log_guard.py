"""No log shows a credential: the redaction every record goes through, and the guard that
searches the whole run's logs (proved here on guards of its own, never the run's)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.observability import JSONFormatter
from gateway.redact import RedactingFilter, redact
from tests.support.configs import KEY_A, SECRETS, UPSTREAM_KEY, base_config, settings_from
from tests.support.edge_logguard import LogGuard, register_secret
from tests.support.edge_wire import exchange

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture
def private_logger() -> Iterator[logging.Logger]:
    """A logger whose records reach no handler of the run (so the run's guard never sees
    the secrets written to it)."""
    logger = logging.getLogger("tests.private-guard")
    logger.propagate = False
    yield logger
    logger.handlers.clear()


def test_the_guard_reports_a_secret_logged_in_process(private_logger: logging.Logger) -> None:
    guard = LogGuard(secrets=lambda: SECRETS, files=[])
    guard.install(private_logger)
    try:
        private_logger.info("calling upstream with %s", UPSTREAM_KEY)
        private_logger.info("nothing to see")
        try:
            raise ValueError(f"bad key {KEY_A}")
        except ValueError:
            private_logger.exception("failed")
        private_logger.info("request", extra={"auth": f"Bearer {KEY_A}"})
    finally:
        guard.uninstall(private_logger)
    found = guard.findings()
    assert len(found) == 3, found
    assert all(KEY_A not in str(f) and UPSTREAM_KEY not in str(f) for f in found)
    assert "calling upstream" in found[0].line


def test_the_guard_reads_process_logs_and_knows_minted_shapes(tmp_path: Path) -> None:
    log = tmp_path / "replica.log"
    minted = "sk-gw-" + "A" * 43
    log.write_text(f'{{"msg": "ok"}}\n{{"msg": "key {minted}"}}\n{{"msg": "jwt {JWT}"}}\n')
    guard = LogGuard(secrets=lambda: SECRETS, files=[log])
    found = guard.findings()
    assert [f.where for f in found] == ["replica.log:2", "replica.log:3"]
    assert minted not in str(found)


def test_a_registered_secret_is_searched_for(private_logger: logging.Logger) -> None:
    secret = "my-own-token-value-1234"
    guard = LogGuard(secrets=lambda: (*SECRETS, secret), files=[])
    guard.install(private_logger)
    private_logger.warning("token=%s", secret)
    guard.uninstall(private_logger)
    assert len(guard.findings()) == 1
    assert register_secret("x-y-z") == "x-y-z"


@pytest.mark.parametrize(
    "text",
    [
        f"b'POST / HTTP/1.1\\r\\nAuthorization: Bearer {KEY_A}\\r\\nHost: x'",
        f"Authorization: Basic {KEY_A}",
        f"{{'Authorization': 'Bearer {KEY_A}'}}",
        f"authorization={KEY_A}",
        f"x-api-key: {KEY_A}\n",
        f"used {KEY_A} for team-a",
        f"token {JWT} expired",
        f"Sec-WebSocket-Protocol: openai-insecure-api-key.{KEY_A}",
        f"Got more than 8190 bytes when reading: b'Authorization: Bearer {KEY_A}bbbbbbbb'.",
    ],
)
def test_redaction_removes_every_shape_of_credential(text: str) -> None:
    out = redact(text)
    assert KEY_A not in out
    assert JWT not in out
    assert "[REDACTED]" in out


def test_redaction_leaves_plain_text_alone() -> None:
    text = "request POST /v1/responses 200 in 12 ms (model gpt-test, key team-a)"
    assert redact(text) == text


def test_a_record_with_a_secret_and_bytes_that_are_not_utf8_is_one_json_line() -> None:
    record = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "bad %s", ("\udcff" + KEY_A,), None
    )
    try:
        raise ValueError(f"Authorization: Bearer {KEY_A}\udcfe")
    except ValueError as exc:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.path = "/v1/\udcff"
    RedactingFilter().filter(record)
    line = JSONFormatter().format(record)
    parsed = orjson.loads(line)
    assert KEY_A not in line
    assert parsed["logger"] == "aiohttp.server"
    assert "ValueError" in parsed["exc"]


async def test_aiohttp_own_runner_logs_no_key_for_a_malformed_request() -> None:
    # Not the gateway's runner: aiohttp's own (as the test client uses), whose handler logs
    # the parse error with its text.
    server = TestServer(create_app(settings_from(base_config("http://127.0.0.1:9"))))
    await server.start_server()
    guard = LogGuard(secrets=lambda: SECRETS, files=[])
    guard.install(logging.getLogger("aiohttp.server"))
    try:
        data = b"POST /v1/responses HTTP/1.1\nAuthorization: Bearer %s\x01\n\n" % KEY_A.encode()
        assert server.port is not None
        answer = await asyncio.to_thread(exchange, server.port, data)
    finally:
        guard.uninstall(logging.getLogger("aiohttp.server"))
        await server.close()
    assert answer is not None
    assert answer.status == 400
    assert guard.lines, "aiohttp logged nothing: the case was not exercised"
    assert guard.findings() == []


def test_extra_fields_of_any_shape_are_redacted() -> None:
    record = logging.LogRecord("gateway", logging.INFO, __file__, 1, "upstream call", None, None)
    record.headers = {"Authorization": f"Bearer {KEY_A}", "n": 1, "nested": [f"key {KEY_A}"]}
    record.url = f"redis://:{UPSTREAM_KEY}@redis:6379/0"
    line = JSONFormatter().format(record)
    assert KEY_A not in line
    assert UPSTREAM_KEY not in line
    assert orjson.loads(line)["headers"]["n"] == 1

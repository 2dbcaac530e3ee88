"""Hostile input at the HTTP edge: malformed HTTP, bytes that are not text, deep or ambiguous
JSON, broken compression, idle and excess connections. Never a 5xx, always the envelope (or a
closed connection for what is not HTTP), never a secret in a log."""

from __future__ import annotations

import gzip
import json
import resource
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.config import Settings
from gateway.errors import ConfigError
from tests.support.configs import ADMIN_KEY, KEY_A, SECRETS, base_config, settings_from
from tests.support.edge_logguard import LogGuard
from tests.support.edge_wire import (
    Answer,
    closed_within,
    connect,
    exchange,
    read_answer,
    request_bytes,
    threaded_gateway,
)
from tests.support.processes import ROOT, Replica

AUTH = (b"Authorization", b"Bearer " + KEY_A.encode())
JSON_CT = (b"Content-Type", b"application/json")
OK_BODY = b'{"model":"mock-model","input":"hi"}'


def edge_config(**server: Any) -> dict[str, Any]:
    config = base_config("http://127.0.0.1:9")
    config["server"].update(server)
    return config


@pytest.fixture(scope="module")
def gateway_port() -> Iterator[int]:
    settings: Settings = settings_from(edge_config(access_log=True, max_body_bytes=1_000_000))
    with threaded_gateway(settings) as port:
        yield port


def post(
    port: int, body: bytes, *headers: tuple[bytes, bytes], path: str = "/v1/responses"
) -> Answer:
    answer = exchange(port, request_bytes(body, path=path, headers=[AUTH, JSON_CT, *headers]))
    assert answer is not None, "closed without an answer"
    return answer


def assert_4xx(answer: Answer, status: int, code: str | None) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:300])
    error = answer.error()
    assert error["code"] == code, error
    return error


# -- malformed HTTP carrying a key: a 400, and the key in no log -----------------------------

MALFORMED = {
    "bare_lf": b"POST /v1/responses HTTP/1.1\nHost: g\nAuthorization: Bearer %s\n"
    b"Content-Length: 2\n\n{}",
    "long_header_line": b"POST /v1/responses HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer %s\r\n"
    b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n",
    "long_authorization_line": b"POST /v1/responses HTTP/1.1\r\nHost: g\r\n"
    b"Authorization: Bearer %s" + b"b" * 9000 + b"\r\n\r\n",
    "obs_fold": b"POST /v1/responses HTTP/1.1\r\nHost: g\r\nX-Folded: a\r\n"
    b" Authorization: Bearer %s\r\nContent-Length: 2\r\n\r\n{}",
    "bad_header_char": b"POST /v1/responses HTTP/1.1\r\nHost: g\r\n"
    b"Authorization: Bearer %s\x01\x02\r\n\r\n",
    "bad_request_line": b"POST /v1/responses?k=%s HTTP/1.1 extra\r\nHost: g\r\n\r\n",
    "space_in_header_name": b"POST /v1/responses HTTP/1.1\r\nHost: g\r\n"
    b"Authorization : Bearer %s\r\nContent-Length: 2\r\n\r\n{}",
}


@pytest.fixture(scope="module")
def logging_replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    config = edge_config(access_log=True, log_level="debug")
    replica = Replica(config, tmp_path_factory.mktemp("logging"), "logging").start()
    yield replica
    replica.stop()


@pytest.fixture(scope="module")
def edge_replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    config = edge_config(header_timeout_s=0.5, keepalive_timeout_s=4)
    replica = Replica(config, tmp_path_factory.mktemp("edge"), "edge").start()
    yield replica
    replica.stop()


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_http_with_a_key_is_a_400_and_no_log_shows_the_key(
    logging_replica: Replica, name: str
) -> None:
    answer = exchange(logging_replica.port, MALFORMED[name] % KEY_A.encode())
    if answer is not None:
        assert answer.status == 400, (answer.status, answer.body[:300])
        assert answer.error()["type"] == "invalid_request_error"
    # The gateway writes its line before it answers: the log is complete by now.
    log = logging_replica.log_path.read_text(errors="backslashreplace")
    assert KEY_A not in log, [line for line in log.splitlines() if KEY_A in line][:3]


def test_log_lines_stay_json_when_headers_are_not_utf8(logging_replica: Replica) -> None:
    for name in (b"Authorization", b"attribution", b"x-bf-async-id", b"x-request-id"):
        data = request_bytes(OK_BODY, headers=[(name, b"Bearer \xff\xfe\xc3"), JSON_CT])
        if name != b"Authorization":
            data = request_bytes(OK_BODY, headers=[AUTH, JSON_CT, (name, b"\xff\xfe\xc3")])
        answer = exchange(logging_replica.port, data)
        assert answer is not None
        assert 400 <= answer.status < 500, (name, answer.status, answer.body[:300])
        answer.error()
    text = logging_replica.log_path.read_text(errors="strict")
    logged = [line for line in text.splitlines() if not line.startswith("gateway serving")]
    assert logged, "nothing logged"
    for line in logged:
        assert line.startswith("{"), line
        orjson.loads(line)


def test_a_broken_compressed_body_is_answered_without_a_traceback(
    logging_replica: Replica,
) -> None:
    data = request_bytes(
        b"\x1f\x8b\x08 garbage " * 50, headers=[AUTH, JSON_CT, (b"Content-Encoding", b"gzip")]
    )
    answer = exchange(logging_replica.port, data)
    assert answer is not None
    assert_4xx(answer, 400, "invalid_content_encoding")
    # The next answer is written after any line about the broken one.
    assert exchange(logging_replica.port, b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n")
    logged = logging_replica.log_path.read_text(errors="backslashreplace")
    errors = [line for line in logged.splitlines() if '"level":"error"' in line]
    assert not errors, errors[:2]


# -- connection timeouts and the connection limit -------------------------------------------


def test_a_silent_connection_is_closed_after_the_header_timeout(edge_replica: Replica) -> None:
    with connect(edge_replica.port) as sock:
        elapsed = closed_within(sock, 5)
    assert elapsed is not None, "still open"
    assert 0.3 < elapsed < 3  # keepalive_timeout_s (4) is not what closed it


def test_half_a_request_line_is_closed_after_the_header_timeout(edge_replica: Replica) -> None:
    with connect(edge_replica.port) as sock:
        sock.sendall(b"POST /v1/resp")
        elapsed = closed_within(sock, 5)
    assert elapsed is not None, "still open"
    assert elapsed < 3


def test_a_request_head_sent_slowly_is_closed_after_the_header_timeout(
    edge_replica: Replica,
) -> None:
    with connect(edge_replica.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        closed = None
        for i in range(80):
            try:
                sock.sendall(b"X-Slow-%d: a\r\n" % i)
            except OSError:
                closed = time.monotonic() - started
                break
            closed = closed_within(sock, 0.1)
            if closed is not None:
                closed = time.monotonic() - started
                break
    assert closed is not None, "a head trickling in for 8 s was not cut"
    assert closed < 3


def test_an_idle_keep_alive_connection_lives_until_the_keepalive_timeout(
    edge_replica: Replica,
) -> None:
    healthz = b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n"
    with connect(edge_replica.port) as sock:
        sock.sendall(healthz)
        first = read_answer(sock)
        assert first is not None
        assert first.status == 200
        # Idle between requests past header_timeout_s: that timeout is for heads only.
        time.sleep(1.0)
        sock.sendall(healthz)
        second = read_answer(sock)
        assert second is not None
        assert second.status == 200
        elapsed = closed_within(sock, 10)
    assert elapsed is not None, "an idle keep-alive connection was never closed"
    assert 3 < elapsed < 8


def test_past_max_connections_a_request_gets_a_503_with_retry_after(tmp_path: Path) -> None:
    config = edge_config(max_connections=3, header_timeout_s=30, keepalive_timeout_s=30)
    replica = Replica(config, tmp_path, "crowded").start()
    healthz = b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n"
    held: list[socket.socket] = []
    try:
        # The start-up probe's connection may not be counted out yet: hold three that answer.
        deadline = time.monotonic() + 10
        while len(held) < 3 and time.monotonic() < deadline:
            sock = connect(replica.port)
            sock.sendall(healthz)
            answer = read_answer(sock)
            if answer is not None and answer.status == 200:
                held.append(sock)
            else:
                sock.close()
        assert len(held) == 3
        refused = exchange(replica.port, request_bytes(OK_BODY, headers=[AUTH, JSON_CT]))
        assert refused is not None
        error = assert_4xx_or_5xx(refused, 503, "too_many_connections")
        assert error["type"] == "server_error"
        assert refused.headers.get("retry-after") == "1"
        assert refused.closed
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:
            again = exchange(replica.port, healthz)
            assert again is not None
            if again.status == 200 or time.monotonic() > deadline:
                break
        assert again.status == 200, "a freed slot was not reused"
    finally:
        for sock in held:
            sock.close()
        replica.stop()


def assert_4xx_or_5xx(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:300])
    error = answer.error()
    assert error["code"] == code
    return error


def test_connection_settings_have_their_defaults_and_are_checked() -> None:
    server = settings_from(base_config("http://127.0.0.1:9")).server
    assert (server.header_timeout_s, server.keepalive_timeout_s, server.max_connections) == (
        10,
        75,
        10000,
    )
    bad = edge_config(header_timeout_s=0, keepalive_timeout_s=-1, max_connections=0)
    with pytest.raises(ConfigError) as info:
        settings_from(bad)
    problems = "\n".join(info.value.problems)
    for name in ("header_timeout_s", "keepalive_timeout_s", "max_connections"):
        assert f"server.{name}" in problems, problems


# -- headers that are not UTF-8 --------------------------------------------------------------

NOT_UTF8 = [b"\xff", b"\xc3", b"ok\xed\xa0\x80", b"\x80abc"]


@pytest.mark.parametrize("value", NOT_UTF8)
def test_an_authorization_header_that_is_not_utf8_is_a_401(gateway_port: int, value: bytes) -> None:
    answer = exchange(
        gateway_port,
        request_bytes(OK_BODY, headers=[(b"Authorization", b"Bearer " + value), JSON_CT]),
    )
    assert answer is not None
    assert_4xx(answer, 401, "invalid_api_key")


@pytest.mark.parametrize(
    "header", [b"attribution", b"x-bf-async-id", b"x-request-id", b"x-provider"]
)
@pytest.mark.parametrize("value", NOT_UTF8)
def test_a_read_header_that_is_not_utf8_is_a_400_naming_it(
    gateway_port: int, header: bytes, value: bytes
) -> None:
    answer = post(gateway_port, OK_BODY, (header, value))
    error = assert_4xx(answer, 400, "invalid_header")
    assert error["param"] == header.decode()


# -- JSON too deep for the gateway to write back ---------------------------------------------


def nest(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def deep_bodies(levels: int) -> dict[str, tuple[str, bytes]]:
    """Bodies whose deepest value is `levels` levels down, by where the depth sits."""
    n = levels
    return {
        "unknown_field": (
            "/v1/responses",
            b'{"model":"mock-model","input":"hi","x":%s}' % nest(n - 1),
        ),
        "tool_parameters": (
            "/v1/responses",
            b'{"model":"mock-model","input":"hi","tools":[{"type":"function","name":"f",'
            b'"parameters":{"type":"object","x":%s}}]}' % nest(n - 4),
        ),
        "text_format_schema": (
            "/v1/responses",
            b'{"model":"mock-model","input":"hi","text":{"format":{"type":"json_schema",'
            b'"name":"s","schema":{"type":"object","x":%s}}}}' % nest(n - 4),
        ),
        "input_item": (
            "/v1/responses",
            b'{"model":"mock-model","input":[{"role":"user","content":"hi","x":%s}]}' % nest(n - 3),
        ),
        "conversation_items": (
            "/v1/conversations",
            b'{"items":[{"type":"message","role":"user","content":"hi","x":%s}]}' % nest(n - 3),
        ),
        "admin_key": ("/admin/keys", b'{"metadata":%s}' % nest(n - 1)),
    }


@pytest.mark.parametrize("levels", [241, 254, 255, 600, 1023])
@pytest.mark.parametrize("where", sorted(deep_bodies(300)))
def test_json_nested_too_deep_is_a_400_naming_the_limit(
    gateway_port: int, where: str, levels: int
) -> None:
    path, body = deep_bodies(levels)[where]
    auth = (
        (b"Authorization", b"Bearer " + ADMIN_KEY.encode()) if path.startswith("/admin") else AUTH
    )
    answer = exchange(gateway_port, request_bytes(body, path=path, headers=[auth, JSON_CT]))
    assert answer is not None
    error = assert_4xx(answer, 400, "json_too_deep")
    assert "240" in error["message"]


def test_json_nested_within_the_limit_is_no_5xx(gateway_port: int) -> None:
    for where, (path, body) in deep_bodies(240).items():
        auth = (
            (b"Authorization", b"Bearer " + ADMIN_KEY.encode())
            if path.startswith("/admin")
            else AUTH
        )
        answer = exchange(gateway_port, request_bytes(body, path=path, headers=[auth, JSON_CT]))
        assert answer is not None
        assert answer.status < 500, (where, answer.status, answer.body[:300])
        if answer.status >= 400:
            assert answer.error()["code"] != "json_too_deep", where


def test_a_conversations_items_route_refuses_deep_json(gateway_port: int) -> None:
    created = post(gateway_port, b"{}", path="/v1/conversations")
    assert created.status == 200, created.body[:300]
    conv = orjson.loads(created.body)["id"]
    _, body = deep_bodies(600)["conversation_items"]
    answer = post(gateway_port, body, path=f"/v1/conversations/{conv}/items")
    assert_4xx(answer, 400, "json_too_deep")


# -- Content-Encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        ("gzip", b"this is not gzip at all"),
        ("gzip", gzip.compress(OK_BODY)[:15]),
        ("deflate", b"\x78\x9c not deflate"),
        ("deflate", b"plain text"),
        ("gzip", b""),
    ],
)
def test_a_body_that_does_not_decompress_is_a_400(
    gateway_port: int, encoding: str, payload: bytes
) -> None:
    answer = post(gateway_port, payload, (b"Content-Encoding", encoding.encode()))
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    answer.error()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_garbled_compressed_body_names_the_encoding(gateway_port: int, encoding: str) -> None:
    answer = post(
        gateway_port, b"\x1f\x8b\x08 garbage " * 20, (b"Content-Encoding", encoding.encode())
    )
    error = assert_4xx(answer, 400, "invalid_content_encoding")
    assert encoding in error["message"]


def test_a_well_compressed_body_is_served(gateway_port: int) -> None:
    for encoding, data in (("gzip", gzip.compress(OK_BODY)), ("deflate", zlib.compress(OK_BODY))):
        answer = post(gateway_port, data, (b"Content-Encoding", encoding.encode()))
        assert answer.status == 200, (encoding, answer.body[:300])


@pytest.mark.parametrize(
    ("encoding", "code"),
    [
        (b"br", "invalid_content_encoding"),
        (b"zstd", "invalid_content_encoding"),
        # Codings aiohttp does not know leave the body as sent: here not JSON.
        (b"compress", "invalid_json"),
        (b"x-unknown", "invalid_json"),
    ],
)
def test_an_encoding_without_a_decoder_is_a_400(
    gateway_port: int, encoding: bytes, code: str
) -> None:
    answer = post(gateway_port, b"\x28\xb5\x2f\xfd garbage", (b"Content-Encoding", encoding))
    assert_4xx(answer, 400, code)


def test_a_decompression_bomb_is_a_413(gateway_port: int) -> None:
    bomb = gzip.compress(b'{"model":"mock-model","input":"' + b"a" * 5_000_000 + b'"}')
    assert len(bomb) < 100_000
    answer = post(gateway_port, bomb, (b"Content-Encoding", b"gzip"))
    assert_4xx(answer, 413, "request_too_large")


# -- duplicate keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"model":"mock-model","input":"hi","model":"gpt-test"}', "model"),
        (b'{"model":"mock-model","input":"hi","m\\u006fdel":"gpt-test"}', "model"),
        (b'{"model":"mock-model","store":false,"input":"hi","store":true}', "store"),
        (b'{"model":"mock-model","input":"hi","stream":false,"stream":true}', "stream"),
        (b'{"model":"mock-model","input":"hi","input":[{"role":"user","content":"x"}]}', "input"),
        (b'{"model":"mock-model","input":[{"role":"user","role":"system","content":"x"}]}', "role"),
        (b'{"model":"mock-model","input":"a:b","metadata":{"k":"\\u003a","k":"v"}}', "k"),
    ],
)
def test_a_key_twice_in_one_object_is_a_400_naming_it(
    gateway_port: int, body: bytes, key: str
) -> None:
    answer = post(gateway_port, body)
    error = assert_4xx(answer, 400, "duplicate_key")
    assert error["param"] == key


def test_colons_and_escapes_in_strings_are_not_duplicates(gateway_port: int) -> None:
    body = b'{"model":"mock-model","input":"a: b \\u003a c \\\\u003a","metadata":{"k:":"v:"}}'
    answer = post(gateway_port, body)
    assert answer.status == 200, answer.body[:300]


# -- huge numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number", [b"1e400", b"-1e400", str(2**70).encode(), str(-(2**64)).encode(), b"1" * 400]
)
def test_huge_numbers_are_no_5xx(gateway_port: int, number: bytes) -> None:
    for body in (
        b'{"model":"mock-model","input":"hi","max_output_tokens":%s}' % number,
        b'{"model":"mock-model","input":"hi","temperature":%s}' % number,
        b'{"model":"mock-model","input":"hi","x":[%s]}' % number,
    ):
        answer = post(gateway_port, body)
        assert answer.status < 500, (body, answer.status, answer.body[:300])
        if answer.status >= 400:
            answer.error()


# -- properties: whatever arrives, no 5xx, the envelope, no key in a log -----------------------

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))

READ_HEADERS = [
    b"Authorization",
    b"attribution",
    b"x-request-id",
    b"x-provider",
    b"x-tfy-provider-name",
    b"x-bf-async",
    b"x-bf-async-id",
    b"x-bf-async-job-result-ttl",
    b"x-bf-extra-fields",
    b"traceparent",
    b"Content-Type",
    b"Content-Encoding",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Connection",
    b"Expect",
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
NUMBERS = st.sampled_from(
    [b"1e400", b"-1e400", b"1e-400", str(2**70).encode(), str(-(2**64)).encode(), b"1" * 500, b"-0"]
)


@pytest.fixture(scope="module")
def local_guard() -> Iterator[LogGuard]:
    guard = LogGuard(secrets=lambda: SECRETS, files=[])
    guard.install()
    yield guard
    guard.uninstall()


def assert_sane(answer: Answer | None, sent: bytes) -> None:
    """A closed connection (what is not HTTP), or an answer that is no 5xx and, when an
    error, the envelope."""
    if answer is None:
        return
    assert answer.status < 500, (answer.status, answer.body[:300], sent[:300])
    if answer.status >= 400:
        answer.error()


def assert_no_key_logged(guard: LogGuard) -> None:
    found = guard.findings()
    assert not found, [str(f) for f in found[:3]]


def test_any_header_name_and_value_gets_no_5xx(gateway_port: int, local_guard: LogGuard) -> None:
    @PROPERTY
    @given(
        name=st.sampled_from(READ_HEADERS) | st.binary(min_size=1, max_size=40),
        value=st.binary(max_size=200) | st.binary(min_size=8000, max_size=9000),
        keep_auth=st.booleans(),
    )
    def check(name: bytes, value: bytes, keep_auth: bool) -> None:
        headers = [AUTH, JSON_CT] if keep_auth else [JSON_CT]
        data = request_bytes(OK_BODY, headers=[*headers, (name, value)])
        assert_sane(exchange(gateway_port, data), data)

    check()
    assert_no_key_logged(local_guard)


def body_strategy() -> st.SearchStrategy[tuple[bytes, bytes | None]]:
    base = st.fixed_dictionaries(
        {"model": st.sampled_from(["mock-model", "mock/x", "nope"])},
        optional={"input": st.text(max_size=20) | JSON, "tools": JSON, "text": JSON, "x": JSON},
    )

    @st.composite
    def build(draw: st.DrawFn) -> tuple[bytes, bytes | None]:
        body = json.dumps(draw(base)).encode()
        if draw(st.booleans()):  # a key again, maybe one governance reads
            key = draw(st.sampled_from(["model", "store", "stream", "input", "x"]))
            body = body[:-1] + b',"%s":%s}' % (key.encode(), json.dumps(draw(JSON)).encode())
        if draw(st.booleans()):
            depth = draw(st.integers(0, 1100))
            body = body[:-1] + b',"deep":%s}' % nest(depth)
        if draw(st.booleans()):
            body = body[:-1] + b',"n":%s}' % draw(NUMBERS)
        encoding = draw(st.sampled_from([None, b"gzip", b"deflate", b"br", b"zstd", b"identity"]))
        if encoding == b"gzip":
            body = draw(st.sampled_from([gzip.compress(body), gzip.compress(body)[:10], body]))
        elif encoding == b"deflate":
            body = draw(st.sampled_from([zlib.compress(body), b"\x78\x9c" + body, body]))
        return body, encoding

    return build()


def test_any_body_gets_no_5xx(gateway_port: int, local_guard: LogGuard) -> None:
    @PROPERTY
    @given(sent=body_strategy())
    def check(sent: tuple[bytes, bytes | None]) -> None:
        body, encoding = sent
        extra = [(b"Content-Encoding", encoding)] if encoding else []
        data = request_bytes(body, headers=[AUTH, JSON_CT, *extra])
        assert_sane(exchange(gateway_port, data), data)

    check()
    assert_no_key_logged(local_guard)


@st.composite
def mutated_request(draw: st.DrawFn) -> bytes:
    data = bytearray(request_bytes(OK_BODY, headers=[AUTH, JSON_CT]))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        chunk = draw(
            st.binary(min_size=1, max_size=8)
            | st.sampled_from([b"\n", b"\r", b"\r\n ", b"\x00", b":", b"\xff", b"a" * 9000])
        )
        if kind == "replace":
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = chunk
        else:
            del data[at : at + draw(st.integers(1, 20))]
    return bytes(data)


def test_any_mangled_request_gets_no_5xx_and_logs_no_key(
    gateway_port: int, local_guard: LogGuard
) -> None:
    @PROPERTY
    @given(data=mutated_request())
    def check(data: bytes) -> None:
        # A mangled Content-Length may leave the server waiting for more: end the request.
        with connect(gateway_port, timeout=3) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            try:
                answer = read_answer(sock)
            except (ConnectionResetError, TimeoutError):
                answer = None
        assert_sane(answer, data)

    check()
    assert_no_key_logged(local_guard)


def test_the_open_file_limit_is_raised_for_max_connections() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        assert hard >= 2256, "this machine's hard limit is too low for the test"
    script = (
        "import resource\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from gateway.server import raise_fd_limit\n"
        "print(raise_fd_limit(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["2256", "2256"], out

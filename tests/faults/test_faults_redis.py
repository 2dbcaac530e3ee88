"""Redis as a failing dependency: killed, restarted empty, paused, slow and full.

Each test runs its own redis-server (tests/support/redis_faults.py) and breaks it for real;
the client is the official SDK or plain HTTP, and every test looks at what the client got,
what was kept, and what was logged or counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.errors import ServiceUnavailableError
from gateway.keys import DEPS
from tests.support.configs import ADMIN_KEY, KEY_A
from tests.support.processes import Replica
from tests.support.redis_faults import FaultyRedis, eventually, metric
from tests.support.stub import Behaviour, StubUpstream

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def faulty() -> Iterator[FaultyRedis]:
    server = FaultyRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()  # resumes a paused server first


@pytest.fixture
def on_faulty(config: dict[str, Any], faulty: FaultyRedis) -> dict[str, Any]:
    config["store"] = {"url": faulty.url, "prefix": "f:"}
    config["auth"]["keys"][0]["rpm"] = 1000
    return config


@pytest.fixture
async def gw(make_gateway: Any, on_faulty: dict[str, Any]) -> Client:
    gateway: Client = await make_gateway(on_faulty)
    return gateway


@pytest.fixture
async def sdk_gw(gw: Client) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=str(gw.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        yield client


async def finished(client: openai.AsyncOpenAI, rid: str, timeout_s: float = 10) -> Any:
    """Poll a background response until it leaves queued/in_progress."""
    found: list[Any] = []

    async def done() -> bool:
        found[:] = [await client.responses.retrieve(rid)]
        return found[0].status not in ("queued", "in_progress")

    await eventually(done, timeout_s, 0.05)
    return found[0]


def frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """An SSE body as (event name, JSON data) pairs."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = "", b""
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data += line[6:]
        if data:
            out.append((name, orjson.loads(data)))
    return out


async def stored_responses(faulty: FaultyRedis) -> list[bytes]:
    return [k for k in faulty.keys("f:resp:*")]


# --- Restarted empty: every structure the gateway made once comes back by itself ------------


async def test_background_job_completes_after_redis_restarts_empty(
    on_faulty: dict[str, Any], faulty: FaultyRedis, stub: StubUpstream, tmp_path: Path
) -> None:
    replica = Replica(on_faulty, tmp_path, "replica").start()
    try:
        async with openai.AsyncOpenAI(
            base_url=f"{replica.url}/v1", api_key=KEY_A, max_retries=2
        ) as client:
            first = await client.responses.create(model="gpt-test", input="one", background=True)
            assert (await finished(client, first.id)).status == "completed"
            faulty.restart_empty()
            # The SDK retries the 503 a stale connection may cause once.
            second = await client.responses.create(model="gpt-test", input="two", background=True)
            final = await finished(client, second.id)
            assert final.status == "completed"
            assert "two" in final.output_text
            ready = await asyncio.to_thread(_get, f"{replica.url}/readyz")
            assert ready[0] == 200
        assert faulty.groups("f:jobs:{queue}") == ["workers"]
    finally:
        replica.stop()
    logged = replica.log_path.read_text()
    assert "NOGROUP" not in logged
    assert "consumer group was missing" in logged


def _get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_flushall_and_script_flush_leave_every_feature_working(
    gw: Client, sdk_gw: openai.AsyncOpenAI, faulty: FaultyRedis
) -> None:
    """The jobs group, the Lua scripts (limits, store, keys, jobs) and every key come back."""
    made = await gw.post("/admin/keys", json={"id": "made-before"}, headers=ADMIN)
    assert made.status == 201
    kept = await sdk_gw.responses.create(model="gpt-test", input="kept")
    job = await sdk_gw.responses.create(model="gpt-test", input="job", background=True)
    assert (await finished(sdk_gw, job.id)).status == "completed"
    faulty.command("FLUSHALL")
    faulty.command("SCRIPT", "FLUSH")

    raw = await sdk_gw.responses.with_raw_response.create(model="gpt-test", input="after")
    assert raw.headers["x-ratelimit-remaining-requests"] == "999"  # shared limits, from zero
    after = raw.parse()

    async def settled_in_redis() -> bool:  # the pipelined settlement loaded its script again
        return int(faulty.command("XLEN", "f:rl:{limits}:usage")) >= 1

    await eventually(settled_in_redis, 5)
    assert not gw.app[DEPS].governor.memory.stream
    chained = await sdk_gw.responses.create(
        model="gpt-test", input="chained", previous_response_id=after.id
    )
    assert chained.status == "completed"
    conv = await sdk_gw.conversations.create()
    await sdk_gw.responses.create(model="gpt-test", input="in it", conversation=conv.id)
    items = [i async for i in sdk_gw.conversations.items.list(conv.id)]
    assert len(items) == 2
    with pytest.raises(openai.BadRequestError):  # what FLUSHALL removed is gone, truthfully
        await sdk_gw.responses.create(model="gpt-test", input="x", previous_response_id=kept.id)
    again = await sdk_gw.responses.create(model="gpt-test", input="job two", background=True)
    assert (await finished(sdk_gw, again.id)).status == "completed"
    made = await gw.post("/admin/keys", json={"id": "made-after"}, headers=ADMIN)
    assert made.status == 201
    secret = (await made.json())["key"]
    models = await gw.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert models.status == 200
    ready = await gw.get("/readyz")
    assert ready.status == 200


async def test_readyz_follows_redis_down_and_back(gw: Client, faulty: FaultyRedis) -> None:
    assert (await gw.get("/readyz")).status == 200
    faulty.kill()
    down = await gw.get("/readyz")
    assert down.status == 503
    assert (await down.json())["status"] == "unavailable"
    faulty.start()  # empty: no consumer group either

    async def ready() -> bool:
        return (await gw.get("/readyz")).status == 200

    await eventually(ready, 5)
    # Ready means the job queue can be read: its consumer group is there again.
    assert faulty.groups("f:jobs:{queue}") == ["workers"]
    with faulty.paused():
        assert (await gw.get("/readyz")).status == 503
    await eventually(ready, 5)


# --- Metrics: jobs and Redis errors are counted ---------------------------------------------


async def test_jobs_and_redis_errors_are_counted(
    gw: Client, sdk_gw: openai.AsyncOpenAI, faulty: FaultyRedis
) -> None:
    before = (await (await gw.get("/metrics")).read()).decode()
    job = await sdk_gw.responses.create(model="gpt-test", input="counted", background=True)
    assert (await finished(sdk_gw, job.id)).status == "completed"
    queued = await sdk_gw.responses.create(model="gpt-test", input="cancel", background=True)
    await sdk_gw.responses.cancel(queued.id)
    faulty.kill()
    gone = await gw.get(f"/v1/responses/{job.id}", headers=AUTH)
    assert gone.status == 503
    after = (await (await gw.get("/metrics")).read()).decode()

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("gateway_jobs_total", event="submitted") == 2
    assert moved("gateway_jobs_total", event="completed") >= 1
    assert (
        moved("gateway_jobs_total", event="completed")
        + moved("gateway_jobs_total", event="cancelled")
        == 2
    )
    assert moved("gateway_redis_errors_total", operation="get_responses") >= 1
    assert moved("gateway_redis_errors_total") >= 1


# --- A stored response is never claimed when it was not kept ------------------------------


async def charged(gw: Client, faulty: FaultyRedis, status: str) -> list[dict[str, str]]:
    """The usage records of that status, wherever the settlement went: the shared stream in
    Redis, or this process's (limits fall back to it while Redis fails)."""
    found: list[dict[str, str]] = []

    async def settled() -> bool:
        shared = faulty.command("XRANGE", "f:rl:{limits}:usage", "-", "+")
        records = [{k.decode(): v.decode() for k, v in f.items()} for _, f in shared]
        records += list(gw.app[DEPS].governor.memory.stream)
        found[:] = [r for r in records if r["status"] == status]
        return bool(found)

    await eventually(settled, 5)
    return found


async def upstream_called(stub: StubUpstream, count: int = 1) -> None:
    async def called() -> bool:
        return len(stub.requests) >= count

    await eventually(called, 5, 0.01)


async def test_json_save_that_keeps_failing_is_503_not_a_false_store_true(
    gw: Client, faulty: FaultyRedis, stub: StubUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    stub.behaviour = Behaviour(delay_s=0.3)
    body = {"model": "gpt-test", "input": "keep me"}
    sent = asyncio.ensure_future(gw.post("/v1/responses", json=body, headers=AUTH))
    await upstream_called(stub)
    with faulty.paused(), caplog.at_level(logging.WARNING, logger="gateway.state"):
        resp = await sent
        error = (await resp.json())["error"]
    assert resp.status == 503
    assert error["code"] == "store_unavailable"
    assert resp.headers["retry-after"] == "1"
    # (The writes that timed out were in Redis's socket buffer: they may land on SIGCONT.)
    assert any("could not keep response" in r.getMessage() for r in caplog.records)
    (record,) = await charged(gw, faulty, "503")  # the upstream's answer was paid for
    assert int(record["total_tokens"]) > 0


async def test_json_save_retried_through_a_short_pause_is_kept(
    sdk_gw: openai.AsyncOpenAI, faulty: FaultyRedis, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(delay_s=0.3)
    sent = asyncio.ensure_future(sdk_gw.responses.create(model="gpt-test", input="keep me"))
    await upstream_called(stub)
    faulty.pause()
    await asyncio.sleep(0.6)  # the fault: Redis hangs for 0.6 s, then answers again
    faulty.resume()
    first = await sent
    assert first.to_dict()["store"] is True
    chained = await sdk_gw.responses.create(
        model="gpt-test", input="and then", previous_response_id=first.id
    )
    assert chained.status == "completed"


async def test_stream_whose_save_fails_ends_failed_and_not_stored(
    gw: Client, faulty: FaultyRedis, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(between_s=0.05)
    body = {"model": "gpt-test", "input": "stream me", "stream": True}
    resp = await gw.post("/v1/responses", json=body, headers=AUTH)
    assert resp.status == 200
    first = await resp.content.readuntil(b"\n\n")  # response.created: the stream is under way
    with faulty.paused():
        raw = first + await resp.read()
    events = frames(raw)
    kind, last = events[-1]
    assert kind == "response.failed"
    assert last["type"] == "response.failed"
    assert last["response"]["status"] == "failed"
    assert last["response"]["store"] is False
    assert last["response"]["error"]["code"] == "store_unavailable"
    assert last["response"]["usage"]["total_tokens"] > 0  # what was spent, for the accounting
    assert not [k for k, _ in events if k == "response.completed"]
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    (record,) = await charged(gw, faulty, "200")
    assert record["total_tokens"] == str(last["response"]["usage"]["total_tokens"])


async def test_stream_on_a_full_redis_ends_failed_and_not_stored(
    make_gateway: Any, on_faulty: dict[str, Any], faulty: FaultyRedis
) -> None:
    del on_faulty["auth"]["keys"][0]["rpm"]  # no limits: nothing finds Redis full beforehand
    gw = await make_gateway(on_faulty)
    faulty.fill()
    try:
        body = {"model": "gpt-test", "input": "stream me", "stream": True}
        resp = await gw.post("/v1/responses", json=body, headers=AUTH)
        assert resp.status == 200
        kind, last = frames(await resp.read())[-1]
    finally:
        faulty.unfill()
    assert kind == "response.failed"
    assert last["response"]["store"] is False
    assert last["response"]["error"]["code"] == "store_unavailable"
    assert await stored_responses(faulty) == []  # refused writes never land


async def test_store_known_down_is_503_before_the_upstream_is_called(
    gw: Client, faulty: FaultyRedis, stub: StubUpstream
) -> None:
    faulty.kill()
    seen = await gw.get("/v1/responses/resp_1", headers=AUTH)  # the store is found down
    assert seen.status == 503
    for stream in (False, True):
        body = {"model": "gpt-test", "input": "keep me", "stream": stream}
        resp = await gw.post("/v1/responses", json=body, headers=AUTH)
        assert resp.status == 503
        assert resp.headers["retry-after"] == "1"
        assert (await resp.json())["error"]["code"] == "store_unavailable"
    assert stub.requests == []
    unstored = {"model": "gpt-test", "input": "keep nothing", "store": False}
    assert (await gw.post("/v1/responses", json=unstored, headers=AUTH)).status == 200
    faulty.start()
    again = await gw.post("/v1/responses", json={"model": "gpt-test", "input": "x"}, headers=AUTH)
    assert again.status == 200
    assert len(await stored_responses(faulty)) == 1


async def test_limits_that_fell_back_spare_the_upstream_a_response_it_cannot_keep(
    make_gateway: Any, on_faulty: dict[str, Any], faulty: FaultyRedis, stub: StubUpstream
) -> None:
    on_faulty["jobs"] = {"workers": 0}  # nothing else reads Redis: this request finds it down
    gw = await make_gateway(on_faulty)
    faulty.kill()
    resp = await gw.post("/v1/responses", json={"model": "gpt-test", "input": "x"}, headers=AUTH)
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "store_unavailable"
    assert stub.requests == []


async def test_full_redis_refuses_stored_responses_and_serves_reads(
    gw: Client, sdk_gw: openai.AsyncOpenAI, faulty: FaultyRedis, stub: StubUpstream
) -> None:
    kept = await sdk_gw.responses.create(model="gpt-test", input="before")
    faulty.fill()
    try:
        with pytest.raises(openai.InternalServerError) as refused:
            await sdk_gw.responses.create(model="gpt-test", input="while full")
        assert refused.value.status_code == 503
        assert refused.value.code == "store_unavailable"
        calls = len(stub.requests)
        with pytest.raises(openai.InternalServerError):  # known full: the upstream is spared
            await sdk_gw.responses.create(model="gpt-test", input="still full")
        assert len(stub.requests) == calls
        with pytest.raises(openai.InternalServerError):
            await sdk_gw.responses.create(model="gpt-test", input="job", background=True)
        assert (await sdk_gw.responses.retrieve(kept.id)).status == "completed"
        unstored = await sdk_gw.responses.create(model="gpt-test", input="x", store=False)
        assert unstored.status == "completed"
    finally:
        faulty.unfill()
    after = await sdk_gw.responses.create(model="gpt-test", input="after")
    assert after.to_dict()["store"] is True
    assert len(await stored_responses(faulty)) == 2


async def test_background_stream_ends_with_an_error_event_when_redis_dies(
    gw: Client, faulty: FaultyRedis, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(between_s=0.1)
    body = {"model": "gpt-test", "input": "follow me", "stream": True, "background": True}
    resp = await gw.post("/v1/responses", json=body, headers=AUTH)
    assert resp.status == 200
    first = await resp.content.readuntil(b"\n\n")
    faulty.kill()
    async with asyncio.timeout(10):
        events = frames(first + await resp.read())
    kind, last = events[-1]
    assert kind == "error"
    assert last["code"] == "store_unavailable"
    assert last["error"]["code"] == "store_unavailable"


# --- The failure matrix: each fault under each kind of request ------------------------------

STORE_DOWN = "503 store_unavailable"
# Once the gateway has noticed (a probe, its job queue's reads, or the key's limits failing
# over in the same request), a stored create is refused before the upstream is called. A
# store that fails only after the upstream answered: test_json_save_that_keeps_failing_...
# and test_stream_whose_save_fails_...
MATRIX = {
    "killed": {
        "json": STORE_DOWN,
        "stream": STORE_DOWN,
        "background": STORE_DOWN,
        "retrieve": STORE_DOWN,
    },
    "restarted_empty": {
        "json": "200 completed",
        "stream": "200 response.completed",
        "background": "200 queued, then completed",
        "retrieve": "404 not_found",
    },
    "paused": {
        "json": STORE_DOWN,
        "stream": STORE_DOWN,
        "background": STORE_DOWN,
        "retrieve": STORE_DOWN,
    },
    "slow": {  # answers within the gateway's Redis timeout
        "json": "200 completed",
        "stream": "200 response.completed",
        "background": "200 queued, then completed",
        "retrieve": "200 completed",
    },
    "full": {
        "json": STORE_DOWN,
        "stream": STORE_DOWN,
        "background": STORE_DOWN,
        "retrieve": "200 completed",
    },
}


async def outcome(gw: Client, mode: str, kept: str) -> str:
    """What the client got, in a few words: status, then code, status or last event."""
    if mode == "retrieve":
        resp = await gw.get(f"/v1/responses/{kept}", headers=AUTH)
        body = await resp.json()
        return f"{resp.status} {(body.get('error') or body).get('code', body.get('status'))}"
    body = {"model": "gpt-test", "input": f"a {mode} request"}
    body |= {"stream": True} if mode == "stream" else {}
    body |= {"background": True} if mode == "background" else {}
    resp = await gw.post("/v1/responses", json=body, headers=AUTH)
    if resp.status != 200:
        error = (await resp.json())["error"]
        assert resp.headers["retry-after"] == "1"
        return f"{resp.status} {error['code']}"
    if mode == "stream":
        kind, last = frames(await resp.read())[-1]
        error = last.get("response", {}).get("error") or {}
        return " ".join(filter(None, ["200", kind, error.get("code")]))
    answer = await resp.json()
    if mode == "json":
        return f"200 {answer['status']}"
    url = f"/v1/responses/{answer['id']}"

    async def done() -> bool:
        found = await (await gw.get(url, headers=AUTH)).json()
        answer["status"] = found["status"]
        return found["status"] not in ("queued", "in_progress")

    await eventually(done, 10)
    return f"200 queued, then {answer['status']}"


@pytest.mark.parametrize("mode", ["json", "stream", "background", "retrieve"])
@pytest.mark.parametrize("fault", list(MATRIX))
async def test_failure_matrix(
    gw: Client, faulty: FaultyRedis, stub: StubUpstream, fault: str, mode: str
) -> None:
    made = await gw.post("/v1/responses", json={"model": "gpt-test", "input": "x"}, headers=AUTH)
    kept = (await made.json())["id"]
    sleeper = None
    if fault == "killed":
        faulty.kill()
        assert (await gw.get("/readyz")).status == 503
    elif fault == "restarted_empty":
        faulty.restart_empty()
    elif fault == "paused":
        faulty.pause()
        assert (await gw.get("/readyz")).status == 503
    elif fault == "slow":
        sleeper = faulty.slow(0.1)
    else:
        faulty.fill()
    try:
        got = await outcome(gw, mode, kept)
    finally:
        if fault == "killed":
            faulty.start()
        faulty.resume()
        if sleeper is not None:
            sleeper.join()
        if fault == "full":
            faulty.unfill()
    assert got == MATRIX[fault][mode]
    # Recovery needs no restart: once Redis is back, the same request works.
    again = await gw.post("/v1/responses", json={"model": "gpt-test", "input": "y"}, headers=AUTH)
    assert again.status == 200


async def test_a_job_running_when_redis_restarts_empty_is_gone_and_the_queue_goes_on(
    gw: Client, sdk_gw: openai.AsyncOpenAI, faulty: FaultyRedis, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(between_s=0.05)
    running = await sdk_gw.responses.create(model="gpt-test", input="lost", background=True)

    async def started() -> bool:
        return (await sdk_gw.responses.retrieve(running.id)).status == "in_progress"

    await eventually(started, 5)
    faulty.restart_empty()
    with pytest.raises(openai.NotFoundError):  # its record went with Redis's data
        await sdk_gw.responses.retrieve(running.id)
    stub.behaviour = Behaviour()
    after = await sdk_gw.responses.create(model="gpt-test", input="next", background=True)
    assert (await finished(sdk_gw, after.id)).status == "completed"
    assert faulty.keys(f"f:resp:{{{running.id}}}") == []  # the old run wrote nothing back


async def test_a_turn_whose_conversation_cannot_grow_leaves_no_response_behind(
    make_gateway: Any, config: dict[str, Any]
) -> None:
    # The response was kept, then the conversation refused its items: the client is told
    # nothing was kept, so the response must not be found either.
    gateway = await make_gateway(config)
    store = gateway.app[DEPS].store
    conv = await gateway.post("/v1/conversations", json={}, headers=AUTH)
    conv_id = (await conv.json())["id"]

    async def refuse(*args: Any) -> bool:
        raise ServiceUnavailableError("The store is not answering.", code="store_unavailable")

    store.add_items = refuse
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "mock-model", "input": "hi", "conversation": conv_id},
        headers=AUTH,
    )
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "store_unavailable"
    assert store._responses == {}

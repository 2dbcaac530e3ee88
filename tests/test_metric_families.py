"""Every metric family the gateway declares moves under the traffic that should move it.

The families are read from gateway/metrics.py itself, so a new metric without traffic that
moves it here fails this test.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from gateway import metrics
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A, KEY_B
from tests.support.redis_faults import eventually
from tests.support.redis_server import free_port
from tests.support.stub import Behaviour, StubUpstream

A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


def declared() -> set[str]:
    return {value._name for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)}


def totals(text: str) -> dict[str, float]:
    """Each family's moving total: counters' values, histograms' counts, gauges' values."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name.endswith(("_created", "_bucket", "_sum")):
            continue
        family = name.removesuffix("_total").removesuffix("_count")
        found[family] = found.get(family, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


async def test_every_declared_family_moves(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["auth"]["keys"][1]["rpm"] = 1  # team-b: its second request a minute is refused
    # A guardrail that flags (counts, changes nothing) a card number team-a sends.
    config["guardrails"] = [
        {"name": "cards", "detect": ["credit_card"], "action": "flag", "keys": ["team-a"]}
    ]
    gw = await make_gateway(config, server_kwargs={"handler_cancellation": True})
    dead = dict(config, store={"url": f"redis://127.0.0.1:{free_port()}/0"})
    down = await make_gateway(dead)

    async def scrape() -> dict[str, float]:
        return totals(await (await gw.get("/metrics")).text())

    before = await scrape()
    seen: dict[str, float] = {}

    # A priced JSON answer: requests, duration, overhead, tokens, cost, a guardrail's hit.
    ok = await gw.post(
        "/v1/responses", json={"model": "gpt-test", "input": "4111111111111111"}, headers=A
    )
    assert ok.status == 200
    # A chained turn: served where its previous turn was (routing affinity).
    chained = await gw.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "on", "previous_response_id": (await ok.json())["id"]},
        headers=A,
    )
    assert chained.status == 200
    # A stream with gaps between its events: time to first byte, chunk intervals.
    stub.behaviour = Behaviour(between_s=0.01)
    streamed = await gw.post(
        "/v1/responses", json={"model": "gpt-test", "input": "hi", "stream": True}, headers=A
    )
    await streamed.read()
    # A stream that stalls: open while it stalls; the client then leaves.
    stub.behaviour = Behaviour(stall_after=2)
    stalled = await gw.post(
        "/v1/responses", json={"model": "gpt-test", "input": "hi", "stream": True}, headers=A
    )
    assert stalled.status == 200
    await stalled.content.readany()
    seen["gateway_open_streams"] = (await scrape())["gateway_open_streams"]
    stalled.close()
    # An upstream that fails.
    stub.behaviour = Behaviour(status=500, body=b"down")
    await gw.post("/v1/responses", json={"model": "cheap", "input": "hi"}, headers=A)
    stub.behaviour = Behaviour()
    # A WebSocket with one create, then closed: open sockets, creates per socket.
    async with gw.ws_connect("/v1/responses", headers=A) as socket:
        seen["gateway_websocket_connections"] = (await scrape())["gateway_websocket_connections"]
        await socket.send_json({"type": "response.create", "model": "gpt-test", "input": "hi"})
        while (await socket.receive_json())["type"] != "response.completed":
            pass
    # The gateway's own rate limit.
    for _ in range(2):
        await gw.post("/v1/responses", json={"model": "mock-model", "input": "x"}, headers=B)
    # A background job, to its end.
    job = await gw.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "hi", "background": True},
        headers=A,
    )
    assert job.status == 200, await job.text()
    job_id = (await job.json())["id"]

    async def finished() -> bool:
        got = await (await gw.get(f"/v1/responses/{job_id}", headers=A)).json()
        return bool(got["status"] == "completed")

    await eventually(finished, 10)
    # A store that cannot be reached (metrics are per process: both apps count in one registry).
    assert (await down.get("/v1/responses/resp_x", headers=A)).status == 503

    async def gone() -> bool:
        return (await scrape()).get("gateway_clients_gone", 0) > before.get(
            "gateway_clients_gone", 0
        )

    await eventually(gone, 5)

    async def socket_closed() -> bool:
        return (await scrape()).get("gateway_websocket_creates_per_connection", 0) > 0

    await eventually(socket_closed, 5)
    after = await scrape()
    # prometheus-client names a counter family without its `_total`.
    moved = {
        name for name in declared() if seen.get(name, after.get(name, 0)) > before.get(name, 0)
    }
    assert declared() - moved == set()

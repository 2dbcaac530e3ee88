"""Routing affinity: chains stay on the account that served them, prompts on one account's
cache, and a chain that must move leaves the old account's encrypted items behind."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.affinity import Affinity, Binding, prompt_digest, rendezvous
from gateway.app import create_app
from gateway.config import Account, ProviderSettings
from gateway.keys import DEPS
from gateway.models import Call
from gateway.pipeline.affinity import aim
from gateway.routing import Health, Target
from tests.support.affinity_upstream import (
    ACCOUNT_KEYS,
    AFFINITY_ENV,
    BoundUpstream,
    affinity_config,
    tag,
)
from tests.support.configs import KEY_A, KEY_B, UPSTREAM_KEY, settings_from
from tests.support.redis_server import RedisServer

AUTH = {"Authorization": f"Bearer {KEY_A}"}
KEY_OF = {"main": UPSTREAM_KEY, **ACCOUNT_KEYS}
Client = TestClient[Any, Any]


@pytest.fixture
async def bound(aiohttp_server: AiohttpServer) -> BoundUpstream:
    upstream = BoundUpstream()
    server = await aiohttp_server(upstream.app)
    upstream.url = str(server.make_url("")).rstrip("/")
    return upstream


@pytest.fixture(params=["memory", "redis"])
async def gateway(
    request: pytest.FixtureRequest, aiohttp_client: AiohttpClient, bound: BoundUpstream
) -> Client:
    """The gateway over three equal accounts of `up`, on each store backend."""
    config = affinity_config(bound.url)
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        config["store"] = {"url": server.url, "prefix": f"aff{id(config)}:"}
    client: Client = await aiohttp_client(create_app(settings_from(config, AFFINITY_ENV)))
    return client


async def create(gateway: Client, **body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    resp = await gateway.post("/v1/responses", json={"model": "gpt-test", **body}, headers=AUTH)
    if body.get("stream"):
        text = await resp.text()
        assert "response.completed" in text, text
        return resp.status, {}, dict(resp.headers)
    return resp.status, await resp.json(), dict(resp.headers)


async def test_a_chain_stays_on_the_account_of_its_first_turn(
    gateway: Client, bound: BoundUpstream
) -> None:
    status, first, _ = await create(gateway, input="turn 0", prompt_cache_key="k0")
    assert status == 200
    previous = first["id"]
    for n in range(1, 6):
        # Each turn names another cache key: the chain wins over the prompt's hash.
        status, answer, headers = await create(
            gateway, input=f"turn {n}", previous_response_id=previous, prompt_cache_key=f"k{n}"
        )
        assert status == 200, answer
        assert "x-gateway-affinity" not in headers
        previous = answer["id"]
    assert len(set(bound.accounts())) == 1
    # Every reasoning item made along the chain was replayed, to the account that made it.
    replayed = [i for i in bound.last.json["input"] if i.get("type") == "reasoning"]
    assert len(replayed) == 5
    assert bound.refused == 0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [500, 429])
async def test_a_chain_whose_account_cools_moves_without_its_reasoning(
    gateway: Client, bound: BoundUpstream, status: int, stream: bool
) -> None:
    code, first, _ = await create(gateway, input="turn 1")
    assert code == 200
    made_by = bound.accounts()[0]
    bound.behaviour.fail_keys = {KEY_OF[made_by]: status}
    code, second, headers = await create(
        gateway, input="turn 2", previous_response_id=first["id"], stream=stream
    )
    assert code == 200
    assert headers["x-gateway-affinity"] == "switched"
    moved_to = bound.accounts()[-1]
    assert moved_to != made_by
    sent = bound.last.json["input"]
    assert [i for i in sent if i.get("type") == "reasoning"] == []
    # The old account's items keep their content, not the ids it gave them.
    assert [i["type"] for i in sent] == ["message", "message", "message"]
    assert "id" not in sent[1]
    assert bound.refused == 0
    if stream:
        return
    # The next turn chains on the moved one: it stays there, with only that account's reasoning.
    code, third, headers = await create(gateway, input="turn 3", previous_response_id=second["id"])
    assert code == 200, third
    assert "x-gateway-affinity" not in headers
    assert bound.accounts()[-1] == moved_to
    replayed = [i for i in bound.last.json["input"] if i.get("type") == "reasoning"]
    assert [i["encrypted_content"] for i in replayed] == [tag(KEY_OF[moved_to])]


async def test_a_conversation_stays_and_moves_like_a_chain(
    gateway: Client, bound: BoundUpstream
) -> None:
    made = await gateway.post("/v1/conversations", json={}, headers=AUTH)
    conv = (await made.json())["id"]
    for n in range(4):
        code, answer, headers = await create(
            gateway, input=f"c{n}", conversation=conv, prompt_cache_key=f"k{n}"
        )
        assert code == 200, answer
        assert "x-gateway-affinity" not in headers
    (made_by,) = set(bound.accounts())
    bound.behaviour.fail_keys = {KEY_OF[made_by]: 503}
    code, answer, headers = await create(gateway, input="moved", conversation=conv)
    assert code == 200, answer
    assert headers["x-gateway-affinity"] == "switched"
    moved_to = bound.accounts()[-1]
    assert [i for i in bound.last.json["input"] if i.get("type") == "reasoning"] == []
    # Later turns stay on the new account; the old account's reasoning stays behind.
    for n in range(2):
        code, answer, headers = await create(gateway, input=f"after {n}", conversation=conv)
        assert code == 200, answer
        assert "x-gateway-affinity" not in headers
        assert bound.accounts()[-1] == moved_to
    replayed = [i for i in bound.last.json["input"] if i.get("type") == "reasoning"]
    assert {i["encrypted_content"] for i in replayed} == {tag(KEY_OF[moved_to])}
    assert len(replayed) == 2
    assert bound.refused == 0


async def test_the_same_prompt_cache_key_lands_on_one_account(
    gateway: Client, bound: BoundUpstream
) -> None:
    for n in range(20):
        code, _, _ = await create(gateway, input=f"q{n}", prompt_cache_key="shared-prefix")
        assert code == 200
    assert len(bound.tally()) == 1
    # Without a cache key, the same instructions and tools do the same.
    before = len(bound.requests)
    for n in range(20):
        code, _, _ = await create(gateway, input=f"q{n}", instructions="You are terse.")
        assert code == 200
    assert len({a for a in bound.accounts()[before:]}) == 1


async def test_the_same_cache_key_of_another_key_is_placed_on_its_own(
    gateway: Client, bound: BoundUpstream
) -> None:
    """The hash is per key: one key's cache key says nothing about another key's."""
    placed = set()
    for n in range(12):
        bound.requests.clear()
        for auth in (KEY_A, KEY_B):
            resp = await gateway.post(
                "/v1/responses",
                json={"model": "cheap", "input": "x", "prompt_cache_key": f"p{n}"},
                headers={"Authorization": f"Bearer {auth}"},
            )
            assert resp.status == 200
        placed.add(len(set(bound.accounts())))
    assert 2 in placed


def test_many_prompts_split_by_account_weight() -> None:
    """200 prompts over accounts of weight 1 and 3: the split follows the weights.

    Each share is a Binomial(200, p): the heavy one has mean 150 and sd 6.1, so 120..180
    (about five sd either side) holds for any fair hash; the digests are fixed, so the
    outcome is too."""
    provider = _provider((Account("light", weight=1), Account("heavy", weight=3)))
    targets = [Target(provider, "m")]
    for field in ("prompt_cache_key", "instructions"):
        got = Counter(
            Health()
            .pick(targets, set(), Affinity("team-a", {field: f"prompt {n}"}, None))[1]  # type: ignore[index]
            .name
            for n in range(200)
        )
        assert 120 <= got["heavy"] <= 180, (field, got)


def test_removing_an_account_moves_only_its_share() -> None:
    accounts = (Account("a", weight=1), Account("b", weight=2), Account("c", weight=1))
    full = [Target(_provider(accounts), "m")]
    less = [Target(_provider(accounts[:2]), "m")]
    moved = kept = 0
    for n in range(400):
        affinity = Affinity("team-a", {"prompt_cache_key": f"p{n}"}, None)
        before = Health().pick(full, set(), affinity)[1].name  # type: ignore[index]
        after = Health().pick(less, set(), affinity)[1].name  # type: ignore[index]
        if before == "c":
            moved += 1
        else:
            assert after == before
            kept += 1
    assert moved > 0
    assert kept > 0


def test_a_request_with_no_prompt_to_place_is_spread_by_weight() -> None:
    assert prompt_digest("team-a", {"input": "hi"}) is None
    assert prompt_digest("team-a", {"prompt_cache_key": "x"}) != prompt_digest(
        "team-b", {"prompt_cache_key": "x"}
    )


def test_placing_a_prompt_costs_microseconds() -> None:
    provider = _provider((Account("a"), Account("b"), Account("c")))
    targets = [Target(provider, "m")]
    health = Health()
    n = 2000
    bodies = [{"prompt_cache_key": f"p{i}"} for i in range(n)]
    started = time.perf_counter()
    for body in bodies:
        health.pick(targets, set(), Affinity("team-a", body, None))
    per_pick = (time.perf_counter() - started) / n
    # A generous bound for a loaded shared machine; typically about 5 us.
    assert per_pick < 200e-6, per_pick


def test_rendezvous_agrees_across_orders() -> None:
    idents = [("p", "m", "a"), ("p", "m", "b"), ("p", "m", "c")]
    for digest in range(50):
        one = rendezvous(idents, idents, [1, 1, 1], digest)
        two = rendezvous(idents[::-1], idents[::-1], [1, 1, 1], digest)
        assert one == two


def test_only_items_bound_elsewhere_are_left_out() -> None:
    here, there = ("up", "main"), ("up", "second")
    full = [
        {"type": "message", "role": "user", "content": "a"},
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "x"},
        {"type": "message", "id": "msg_1", "role": "assistant", "content": "b"},
        {"type": "compaction", "id": "cmp_1", "encrypted_content": "y"},
        {"type": "item_reference", "id": "msg_0"},
        {"type": "message", "role": "user", "content": "new"},
    ]
    binding = Binding(prefer=here, full=full)
    binding.add(5, here)
    assert binding.input_for(here) is None
    assert not binding.switched(here)
    assert binding.switched(there)
    assert binding.input_for(there) == [
        {"type": "message", "role": "user", "content": "a"},
        {"type": "message", "role": "assistant", "content": "b"},
        {"type": "item_reference", "id": "msg_0"},
        {"type": "message", "role": "user", "content": "new"},
    ]
    unknown = Binding(full=full)
    unknown.add(5, None)  # kept before affinity was recorded: sent as it is
    assert unknown.input_for(there) is None
    assert not unknown.switched(there)


def test_an_input_rewritten_after_it_was_loaded_is_the_one_filtered() -> None:
    """A stage that rewrites the input item for item (a redaction) after the context was
    loaded: each attempt sends its rewrite, minus the items bound elsewhere."""
    accounts = (Account("a"), Account("b"))
    target = Target(_provider(accounts), "m")
    full = [
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "x"},
        {"type": "message", "role": "user", "content": "secret"},
    ]
    call = Call(None, Any, "req_1")  # type: ignore[arg-type]
    call.binding = Binding(prefer=("p", "a"), full=full)
    call.binding.add(1, ("p", "a"))
    call.body = {"input": [full[0], {**full[1], "content": "[REDACTED]"}]}
    aim(call, target, accounts[1])
    assert call.body["input"] == [{"type": "message", "role": "user", "content": "[REDACTED]"}]
    aim(call, target, accounts[0])
    assert [i.get("content") for i in call.body["input"]] == [None, "[REDACTED]"]


async def test_switches_and_kept_chains_are_counted(gateway: Client, bound: BoundUpstream) -> None:
    def counts(text: str) -> dict[str, float]:
        found = {}
        for line in text.splitlines():
            if line.startswith("gateway_affinity_total{"):
                outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                found[outcome] = float(line.rsplit(" ", 1)[1])
        return found

    before = counts(await (await gateway.get("/metrics")).text())
    _, first, _ = await create(gateway, input="one")
    await create(gateway, input="two", previous_response_id=first["id"])
    bound.behaviour.fail_keys = {KEY_OF[bound.accounts()[0]]: 500}
    await create(gateway, input="three", previous_response_id=first["id"])
    after = counts(await (await gateway.get("/metrics")).text())
    assert after.get("kept", 0) - before.get("kept", 0) == 1
    assert after.get("switched", 0) - before.get("switched", 0) == 1


async def test_a_provider_the_request_excludes_is_switched_from(
    gateway: Client, bound: BoundUpstream
) -> None:
    """The previous turn's account is preferred only where this request may go: another
    provider asked for with x-provider moves it, without the old provider's reasoning."""
    _, first, _ = await create(gateway, input="one")
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "mock-model", "input": "two", "previous_response_id": first["id"]},
        headers={**AUTH, "x-provider": "mock"},
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["x-gateway-provider"] == "mock"
    assert resp.headers["x-gateway-affinity"] == "switched"


async def test_a_record_kept_without_where_it_was_served_still_chains(
    gateway: Client, bound: BoundUpstream
) -> None:
    store = gateway.app[DEPS].store
    await store.put_response(
        "resp_old",
        {
            "owner": "team-a",
            "response": {"id": "resp_old", "output": [], "status": "completed"},
            "input": [{"type": "message", "role": "user", "content": [], "id": "msg_x"}],
            "chain": [],
        },
        60,
    )
    code, answer, headers = await create(gateway, input="next", previous_response_id="resp_old")
    assert code == 200, answer
    assert "x-gateway-affinity" not in headers


async def test_a_background_turn_records_its_account(gateway: Client, bound: BoundUpstream) -> None:
    code, first, _ = await create(gateway, input="bg", background=True)
    assert code == 200
    first = await _finished(gateway, first)
    assert first["status"] == "completed"
    made_by = bound.accounts()[0]
    for n in range(4):
        code, answer, headers = await create(
            gateway, input=f"turn {n}", previous_response_id=first["id"], prompt_cache_key=f"{n}"
        )
        assert code == 200, answer
        assert "x-gateway-affinity" not in headers
    assert set(bound.accounts()) == {made_by}


async def test_a_background_turn_records_its_account_in_its_conversation(
    gateway: Client, bound: BoundUpstream
) -> None:
    made = await gateway.post("/v1/conversations", json={}, headers=AUTH)
    conv = (await made.json())["id"]
    code, job, _ = await create(gateway, input="bg", conversation=conv, background=True)
    assert code == 200
    assert (await _finished(gateway, job))["status"] == "completed"
    made_by = bound.accounts()[0]
    for n in range(4):
        code, answer, headers = await create(
            gateway, input=f"turn {n}", conversation=conv, prompt_cache_key=f"{n}"
        )
        assert code == 200, answer
        assert "x-gateway-affinity" not in headers
    assert set(bound.accounts()) == {made_by}


async def test_a_background_turn_whose_account_fails_moves_without_its_reasoning(
    gateway: Client, bound: BoundUpstream
) -> None:
    code, first, _ = await create(gateway, input="one")
    assert code == 200
    made_by = bound.accounts()[0]
    bound.behaviour.fail_keys = {KEY_OF[made_by]: 500}
    code, job, _ = await create(
        gateway, input="two", previous_response_id=first["id"], background=True
    )
    assert code == 200
    job = await _finished(gateway, job)
    assert job["status"] == "completed", job
    assert bound.accounts()[-1] != made_by
    assert [i for i in bound.last.json["input"] if i.get("type") == "reasoning"] == []
    assert bound.refused == 0


async def _finished(gateway: Client, response: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while response["status"] not in ("completed", "failed", "incomplete", "cancelled"):
        assert time.monotonic() < deadline, response
        await asyncio.sleep(0.02)
        resp = await gateway.get(f"/v1/responses/{response['id']}", headers=AUTH)
        response = await resp.json()
    return response


def _provider(accounts: tuple[Account, ...]) -> Any:
    class _Provider:
        name = "p"
        settings = ProviderSettings(name="p", api="mock", accounts=accounts)

    return _Provider()

"""Jobs across real gateway processes on one Redis: any replica serves any job, and a job
whose replica is SIGKILLed completes through the survivors."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.configs import KEY_A
from tests.support.processes import Replica
from tests.support.redis_server import RedisServer
from tests.support.stub import Behaviour, StubUpstream


@pytest.fixture
def shared(config: dict[str, Any], redis_server: RedisServer, tmp_path: Path) -> dict[str, Any]:
    config["store"] = {"url": redis_server.url, "prefix": f"{tmp_path.name}:"}
    config["jobs"] = {"workers": 8, "lease_s": 1}
    return config


@pytest.fixture
def started(shared: dict[str, Any], tmp_path: Path) -> Iterator[list[Replica]]:
    replicas: list[Replica] = []
    yield replicas
    for replica in replicas:
        replica.stop()


async def submit(client: openai.AsyncOpenAI, count: int) -> list[str]:
    return [
        (await client.responses.create(model="gpt-test", input=f"job {i}", background=True)).id
        for i in range(count)
    ]


async def statuses(client: openai.AsyncOpenAI, ids: list[str]) -> list[str]:
    return [(await client.responses.retrieve(i)).status for i in ids]


async def wait_for(
    client: openai.AsyncOpenAI,
    ids: list[str],
    done: Callable[[list[str]], bool],
    timeout_s: float,
    every_s: float = 0.05,
) -> None:
    """Poll the jobs' statuses until `done(statuses)`; TimeoutError after timeout_s."""
    async with asyncio.timeout(timeout_s):
        while not done(await statuses(client, ids)):
            await asyncio.sleep(every_s)


def sdk(replica: Replica) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{replica.url}/v1", api_key=KEY_A, max_retries=0)


async def test_create_poll_cancel_and_resume_on_different_replicas(
    shared: dict[str, Any], started: list[Replica], tmp_path: Path, stub: StubUpstream
) -> None:
    started += [Replica(shared, tmp_path, f"r{i}").start() for i in range(3)]
    one, two, three = started
    stub.behaviour = Behaviour(between_s=0.05)
    async with sdk(one) as a, sdk(two) as b, sdk(three) as c:
        slow = await a.responses.create(model="gpt-test", input="cancel me", background=True)
        await wait_for(b, [slow.id], lambda s: s == ["in_progress"], 10)
        assert (await b.responses.cancel(slow.id)).status == "cancelled"
        assert (await c.responses.retrieve(slow.id)).status == "cancelled"

        stream = await a.responses.create(
            model="gpt-test", input="resume me", background=True, stream=True
        )
        seen = []
        async for event in stream:
            seen.append(event)
            if len(seen) == 4:
                break
        await stream.close()
        rid = seen[0].response.id  # type: ignore[union-attr]
        rest = await c.responses.retrieve(rid, stream=True, starting_after=3)
        tail = [event async for event in rest]
        assert tail[0].sequence_number == 4
        assert tail[-1].type == "response.completed"
        numbers = [e.sequence_number for e in seen] + [e.sequence_number for e in tail]
        assert numbers == list(range(len(numbers)))


async def test_jobs_of_a_killed_replica_complete_on_the_survivors(
    shared: dict[str, Any], started: list[Replica], tmp_path: Path, stub: StubUpstream
) -> None:
    doomed = Replica(shared, tmp_path, "doomed").start()
    started.append(doomed)
    stub.behaviour = Behaviour(between_s=0.04)
    async with sdk(doomed) as client:
        ids = await submit(client, 20)
        await wait_for(client, ids, lambda s: s.count("in_progress") >= 8, 10)
    doomed.signal(signal.SIGKILL)
    survivors = [Replica(shared, tmp_path, f"survivor{i}").start() for i in range(2)]
    started += survivors
    async with sdk(survivors[0]) as client:
        await wait_for(client, ids, lambda s: not {"queued", "in_progress"} & set(s), 60, 0.2)
        finals = [await client.responses.retrieve(i) for i in ids]
    assert [f.status for f in finals] == ["completed"] * 20
    for i, final in enumerate(finals):
        assert f"job {i}" in final.output_text
    # The jobs the killed replica was running were started again by a survivor.
    assert len(stub.requests) > 20


async def test_sigterm_hands_jobs_back_at_once(
    shared: dict[str, Any], started: list[Replica], tmp_path: Path, stub: StubUpstream
) -> None:
    shared["jobs"] = {"workers": 8, "lease_s": 30}  # a reclaim by lease would take 30 s
    shared["server"].update(shutdown_delay_s=0.1, shutdown_grace_s=0.5)
    leaving = Replica(shared, tmp_path, "leaving").start()
    started.append(leaving)
    stub.behaviour = Behaviour(between_s=0.1)
    async with sdk(leaving) as client:
        ids = await submit(client, 4)
        await wait_for(client, ids, lambda s: set(s) == {"in_progress"}, 10)
    staying = Replica(shared, tmp_path, "staying").start()
    started.append(staying)
    leaving.signal(signal.SIGTERM)
    async with sdk(staying) as client:
        await wait_for(client, ids, lambda s: set(s) == {"completed"}, 15, 0.1)
    assert leaving.proc is not None
    assert leaving.proc.wait(timeout=10) == 0

"""Two gateway processes on one real Redis: state made through one is used through the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.configs import KEY_A
from tests.support.processes import Replica
from tests.support.redis_server import RedisServer
from tests.support.stub import StubUpstream


@pytest.fixture
def replicas(
    config: dict[str, Any], redis_server: RedisServer, tmp_path: Path
) -> Iterator[list[Replica]]:
    config["store"] = {"url": redis_server.url, "prefix": f"{tmp_path.name}:"}
    started = [Replica(config, tmp_path, f"r{i}").start() for i in range(2)]
    yield started
    for replica in started:
        replica.stop()


def client(replica: Replica) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{replica.url}/v1", api_key=KEY_A, max_retries=0)


async def test_state_crosses_replicas(replicas: list[Replica], stub: StubUpstream) -> None:
    one, two = replicas
    async with client(one) as a, client(two) as b:
        first = await a.responses.create(model="gpt-test", input="first turn")
        assert (await b.responses.retrieve(first.id)).output_text == first.output_text
        second = await b.responses.create(
            model="gpt-test", input="second turn", previous_response_id=first.id
        )
        sent = stub.last.json["input"]
        assert [i["content"][0]["text"] for i in sent] == [
            "first turn",
            first.output_text,
            "second turn",
        ]
        conv = await a.conversations.create(items=[{"role": "user", "content": "c1"}])
        await b.responses.create(model="gpt-test", input="c2", conversation=conv.id)
        assert [i["content"][0]["text"] for i in stub.last.json["input"]] == ["c1", "c2"]
        items = [i async for i in a.conversations.items.list(conv.id, order="asc")]
        assert len(items) == 3
        await a.responses.delete(second.id)
        with pytest.raises(openai.NotFoundError):
            await b.responses.retrieve(second.id)

"""A stateless client (Codex CLI with `store: false`) replays its earlier turns as input with
the items' ids left out, since they name items the API never kept: the gateway takes them as
the API does and sends them on unchanged."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.support.configs import KEY_A
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}

REPLAYED: list[dict[str, Any]] = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ls"}]},
    {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-sealed"},
    {"type": "function_call", "name": "shell", "arguments": '{"cmd":["ls"]}', "call_id": "c1"},
    {"type": "function_call_output", "call_id": "c1", "output": "README.md"},
    {
        "type": "local_shell_call",
        "call_id": "c2",
        "status": "completed",
        "action": {"type": "exec", "command": ["pwd"], "env": {}},
    },
    {"type": "function_call_output", "call_id": "c2", "output": "/work"},
    {
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "gateway"},
    },
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
]


@pytest.mark.parametrize("index", range(len(REPLAYED)))
async def test_each_replayed_item_without_its_id_passes(
    gateway: Client, stub: StubUpstream, index: int
) -> None:
    body = {
        "model": "gpt-test",
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "input": [REPLAYED[index], {"role": "user", "content": "go on"}],
    }
    raw = orjson.dumps(body)
    resp = await gateway.post("/v1/responses", data=raw, headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert stub.last.body == raw


async def test_a_whole_replayed_turn_passes_unchanged(gateway: Client, stub: StubUpstream) -> None:
    raw = orjson.dumps({"model": "gpt-test", "store": False, "stream": True, "input": REPLAYED})
    resp = await gateway.post("/v1/responses", data=raw, headers=AUTH)
    assert resp.status == 200, await resp.text()
    await resp.read()
    assert stub.last.body == raw

"""Random and mutated bodies through HTTP: never a 5xx, always the envelope, never a hang."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.app import create_app
from tests.support.configs import KEY_A, base_config, settings_from
from tests.support.finished_apps import forget_finished_apps

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "metadata",
        "include",
        "stream",
        "store",
        "background",
        "messages",
        "previous_response_id",
        "conversation",
        "max_output_tokens",
        "temperature",
        "truncation",
        "prompt",
        "stream_options",
    ]
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]), "content": JSON}
)
BODY = st.fixed_dictionaries(
    {"model": st.sampled_from(["mock-model", "mock/x", "nope", ""])},
    optional={"input": st.text(max_size=30) | st.lists(MESSAGE | JSON, max_size=3)},
).flatmap(
    lambda base: st.dictionaries(FIELDS, JSON, max_size=3).map(lambda extra: {**base, **extra})
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODY)
def test_random_bodies_never_get_a_5xx(body: dict[str, Any]) -> None:
    async def run() -> None:
        app = create_app(settings_from(base_config("http://127.0.0.1:9")))
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            resp = await asyncio.wait_for(
                client.post(
                    "/v1/responses",
                    data=orjson.dumps(body),
                    headers={"Authorization": f"Bearer {KEY_A}"},
                ),
                timeout=10,
            )
            raw = await resp.read()
            assert resp.status < 500, (resp.status, raw[:300], body)
            if resp.status >= 400:
                error = orjson.loads(raw)["error"]
                assert set(error) == {"message", "type", "param", "code"}
        finally:
            await client.close()
            forget_finished_apps()  # 150 gateways in one test

    asyncio.run(run())

"""A guardrail's hits are named where a request is accounted for: the usage record, the access
line, the metric, and never with the text they matched."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gateway.keys import DEPS
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.stub import StubUpstream

EMAIL = "jane.doe@example.com"
A = {"Authorization": f"Bearer {KEY_A}"}


def hits(text: str, rule: str, action: str) -> float:
    for line in text.splitlines():
        if line.startswith("gateway_guardrail_hits_total{") and (
            f'rule="{rule}"' in line and f'action="{action}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_hits_are_counted_recorded_and_logged_by_rule_name(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    stub: StubUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config["guardrails"] = [
        {"name": "pii", "detect": ["email"], "keys": ["team-a"]},
        {"name": "watch", "patterns": ["quarterly"], "action": "flag"},
    ]
    gw = await make_gateway(config)
    before = await (await gw.get("/metrics")).text()
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        answer = await gw.post(
            "/v1/responses",
            json={"model": "gpt-test", "input": f"quarterly report for {EMAIL}"},
            headers=A,
        )
        assert answer.status == 200
        assert answer.headers["x-gateway-guardrails"] == "pii,watch"
        plain = await gw.post(
            "/v1/responses", json={"model": "gpt-test", "input": "hello"}, headers=A
        )
        assert "x-gateway-guardrails" not in plain.headers
    after = await (await gw.get("/metrics")).text()
    # The input's address and the flagged word, then both again in the echoed answer.
    assert hits(after, "pii", "redact") - hits(before, "pii", "redact") == 1
    assert hits(after, "watch", "flag") - hits(before, "watch", "flag") == 2
    deps = gw.app[DEPS]
    await deps.settler.flush()
    records = list(deps.governor.memory.stream)
    assert [r.get("guardrails") for r in records[-2:]] == ["pii,watch", None]
    lines = [r for r in caplog.records if r.name == "gateway.access"]
    assert [getattr(r, "guardrails", None) for r in lines[-2:]] == ["pii,watch", None]
    assert EMAIL not in caplog.text
    assert all(EMAIL not in str(vars(r)) for r in lines)

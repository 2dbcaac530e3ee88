"""Upstream answers that reuse one response id, as a buggy or hostile upstream might."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.mockgen import build_response
from tests.support.stub import Behaviour, StubUpstream


def answer_with_id(stub: StubUpstream, response_id: str, text: str, *, stream: bool) -> Any:
    """Make the stub's next answers carry `response_id`; answers the Response they hold."""
    run = build_response({"input": text}, model="gpt-test", response_id=response_id)
    if stream:
        stub.behaviour = Behaviour(events=run.events())
    else:
        stub.behaviour = Behaviour(body=orjson.dumps(run.response))
    return run.response

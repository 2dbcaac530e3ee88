"""An account-bound upstream that compacts: its compaction items, like its reasoning, can be
read back only by the account that made them."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.mockcompact import build_compaction
from tests.support.affinity_upstream import BoundUpstream, tag
from tests.support.stub import Recorded


class BoundCompactor(BoundUpstream):
    """BoundUpstream whose /responses/compact refuses another account's items and seals its
    compaction item for the answering account."""

    async def compact(self, request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if key in self.behaviour.fail_keys:
            return await super().compact(request)
        raw = await request.read()
        body = orjson.loads(raw)
        refused = self.refusal(key, body)
        if refused is not None:
            return refused
        self.requests.append(Recorded(request.path, dict(request.headers), raw))
        answer = build_compaction(body, body.get("model", "stub"))
        answer["output"][-1]["encrypted_content"] = tag(key)
        return web.json_response(answer)

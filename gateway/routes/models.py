"""GET /models and /models/{id}: only what the caller's key may use."""

from __future__ import annotations

from aiohttp import web

from gateway.codec import json_response
from gateway.config import ModelSettings
from gateway.errors import PermissionDeniedError
from gateway.keys import DEPS
from gateway.routing import model_not_found


def _model_object(model_id: str, owner: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def _owner(model: ModelSettings) -> str:
    return model.targets[0].provider


async def list_models(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    key = await deps.keys.authenticate(request.headers.get("Authorization"))
    data = [_model_object(m.name, _owner(m)) for m in deps.router.visible(key)]
    return json_response({"object": "list", "data": data})


async def retrieve_model(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    key = await deps.keys.authenticate(request.headers.get("Authorization"))
    requested = request.match_info["model"]
    try:
        model, targets = deps.router.resolve(requested, key)
    except PermissionDeniedError:
        # A model this key may not use looks missing here, as OpenAI's do.
        raise model_not_found(requested) from None
    owner = _owner(model) if model else targets[0].provider.name
    return json_response(_model_object(model.name if model else requested, owner))

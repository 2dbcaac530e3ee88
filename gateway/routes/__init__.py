"""setup_routes(app): the route table, repeated under every mount prefix."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Settings
from gateway.console.routes import add_console_routes
from gateway.routes import conversations as conv, responses as resp, websocket as ws
from gateway.routes.admin import add_admin_routes
from gateway.routes.compact import add_compact_route
from gateway.routes.health import healthz, readyz, serve_metrics
from gateway.routes.models import list_models, retrieve_model
from gateway.routes.stats import admin_stats
from gateway.routes.usage import usage_report


def setup_routes(app: web.Application, settings: Settings) -> None:
    router = app.router
    router.add_get("/healthz", healthz, allow_head=False)
    router.add_get("/readyz", readyz, allow_head=False)
    router.add_get("/metrics", serve_metrics, allow_head=False)
    add_admin_routes(router)
    router.add_get("/admin/usage", usage_report, allow_head=False)
    router.add_get("/admin/stats", admin_stats, allow_head=False)
    add_console_routes(router, settings)
    for p in settings.server.mounts:
        router.add_post(f"{p}/responses", resp.create_response)
        router.add_get(f"{p}/responses", ws.responses_socket, allow_head=False)
        router.add_post(f"{p}/responses/input_tokens", resp.count_input_tokens)
        add_compact_route(router, p)
        router.add_get(p + "/responses/{response_id}", resp.retrieve_response, allow_head=False)
        router.add_delete(p + "/responses/{response_id}", resp.delete_response)
        router.add_post(p + "/responses/{response_id}/cancel", resp.cancel_response)
        router.add_get(
            p + "/responses/{response_id}/input_items", resp.list_input_items, allow_head=False
        )
        router.add_post(f"{p}/conversations", conv.create_conversation)
        c = p + "/conversations/{conversation_id}"
        router.add_get(c, conv.retrieve_conversation, allow_head=False)
        router.add_post(c, conv.update_conversation)
        router.add_delete(c, conv.delete_conversation)
        router.add_post(c + "/items", conv.create_items)
        router.add_get(c + "/items", conv.list_items, allow_head=False)
        router.add_get(c + "/items/{item_id}", conv.retrieve_item, allow_head=False)
        router.add_delete(c + "/items/{item_id}", conv.delete_item)
        router.add_get(f"{p}/models", list_models, allow_head=False)
        router.add_get(p + "/models/{model:.+}", retrieve_model, allow_head=False)

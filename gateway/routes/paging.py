"""Query parameters of the list endpoints: limit (1-100, default 20), order, after."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import InvalidRequestError
from gateway.store import Json, Page


def page_params(request: web.Request) -> tuple[str | None, int, bool]:
    query = request.query
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise InvalidRequestError(
            f"Invalid 'limit': expected an integer, got {raw_limit!r}.",
            param="limit",
            code="invalid_type",
        ) from None
    if not 1 <= limit <= 100:
        raise InvalidRequestError(
            f"Invalid 'limit': expected 1 to 100, got {limit}.", param="limit", code="invalid_value"
        )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError(
            f"Invalid 'order': expected 'asc' or 'desc', got {order!r}.",
            param="order",
            code="invalid_value",
        )
    return query.get("after"), limit, order == "desc"


def list_object(page: Page) -> Json:
    data = page.items
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }

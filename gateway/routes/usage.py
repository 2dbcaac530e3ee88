"""GET /admin/usage: usage and cost totals over UTC days, grouped by project, key, model or day."""

from __future__ import annotations

from datetime import UTC, date, datetime

from aiohttp import web

from gateway.codec import json_response
from gateway.errors import InvalidRequestError
from gateway.keys import DEPS
from gateway.routes.admin import require_admin

GROUPS = ("project", "key", "model", "day")
MAX_DAYS = 366


def _day(request: web.Request, name: str, default: date) -> date:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequestError(
            f"Invalid '{name}': expected a date as YYYY-MM-DD, got {raw!r}.",
            param=name,
            code="invalid_value",
        ) from None


async def usage_report(request: web.Request) -> web.Response:
    require_admin(request)
    today = datetime.now(UTC).date()
    day_from, day_to = _day(request, "from", today), _day(request, "to", today)
    if day_to < day_from:
        raise InvalidRequestError("'to' is before 'from'.", param="to", code="invalid_value")
    if (day_to - day_from).days >= MAX_DAYS:
        raise InvalidRequestError(
            f"A report covers at most {MAX_DAYS} days.", param="from", code="invalid_value"
        )
    group_by = request.query.get("group_by", "project")
    if group_by not in GROUPS:
        raise InvalidRequestError(
            f"Invalid 'group_by': expected one of {', '.join(GROUPS)}, got {group_by!r}.",
            param="group_by",
            code="invalid_value",
        )
    data = await request.app[DEPS].governor.usage_report(
        request.query.get("project"), day_from, day_to, group_by
    )
    return json_response({"object": "list", "data": data})

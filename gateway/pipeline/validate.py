"""validate: the body against the CreateResponse schema and the rules a schema cannot say."""

from __future__ import annotations

from gateway.errors import InvalidRequestError
from gateway.models import Call
from gateway.pipeline.rules import check_create_rules


async def validate_create(call: Call) -> None:
    body = call.body
    call.deps.validators.create_response(body)
    check_create_rules(body, async_job=False)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    call.model = model
    call.stream = body.get("stream") is True

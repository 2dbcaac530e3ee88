"""validate: the body against the CreateResponse schema and the rules a schema cannot say,
then normalize what other gateways' clients send (`messages`, preview tools, chat-isms)."""

from __future__ import annotations

from gateway.errors import InvalidRequestError
from gateway.models import Call
from gateway.pipeline.normalize import normalize_request
from gateway.pipeline.rules import check_create_rules


async def validate_create(call: Call) -> None:
    body = call.body
    # Chat-style input is turned into Responses items first, so the schema checks what is sent.
    if normalize_request(body):
        call.changed = True
    call.deps.validators.create_response(body)
    check_create_rules(body, async_job=call.async_job)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    call.model = model
    call.stream = body.get("stream") is True

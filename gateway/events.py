"""The Responses API's stream event names the gateway acts on, in one place."""

from __future__ import annotations

from typing import Final

CREATED: Final = "response.created"
QUEUED: Final = "response.queued"
IN_PROGRESS: Final = "response.in_progress"
COMPLETED: Final = "response.completed"
INCOMPLETE: Final = "response.incomplete"
FAILED: Final = "response.failed"
ERROR: Final = "error"  # a stream's failure before it had a Response

# The events that end a response's stream.
TERMINAL: Final = frozenset({COMPLETED, INCOMPLETE, FAILED})
# The events that carry the whole Response; the gateway restates its own fields in them.
LIFECYCLE: Final = frozenset({CREATED, IN_PROGRESS, *TERMINAL})
# What a background job restates its own fields in: an upstream may send `response.queued` too.
JOB_LIFECYCLE: Final = frozenset({QUEUED, *LIFECYCLE})

"""The tap's scan for lifecycle and error frames names exactly those events."""

from __future__ import annotations

import pytest

from gateway.events import ERROR, JOB_LIFECYCLE, LIFECYCLE
from gateway.streaming.relay import _NAMES_RE


@pytest.mark.parametrize("name", sorted({*LIFECYCLE, ERROR}))
def test_every_kept_event_name_is_found(name: str) -> None:
    line = b"event: " + name.encode()
    assert _NAMES_RE.fullmatch(line) is not None


@pytest.mark.parametrize(
    "name",
    sorted(
        {
            *(JOB_LIFECYCLE - LIFECYCLE),
            "response.output_text.delta",
            "response.content_part.added",
            "response.function_call_arguments.delta",
            "response.image_generation_call.in_progress",
            "errors",
            "response.complete",
        }
    ),
)
def test_no_other_event_name_is_found(name: str) -> None:
    line = b"event: " + name.encode() + b"\n"
    assert not any(m.end() == len(line) - 1 for m in _NAMES_RE.finditer(line))

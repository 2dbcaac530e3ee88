"""The package's shape: error envelopes and stream event names each made in one module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"
EVENT_NAMES = frozenset(
    {"response.created", "response.in_progress", "response.completed", "response.failed"}
)
# Outside the gateway's own code paths: the fake model and the Chat Completions translation
# write whole streams of events, which is what they are for.
EVENT_WRITERS = frozenset({"events.py", "mockgen.py", "translate/chat.py"})


def modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(PACKAGE)), ast.parse(path.read_text(), str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def error_envelopes(tree: ast.Module) -> list[int]:
    """Lines of dict literals shaped like an error: {"error": {...}} with a message in it."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value == "error"
                and isinstance(value, ast.Dict)
                and any(isinstance(k, ast.Constant) and k.value == "message" for k in value.keys)
            ):
                found.append(node.lineno)
    return found


def test_error_envelopes_are_built_only_in_errors() -> None:
    built = {
        name: lines
        for name, tree in modules()
        if name not in ("errors.py", "errors_upstream.py") and (lines := error_envelopes(tree))
    }
    assert built == {}


def test_stream_event_names_are_named_only_in_events() -> None:
    named = {
        name: sorted(
            {str(node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant)}
            & EVENT_NAMES
        )
        for name, tree in modules()
        if name not in EVENT_WRITERS
    }
    assert {name: found for name, found in named.items() if found} == {}

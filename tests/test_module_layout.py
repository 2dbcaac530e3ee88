"""The package's shape: error envelopes and stream event names each made in one module, and
no circle of imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
    """Lines of dict literals shaped like an error envelope: {"error": ...} alone, or an
    "error" that is a dict literal with a message in it."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if not (isinstance(key, ast.Constant) and key.value == "error"):
                continue
            if len(node.keys) == 1 or (
                isinstance(value, ast.Dict)
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


def imports(name: str, tree: ast.Module) -> set[str]:
    """The gateway modules a module imports, TYPE_CHECKING blocks and function bodies too."""
    package = name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gateway"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gateway"))
    found.discard("gateway." + package)
    return found


def import_graph() -> dict[str, set[str]]:
    trees = dict(modules())
    names = {
        "gateway." + n.removesuffix(".py").removesuffix("/__init__").replace("/", "."): n
        for n in trees
    }
    graph: dict[str, set[str]] = {}
    for module, file in names.items():
        graph[module] = {m for m in imports(file, trees[file]) if m in names and m != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize(
    "module", ["gateway.models", "gateway.pipeline.forward", "gateway.jobs.worker"]
)
def test_no_module_is_in_a_circle_of_imports(module: str) -> None:
    inside = [group for group in circles(import_graph()) if module in group]
    assert inside == []

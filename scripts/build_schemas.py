"""Derive the request JSON Schemas (gateway/schema_files/) from the OpenAI OpenAPI file.

Run by hand; the files are committed and shipped in the package as package data.

Usage: python scripts/build_schemas.py [OPENAPI_YAML] [--out DIR]

Each request body is closed over its `$ref`s into one self-contained Draft 2020-12
file with `$defs`. `oneOf` becomes `anyOf` (the spec's branches overlap, so a plain
`{"type": "message", "role": "user", ...}` would match two of them and fail), and
OpenAPI-only keywords and annotations are dropped. The top level of a body is never
closed: SDKs send fields the file lacks (`background_options`, `image`, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO.parent / "shared" / "spec" / "openai-responses.openapi.yaml"
DEFAULT_OUT = REPO / "gateway" / "schema_files"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
COMPONENT = "#/components/schemas/"
SMALL = 600

BODIES: dict[str, tuple[str, str]] = {
    "create_response": ("/responses", "CreateResponse"),
    "input_tokens": ("/responses/input_tokens", "TokenCountsBody"),
    "conversation_create": ("/conversations", "CreateConversationBody"),
    "conversation_update": ("/conversations/{conversation_id}", "UpdateConversationBody"),
    "conversation_items": ("/conversations/{conversation_id}/items", "CreateConversationItemsBody"),
}

SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
SCHEMA_VALUES = frozenset(
    {"items", "contains", "unevaluatedItems"}
    | {"additionalProperties", "propertyNames", "unevaluatedProperties"}
    | {"not", "if", "then", "else"}
)
SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
ANNOTATIONS = frozenset(
    {"title", "description", "$comment", "default", "example", "examples", "deprecated"}
    | {"readOnly", "writeOnly", "format", "$recursiveAnchor"}
    | {"discriminator", "externalDocs", "xml"}  # OpenAPI's own
)

# Fields the spec marks required that the live API and the SDKs' own *Param
# variants treat as optional; requests without them are common and must pass.
RELAXED_REQUIRED: dict[str, list[str]] = {
    # FunctionToolParam (namespace tools) already has strict/parameters optional.
    "FunctionTool": ["type", "name"],
    # detail defaults to "auto" (InputImageContentParamAutoParam says so).
    "InputImageContent": ["type"],
    # Replayed assistant turns often lack the output's id/status/type.
    "OutputMessage": ["role", "content"],
    "OutputTextContent": ["type", "text"],
    # Stateless clients (Codex CLI with store: false) replay these without their ids, which
    # name items the API never kept; the API takes them so.
    "ReasoningItem": ["summary", "type"],
    "LocalShellToolCall": ["type", "call_id", "action", "status"],
    "WebSearchToolCall": ["type", "status", "action"],
}

# Enum values the SDK (openai-python 3.57) sends that the OpenAPI file lacks, by
# component and path inside it. tool_choice {"type": "web_search"} is also what
# the gateway's normalisation of web_search_preview produces.
EXTRA_ENUM: dict[tuple[str, str], list[str]] = {
    ("ToolChoiceTypes", "properties/type"): ["web_search", "web_search_2025_08_26"],
    ("PromptCacheTTLEnum", ""): ["12h"],
    ("ImageGenTool", "properties/output_format"): ["gif", "svg"],
    ("ImageGenTool", "properties/quality"): ["xhigh", "max"],
}

# Input items the SDK sends that the OpenAPI file lacks (added as InputItem branches).
EXTRA_ITEMS: dict[str, dict[str, Any]] = {
    "ConfigurationUpdateItemParam": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["configuration_update"]},
            "id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "reasoning": {"type": "object"},
            "text": {"type": "object"},
        },
        "required": ["type"],
    },
}


def _ref_name(ref: str) -> str:
    if not ref.startswith(COMPONENT):
        raise ValueError(f"unsupported $ref {ref!r}")
    return ref[len(COMPONENT) :]


def _patch_components(components: dict[str, Any]) -> None:
    for name, required in RELAXED_REQUIRED.items():
        schema = components[name]
        missing = set(required) - set(schema.get("required", []))
        if missing:
            raise ValueError(f"{name}: relaxed list names fields not required: {missing}")
        schema["required"] = required
    for (name, pointer), extra in EXTRA_ENUM.items():
        node = components[name]
        for step in filter(None, pointer.split("/")):
            node = node[step]
        node["enum"].extend(v for v in extra if v not in node["enum"])
    for name, schema in EXTRA_ITEMS.items():
        components[name] = schema
        components["InputItem"]["oneOf"].append({"$ref": COMPONENT + name})


def convert(node: Any, owner: str) -> Any:
    """Rewrite one OpenAPI schema node as Draft 2020-12; `owner` names its component."""
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        raise ValueError(f"{owner}: schema expected, got {node!r}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ANNOTATIONS or key.startswith("x-"):
            continue
        if key == "$ref":
            out["$ref"] = "#/$defs/" + _ref_name(value)
        elif key == "$recursiveRef":
            # Only CompoundFilter uses it, pointing at itself (2019-09 recursion).
            out["$ref"] = "#/$defs/" + owner
        elif key == "nullable":
            continue
        elif key in SCHEMA_MAPS:
            out[key] = {name: convert(sub, owner) for name, sub in value.items()}
        elif key in SCHEMA_VALUES:
            out[key] = convert(value, owner)
        elif key in SCHEMA_LISTS:
            out["anyOf" if key == "oneOf" else key] = [convert(sub, owner) for sub in value]
        else:
            out[key] = value
    if "anyOf" in node and "oneOf" in node:
        raise ValueError(f"{owner}: both anyOf and oneOf")
    if out.get("required") == []:
        del out["required"]
    if node.get("nullable") is True:
        out = {"anyOf": [out, {"type": "null"}]}
    return simplify(out)


def simplify(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop string-enum branches made redundant by a free `{"type": "string"}` branch."""
    branches = schema.get("anyOf")
    if not branches or {"type": "string"} not in branches:
        return schema
    kept = [
        b
        for b in branches
        if not (
            b.get("type") == "string" and set(b) <= {"type", "enum"} and b != {"type": "string"}
        )
    ]
    unique: list[Any] = []
    for b in kept:
        if b not in unique:
            unique.append(b)
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(unique) == 1 and not rest.keys() & unique[0].keys():
        return {**rest, **unique[0]}
    return {**rest, "anyOf": unique}


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _inline_root(root: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Flatten the body's own `$ref` / `allOf` of plain objects into one object schema."""
    while set(root) == {"$ref"}:
        root = defs[root["$ref"].removeprefix("#/$defs/")]
    if "allOf" not in root:
        return dict(root)
    merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for part in root["allOf"]:
        part = _inline_root(part, defs)
        extra = set(part) - {"type", "properties", "required"}
        if extra or part.get("type", "object") != "object":
            raise ValueError(f"cannot flatten allOf part with {sorted(extra)}")
        for name, sub in part.get("properties", {}).items():
            old = merged["properties"].get(name)
            merged["properties"][name] = sub if old is None else _merge(old, sub)
        merged["required"] += [r for r in part.get("required", []) if r not in merged["required"]]
    return merged


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One property declared twice in an allOf: keep the nullable twin, else require both."""
    if old == new or old == {"anyOf": [new, {"type": "null"}]}:
        return old
    if new == {"anyOf": [old, {"type": "null"}]}:
        return new
    return {"allOf": [old, new]}


def _body_schema(spec: dict[str, Any], path: str) -> dict[str, Any]:
    body = spec["paths"][path]["post"]["requestBody"]
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def inline_small(schema: Any, defs: dict[str, Any]) -> Any:
    """Replace `$ref`s to small reference-free definitions (enums, id strings) by copies."""
    if not isinstance(schema, dict):
        return schema
    if set(schema) == {"$ref"}:
        target = defs[schema["$ref"].removeprefix("#/$defs/")]
        if (
            isinstance(target, dict)
            and not any(True for _ in _refs(target))
            and len(json.dumps(target)) <= SMALL
        ):
            return dict(target)
        return schema
    out = dict(schema)
    for key in SCHEMA_MAPS & out.keys():
        out[key] = {name: inline_small(sub, defs) for name, sub in out[key].items()}
    for key in SCHEMA_VALUES & out.keys():
        out[key] = inline_small(out[key], defs)
    for key in SCHEMA_LISTS & out.keys():
        out[key] = [inline_small(sub, defs) for sub in out[key]]
    return simplify(out)


def build_all(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every request-body schema, by file stem. `spec` is patched in place."""
    components: dict[str, Any] = spec["components"]["schemas"]
    _patch_components(components)
    defs = {name: convert(schema, name) for name, schema in components.items()}
    for _ in range(3):  # small definitions may reference smaller ones
        defs = {name: inline_small(schema, defs) for name, schema in defs.items()}
    return {stem: _build(spec, path, title, defs) for stem, (path, title) in BODIES.items()}


def _build(spec: dict[str, Any], path: str, title: str, defs: dict[str, Any]) -> dict[str, Any]:
    root = _inline_root(inline_small(convert(_body_schema(spec, path), title), defs), defs)
    root.setdefault("type", "object")
    if root.get("additionalProperties") is False:
        raise ValueError(f"{title}: a body must stay open at the top level")
    if not root.get("required"):
        root.pop("required", None)
    used: dict[str, Any] = {}
    todo = [r.removeprefix("#/$defs/") for r in _refs(root)]
    while todo:
        name = todo.pop()
        if name not in used:
            used[name] = defs[name]
            todo += [r.removeprefix("#/$defs/") for r in _refs(used[name])]
    out: dict[str, Any] = {"$schema": DRAFT, "$id": f"urn:gateway:schemas:{title}", "title": title}
    out.update(root)
    if used:
        out["$defs"] = dict(sorted(used.items()))
    return out


def load_spec(path: Path) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    return spec


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for stem, schema in build_all(load_spec(args.spec)).items():
        target = args.out / f"{stem}.schema.json"
        target.write_text(dump(schema), encoding="utf-8")
        print(f"{target}: {len(schema.get('$defs', {}))} defs, {target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

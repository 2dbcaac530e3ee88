"""`config.schema.json` (package data): the shapes a config file may have, read once."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema_rs
import orjson

from gateway.schemas import default_schema_dir

SECRET_FIELDS = ("key", "key_env", "key_sha256")


@cache
def config_schema() -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads(
        (default_schema_dir() / "config.schema.json").read_bytes()
    )
    return schema


@cache
def config_validator() -> Any:
    return jsonschema_rs.validator_for(config_schema())


def key_fields_schema(exclude: tuple[str, ...] = SECRET_FIELDS) -> dict[str, Any]:
    """`$defs/key` of the config schema with no field required and `exclude` left out."""
    schema = config_schema()
    key = dict(schema["$defs"]["key"])
    key.pop("required", None)
    key["properties"] = {k: v for k, v in key["properties"].items() if k not in exclude}
    return {"$schema": schema["$schema"], "$defs": schema["$defs"], **key}


def problem_path(parts: Any) -> str:
    """Where a problem is, as `path.in[0].file`; `<file>` for the top level."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<file>"

"""Request JSON Schemas: compiled once at start-up; a failure becomes an OpenAI-style 400."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

import jsonschema_rs
from jsonschema_rs import ValidationError, ValidationErrorKind as Kind

from gateway.errors import InvalidRequestError

Path_ = tuple[str | int, ...]

SCHEMA_NAMES: Final = (
    "create_response",
    "input_tokens",
    "conversation_create",
    "conversation_update",
    "conversation_items",
)

# Explaining a failure walks a shrunken copy of the body: jsonschema_rs copies the
# instance into every error, so iter_errors on a big invalid body is quadratic
# (seconds for a few hundred bad items). These bound the work an attacker can cause.
_MAX_CHECKS: Final = 256
_MAX_DEPTH: Final = 48
_MAX_EXPLAINED_DEPTH: Final = 64
_LONG_STRING: Final = 1024
_SHOWN: Final = 120

_TYPE_NAMES: Final = {
    "string": "a string",
    "integer": "an integer",
    "number": "a decimal",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def default_schema_dir() -> Traversable:
    """The JSON Schema files shipped inside the package (package data, so a wheel has them)."""
    return resources.files("gateway") / "schema_files"


class SchemaCheck:
    """One compiled body schema; calling it raises InvalidRequestError for a bad body."""

    __slots__ = ("_is_valid", "_schema", "_split_top", "_validator")

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = schema
        self._validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=False)
        self._is_valid = self._validator.is_valid
        self._split_top = not schema.get("required")

    def __call__(self, body: Any) -> None:
        try:
            if self._is_valid(body):
                return
            error = self.explain(body)
        except (ValueError, RecursionError) as exc:
            # jsonschema_rs refuses values nested deeper than its recursion limit.
            key = self._first_bad_key(body)
            error = InvalidRequestError(f"Invalid {_quoted(key)}: {exc}.", param=key)
        raise error

    def _first_bad_key(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return None
        for key, value in body.items():
            try:
                if not self._is_valid({key: value}):
                    return str(key)
            except (ValueError, RecursionError):
                return str(key)
        return None

    def explain(self, body: Any) -> InvalidRequestError:
        shrunk = _Shrinker(self._is_valid)
        small = shrunk.run(body, split_top=self._split_top)
        if _deeper_than(small, _MAX_EXPLAINED_DEPTH):
            # iter_errors is quadratic in nesting depth (seconds at a few hundred levels).
            key = self._first_bad_key(small)
            return InvalidRequestError(
                f"Invalid {_quoted(key)}: a value nested more than {_MAX_EXPLAINED_DEPTH} "
                "levels deep does not match the schema.",
                param=key,
            )
        first = next(iter(self._validator.iter_errors(small)), None)
        if first is None:
            return InvalidRequestError("Invalid request body.")
        leaves = _leaves([first], self._schema) or [first]
        best = max(leaves, key=_rank)
        return _to_error(best, leaves, self._schema, shrunk)


class Validators:
    """The request-body checks, built once at start-up by `load_validators`."""

    __slots__ = (
        "_conversation_create",
        "_conversation_items",
        "_conversation_update",
        "_create_response",
        "_input_tokens",
    )

    def __init__(self, schemas: dict[str, dict[str, Any]]) -> None:
        self._create_response = SchemaCheck(schemas["create_response"])
        self._input_tokens = SchemaCheck(schemas["input_tokens"])
        self._conversation_create = SchemaCheck(schemas["conversation_create"])
        self._conversation_update = SchemaCheck(schemas["conversation_update"])
        self._conversation_items = SchemaCheck(schemas["conversation_items"])

    def create_response(self, body: dict[str, Any]) -> None:
        self._create_response(body)

    def input_tokens(self, body: dict[str, Any]) -> None:
        self._input_tokens(body)

    def conversation_create(self, body: dict[str, Any]) -> None:
        self._conversation_create(body)

    def conversation_update(self, body: dict[str, Any]) -> None:
        self._conversation_update(body)

    def conversation_items(self, body: dict[str, Any]) -> None:
        self._conversation_items(body)


def load_schemas(schema_dir: Traversable | None = None) -> dict[str, dict[str, Any]]:
    folder = schema_dir or default_schema_dir()
    schemas: dict[str, dict[str, Any]] = {}
    for name in SCHEMA_NAMES:
        path = folder / f"{name}.schema.json"
        schemas[name] = json.loads(path.read_text(encoding="utf-8"))
    return schemas


def load_validators(schema_dir: Traversable | None = None) -> Validators:
    return Validators(load_schemas(schema_dir))


@dataclass(slots=True)
class _Shrinker:
    """Shrinks an invalid body (one failing field, one item per list, short strings) so it
    stays invalid, remembering list positions and string lengths to report the original."""

    is_valid: Callable[[Any], bool]
    checks: int = _MAX_CHECKS
    index: dict[Path_, int] = field(default_factory=dict)
    length: dict[Path_, int] = field(default_factory=dict)
    holder: list[Any] = field(default_factory=list)

    def run(self, body: Any, *, split_top: bool) -> Any:
        if split_top and isinstance(body, dict):
            for key, value in body.items():
                if not self.is_valid({key: value}):
                    body = {key: value}
                    break
        self.holder = [body]
        self._visit(self.holder, 0, ())
        return self.holder[0]

    def _still_invalid(self) -> bool:
        self.checks -= 1
        return not self.is_valid(self.holder[0])

    def _first_failing(self, parent: Any, key: Any, items: list[Any]) -> int:
        """Binary search for the shortest prefix that keeps the body invalid."""
        low, high = 1, len(items)
        while low < high and self.checks > 0:
            middle = (low + high) // 2
            parent[key] = items[:middle]
            if self._still_invalid():
                high = middle
            else:
                low = middle + 1
        return high - 1

    def _visit(self, parent: Any, key: Any, path: Path_) -> None:
        if len(path) > _MAX_DEPTH or self.checks <= 0:
            return
        node = parent[key]
        if isinstance(node, str):
            if len(node) > _LONG_STRING:
                parent[key] = node[:_LONG_STRING]
                if self._still_invalid():
                    self.length[path] = len(node)
                else:
                    parent[key] = node
        elif isinstance(node, list):
            items = list(node)
            parent[key] = items
            if len(items) > 1:
                first = self._first_failing(parent, key, items)
                parent[key] = [items[first]]
                if not self._still_invalid():
                    # No single item fails alone: the error is about the list (maxItems).
                    parent[key] = items
                    return
                self.index[path] = first
                items = [items[first]]
            for i in range(len(items)):
                self._visit(items, i, (*path, i))
        elif isinstance(node, dict):
            copy = dict(node)
            parent[key] = copy
            for name in list(copy):
                self._visit(copy, name, (*path, name))

    def original(self, path: Sequence[str | int]) -> list[str | int]:
        out: list[str | int] = []
        prefix: Path_ = ()
        for step in path:
            out.append(self.index.get(prefix, step) if isinstance(step, int) else step)
            prefix = (*prefix, step)
        return out


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack += [(child, depth + 1) for child in node.values()]
        elif isinstance(node, list):
            stack += [(child, depth + 1) for child in node]
    return False


def _leaves(errors: Sequence[ValidationError], schema: dict[str, Any]) -> list[ValidationError]:
    """The errors that matter, descending into the anyOf branches that fit the instance best."""
    typed = {tuple(e.instance_path) for e in errors if isinstance(e.kind, Kind.Type)}
    out: list[ValidationError] = []
    for error in errors:
        kind = error.kind
        if isinstance(kind, Kind.Type):
            out.append(error)
        elif tuple(error.instance_path) in typed:
            continue
        elif isinstance(kind, Kind.AnyOf | Kind.OneOfNotValid):
            for branch in _best_branches(error, kind.context, schema):
                out.extend(_leaves(branch, schema))
        else:
            out.append(error)
    return out


def _best_branches(
    error: ValidationError, branches: list[list[ValidationError]], schema: dict[str, Any]
) -> list[list[ValidationError]]:
    depth = len(error.instance_path)
    tags = [_tag_errors(branch, depth) for branch in branches]
    fitting = [i for i, tag in enumerate(tags) if not tag]
    if not fitting:
        return tags
    options = _resolve(schema, error.schema_path)
    if isinstance(error.instance, dict) and isinstance(options, list) and len(fitting) > 1:
        keys = error.instance.keys()
        score = {i: _known_keys(schema, options[i], keys) for i in fitting}
        top = max(score.values())
        fitting = [i for i in fitting if score[i] == top]
    return [branches[i] for i in fitting]


def _resolve(schema: dict[str, Any], path: Sequence[str | int]) -> Any:
    node: Any = schema
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _known_keys(schema: dict[str, Any], node: Any, keys: Any, depth: int = 0) -> int:
    """How many of an object's keys a branch declares (its best sub-branch for an anyOf)."""
    while isinstance(node, dict) and "$ref" in node and depth < 8:
        node = _resolve(schema, node["$ref"].removeprefix("#/").split("/"))
        depth += 1
    if not isinstance(node, dict) or node.get("type", "object") != "object":
        return -1
    if "properties" in node:
        return sum(1 for key in keys if key in node["properties"])
    if "anyOf" in node and depth < 8:
        return max((_known_keys(schema, sub, keys, depth + 1) for sub in node["anyOf"]), default=0)
    return len(keys)


def _tag_errors(branch: Sequence[ValidationError], depth: int) -> list[ValidationError]:
    """The errors showing a branch is for another kind of value: another JSON type, a bad or
    missing `type`, or a one-value tag such as `role: "assistant"`."""
    out: list[ValidationError] = []
    for error in branch:
        kind, path = error.kind, error.instance_path
        child_tag = len(path) == depth + 1 and (
            path[-1] == "type"
            or isinstance(kind, Kind.Constant)
            or (isinstance(kind, Kind.Enum) and len(kind.options) == 1)
        )
        own_tag = len(path) == depth and (
            isinstance(kind, Kind.Type)
            or (isinstance(kind, Kind.Required) and kind.property == "type")
        )
        if child_tag or own_tag:
            out.append(error)
    return out


def _rank(error: ValidationError) -> tuple[int, bool]:
    names_child = isinstance(error.kind, Kind.Required | Kind.AdditionalProperties)
    return len(error.instance_path) + names_child, not isinstance(error.kind, Kind.Type)


def _param(path: Sequence[str | int]) -> str | None:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text or None


def _quoted(param: str | None) -> str:
    return f"'{param}'" if param else "request body"


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _listing(items: Sequence[str], conjunction: str) -> str:
    if len(items) <= 2:
        return f" {conjunction} ".join(items)
    return ", ".join(items[:-1]) + f", {conjunction} " + items[-1]


def invalid_type(param: str | None, expected: str, value: Any) -> InvalidRequestError:
    """The 400 for a value of the wrong JSON type: `expected` is e.g. "an array"."""
    return InvalidRequestError(
        f"Invalid type for {_quoted(param)}: expected {expected}, but got {_actual(value)} "
        "instead.",
        param=param,
        code="invalid_type",
    )


def _actual(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    for kind, name in ((str, "a string"), (list, "an array"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else "a value"


def _declared_type(schema: dict[str, Any], schema_path: Sequence[str | int]) -> Any:
    node = _resolve(schema, schema_path[:-1])
    return node.get("type") if isinstance(node, dict) else None


# kind -> code part, reason, comparison
_BOUNDS: Final[dict[type[Any], tuple[str, str, str]]] = {
    Kind.Minimum: ("below_min", "below minimum", ">="),
    Kind.ExclusiveMinimum: ("below_min", "below minimum", ">"),
    Kind.Maximum: ("above_max", "above maximum", "<="),
    Kind.ExclusiveMaximum: ("above_max", "above maximum", "<"),
}
# kind -> code, reason, the JSON type whose size is checked, the bound's word (see _allowed)
_SIZES: Final[dict[type[Any], tuple[str, str, type[Any], str]]] = {
    Kind.MaxLength: ("string_above_max_length", "string too long", str, "maximum"),
    Kind.MinLength: ("string_below_min_length", "string too short", str, "minimum"),
    Kind.MaxItems: ("array_above_max_length", "array too long", list, "maximum"),
    Kind.MinItems: ("array_below_min_length", "array too short", list, "minimum"),
    Kind.MaxProperties: ("object_above_max_properties", "too many properties", dict, "at most"),
    Kind.MinProperties: ("object_below_min_properties", "too few properties", dict, "at least"),
}


def _to_error(
    best: ValidationError,
    leaves: Sequence[ValidationError],
    schema: dict[str, Any],
    shrunk: _Shrinker,
) -> InvalidRequestError:
    kind, value = best.kind, best.instance
    path = shrunk.original(best.instance_path)
    param = _param(path)
    where = _quoted(param)
    same = [e.kind for e in leaves if e.instance_path == best.instance_path]

    if isinstance(kind, Kind.Required | Kind.AdditionalProperties):
        name = kind.property if isinstance(kind, Kind.Required) else kind.unexpected[0]
        child = _param([*path, name])
        if isinstance(kind, Kind.Required):
            message, code = f"Missing required parameter: '{child}'.", "missing_required_parameter"
        else:
            message, code = f"Unknown parameter: '{child}'.", "unknown_parameter"
        return InvalidRequestError(message, param=child, code=code)
    if isinstance(kind, Kind.Type):
        types = list(dict.fromkeys(t for k in same if isinstance(k, Kind.Type) for t in k.types))
        if len(types) > 1 and "null" in types:
            types.remove("null")
        names = [_TYPE_NAMES.get(t, t) for t in types]
        expected = names[0] if len(names) == 1 else "one of " + _listing(names, "or")
        return invalid_type(param, expected, value)
    if isinstance(kind, Kind.Enum | Kind.Constant):
        options: list[Any] = []
        for k in same:
            found = k.options if isinstance(k, Kind.Enum) else []
            found = [k.expected_value] if isinstance(k, Kind.Constant) else found
            options += [o for o in found if o not in options]
        shown = _listing([f"'{_show(o)}'" for o in options], "and")
        return InvalidRequestError(
            f"Invalid value: '{_show(value)}'. Supported values are: {shown}.",
            param=param,
            code="invalid_value",
        )
    if type(kind) in _BOUNDS:
        side, reason, sign = _BOUNDS[type(kind)]
        declared = _declared_type(schema, best.schema_path)
        integer = declared == "integer" or (declared is None and type(value) is int)
        number = "integer" if integer else "decimal"
        limit = getattr(kind, "limit", None)
        return InvalidRequestError(
            f"Invalid {where}: {number} {reason} value. "
            f"Expected a value {sign} {limit}, but got {_show(value)} instead.",
            param=param,
            code=f"{number}_{side}_value",
        )
    if type(kind) in _SIZES:
        code, reason, sized, bound = _SIZES[type(kind)]
        size = shrunk.length.get(tuple(best.instance_path), 0)
        size = size or (len(value) if isinstance(value, sized) else 0)
        got = _sized(sized, size)
        expected = _allowed(sized, bound, getattr(kind, "limit", None))
        return InvalidRequestError(
            f"Invalid {where}: {reason}. Expected {expected}, but got {got} instead.",
            param=param,
            code=code,
        )
    if isinstance(kind, Kind.Pattern):
        return InvalidRequestError(
            f"Invalid {where}: string does not match pattern. "
            f"Expected a string that matches the pattern '{kind.pattern}'.",
            param=param,
            code="invalid_value",
        )
    return InvalidRequestError(
        f"Invalid {where}: {_show(best.message)}", param=param, code="invalid_value"
    )


def _allowed(sized: type[Any], bound: str, limit: object) -> str:
    """The sizes a schema allows, as a message says them: `a string with maximum length 64`."""
    if sized is dict:
        return f"an object with {bound} {limit} properties"
    return f"{'a string' if sized is str else 'an array'} with {bound} length {limit}"


def _sized(sized: type[Any], size: int) -> str:
    if sized is dict:
        return f"an object with {size} properties"
    if sized is str:
        return f"a string with length {size}" if size else "an empty string"
    return f"an array with length {size}" if size else "an empty array"

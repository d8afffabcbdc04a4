"""JSON Schema 2020-12 contracts of tools: schema checks, argument/result validation, redaction."""

from __future__ import annotations

from typing import Any, cast

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError

REDACTED = "[redacted]"
_MAX_ERRORS = 20
_FORMAT_CHECKER = FormatChecker()


def schema_problems(schema: Any, *, must_be_object: bool) -> list[str]:
    """Why `schema` is not a usable JSON Schema 2020-12 (empty list: it is)."""
    if not isinstance(schema, dict):
        return [f"must be a JSON object (a JSON Schema), not {type(schema).__name__}"]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return [f"not a valid JSON Schema 2020-12{' at ' + where if where else ''}: {exc.message}"]
    if must_be_object and schema.get("type") != "object":
        # MCP and OpenAI both require tool arguments to be an object.
        return ['must describe an object: "type": "object"']
    return []


def compile_validator(schema: dict | None) -> Draft202012Validator | None:
    if schema is None:
        return None
    return Draft202012Validator(schema, format_checker=_FORMAT_CHECKER)


def _path_of(error: ValidationError) -> str:
    path = error.json_path
    # A missing required property is reported at its parent; name the property itself.
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in cast(list[str], error.validator_value) if name not in error.instance]
        if missing:
            path = f"{path}.{missing[0]}"
    return path


def _is_secret(error: ValidationError, secrets: list[tuple[str, ...]]) -> bool:
    where = tuple("*" if isinstance(p, int) else str(p) for p in error.absolute_path)
    return any(where[: len(path)] == path for path in secrets)


def validation_errors(
    validator: Draft202012Validator, instance: Any, secrets: list[tuple[str, ...]] | None = None
) -> list[dict[str, str]]:
    """Every error as {"path": JSON path ($ = the instance), "message"}; stable order.

    jsonschema quotes the offending value in its message; for a secret field the message
    names only the rule broken, so the value reaches neither the audit row nor the logs.
    """
    errors = sorted(validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [
        {
            "path": _path_of(err),
            "message": f"the value breaks the {err.validator!r} rule" if secrets and _is_secret(err, secrets) else err.message,
        }
        for err in errors[:_MAX_ERRORS]
    ]


def secret_paths(schema: Any) -> list[tuple[str, ...]]:
    """Paths of properties marked `writeOnly` or `x-secret`; "*" stands for any array item."""
    found: list[tuple[str, ...]] = []

    def walk(node: Any, prefix: tuple[str, ...], depth: int) -> None:
        if not isinstance(node, dict) or depth > 20:
            return
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and (sub.get("writeOnly") is True or sub.get("x-secret") is True):
                found.append((*prefix, name))
            else:
                walk(sub, (*prefix, name), depth + 1)
        items = node.get("items")
        if isinstance(items, dict):
            walk(items, (*prefix, "*"), depth + 1)
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key) or []:
                walk(sub, prefix, depth + 1)

    walk(schema, (), 0)
    return found


def redact(value: Any, paths: list[tuple[str, ...]]) -> Any:
    """A copy of `value` with each secret path replaced by "[redacted]"."""
    if not paths:
        return value

    def apply(node: Any, path: tuple[str, ...]) -> Any:
        if not path:
            return REDACTED
        head, rest = path[0], path[1:]
        if head == "*" and isinstance(node, list):
            return [apply(item, rest) for item in node]
        if isinstance(node, dict) and head in node:
            return {**node, head: apply(node[head], rest)}
        return node

    for path in paths:
        value = apply(value, path)
    return value

"""OpenAPI (drf-spectacular) description of the management API's authentication."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.registry.authentication.ServiceTokenAuthentication"
    name = "serviceToken"

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A service token with scope `registry` (read and write) or `registry:read` (read only).",
        }


_ERRORS = {
    "400": "The body is not JSON (or YAML) at all, or the URL holds a NUL character.",
    "401": "No credentials, or an unknown, disabled or expired token.",
    "403": "A token without the needed scope, or a session that is not staff.",
    "404": "No such object.",
    "409": "Conflicts with stored data (e.g. deleting a provider that still serves a model).",
    "422": "Broke a rule (or a filter is not valid); `details` lists `{path, message}` per problem.",
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "details"],
            "properties": {
                "type": {"type": "string", "example": "validation_error"},
                "message": {"type": "string"},
                "details": {"nullable": True, "example": [{"path": "fallbacks", "message": "fallbacks would loop: a → b → a"}]},
            },
        }
    },
}


def add_error_responses(result, generator, request, public):  # noqa: ANN001, ANN201, ARG001
    """Postprocessing hook: every operation may answer with the error envelope."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for code, description in _ERRORS.items():
                # A GET has no body, but its URL may be refused: a NUL (400), a bad filter (422).
                if code == "409" and method == "get":
                    continue
                operation["responses"].setdefault(code, {"description": description, "content": reference})
    return result

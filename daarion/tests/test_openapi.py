"""The OpenAPI documents of /internal and /v1 declare, on every operation, the error statuses a
caller can meet, with the door's error schema (issue #18 item 10: they listed none)."""

from __future__ import annotations

import pytest

from daarion.api import internal_api, openai_api

ERROR_STATUSES = {"400", "401", "403", "404", "413", "422", "429", "503"}


def _operations(schema: dict):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


@pytest.mark.parametrize(("url", "default_error"), [("/internal/openapi.json", "Error"), ("/v1/openapi.json", "OpenAIError")])
def test_every_operation_declares_its_errors_with_the_doors_schema(api, url, default_error) -> None:
    response = api.get(url)
    assert response.status_code == 200
    schema = response.json()
    operations = list(_operations(schema))
    assert len(operations) > 5
    for path, method, operation in operations:
        declared = {str(code) for code in operation["responses"]}
        assert ERROR_STATUSES <= declared, (path, method, declared)
        expected = "AnthropicError" if path.startswith("/v1/messages") else default_error
        ref = operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{expected}", (path, method)
        assert expected in schema["components"]["schemas"]


def test_the_error_schemas_match_what_the_doors_answer(api, make_token, bearer) -> None:
    import jsonschema

    house = internal_api.get_openapi_schema()["components"]["schemas"]["Error"]
    openai = openai_api.get_openapi_schema()["components"]["schemas"]["OpenAIError"]
    anthropic = openai_api.get_openapi_schema()["components"]["schemas"]["AnthropicError"]
    jsonschema.validate(api.get("/internal/whoami").json(), house)  # 401
    jsonschema.validate(api.post("/internal/llm/proxy", json={}, headers=bearer(make_token())).json(), house)  # 422
    jsonschema.validate(api.post("/v1/chat/completions", json={}, headers=bearer(make_token())).json(), openai)
    jsonschema.validate(api.post("/v1/messages", json={}, headers=bearer(make_token())).json(), anthropic)

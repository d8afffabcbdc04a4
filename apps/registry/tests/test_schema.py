"""The OpenAPI document of the management API and its docs page."""

from __future__ import annotations

from django.core.management import call_command


def test_schema_lists_every_route_with_auth_and_errors(api):
    response = api.get("/api/registry/schema/", params={"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for collection, key in (
        ("providers", "name"),
        ("models", "name"),
        ("rate-limits", "id"),
        ("tools", "id"),
        ("agents", "id"),
        ("embedding-models", "name"),
    ):
        assert f"/api/registry/{collection}/" in paths and f"/api/registry/{collection}/{{{key}}}/" in paths
    assert {"/api/registry/apply", "/api/registry/export"} <= paths
    assert not any(p.startswith(("/internal", "/v1")) for p in paths)  # Ninja documents those
    assert schema["components"]["securitySchemes"]["serviceToken"]["scheme"] == "bearer"
    create = schema["paths"]["/api/registry/tools/"]["post"]
    assert create["responses"]["422"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
    # Secrets are write-only in the contract too.
    assert "api_key" in schema["components"]["schemas"]["ProviderInRequest"]["properties"]
    assert schema["components"]["schemas"]["ProviderOut"]["properties"]["api_key"]["allOf"][0]["$ref"].endswith("ProviderKeyOut")


def test_schema_validates_without_warnings(tmp_path, db):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi:")


def test_docs_page(api):
    page = api.get("/api/registry/docs/")
    assert page.status_code == 200 and "redoc" in page.text.lower()


def test_every_reference_resolves(api):
    # Redoc (the docs page) stops at the first dangling "$ref": "Invalid reference token".
    schema = api.get("/api/registry/schema/", params={"format": "json"}).json()
    refs: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    components = schema["components"]["schemas"]
    assert "#/components/schemas/SecretStateOut" in refs
    dangling = sorted(ref for ref in refs if ref.removeprefix("#/components/schemas/") not in components)
    assert dangling == []


def test_prices_and_budgets_are_numbers_in_and_out(api, token_client):
    # Documents, exports and answers carry them as JSON numbers; the schema said strings.
    schemas = api.get("/api/registry/schema/", params={"format": "json"}).json()["components"]["schemas"]
    for name in ("LogicalModelInRequest", "PatchedLogicalModelInRequest", "LogicalModelOut"):
        for field in ("input_price_per_mtok", "output_price_per_mtok"):
            assert schemas[name]["properties"][field]["type"] == "number", (name, field)
    for name in ("RateLimitPolicyInRequest", "RateLimitPolicyOut"):
        assert schemas[name]["properties"]["budget_usd"]["type"] == "number", name
    assert schemas["LogicalModelOut"]["properties"]["input_price_per_mtok"]["minimum"] == 0
    created = token_client.post("/models/", json={"name": "priced", "input_price_per_mtok": 0.25})
    assert created.status_code == 201, created.text
    assert created.json()["input_price_per_mtok"] == 0.25 and created.json()["output_price_per_mtok"] == 0

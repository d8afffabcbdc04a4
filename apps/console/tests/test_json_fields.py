"""JSON fields in admin: the editor widget's markup and the validation it asks for as you type
(the checks of the save: the character schema, JSON Schema 2020-12 for tool contracts)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from apps.agents.tests.factories import make_agent

pytestmark = pytest.mark.django_db


def _validate(client, kind: str, text: str):
    return client.post(
        reverse("console:json-validate"), data=json.dumps({"kind": kind, "text": text}), content_type="application/json"
    )


def test_a_valid_character_has_no_problems(admin_client):
    answer = _validate(admin_client, "agent.character", json.dumps({"bio": ["Plans things."], "topics": ["x"]}))
    assert answer.status_code == 200 and answer.json() == {"errors": []}


def test_a_character_that_breaks_its_schema_names_the_path(admin_client):
    errors = _validate(admin_client, "agent.character", '{"bio": 42, "topics": "x"}').json()["errors"]
    assert {e["path"] for e in errors} == {"$.bio", "$.topics"}


@pytest.mark.parametrize(
    ("kind", "text", "fragment"),
    [
        ("agent.character", "[1, 2]", "must be a JSON object"),
        ("agent.character", '{"bio": ', "not JSON"),
        ("tool.input_schema", '{"type": "string"}', '"type": "object"'),
        ("tool.input_schema", '{"type": "object", "properties": 5}', "JSON Schema 2020-12"),
        ("string-map", '{"X-Key": 5}', "must be a string"),
        ("strings", '["a", 1]', "must be a string"),
        ("agent.character", '{"bio": "a\\u0000b"}', ""),
    ],
)
def test_problems_of_each_kind(admin_client, kind, text, fragment):
    errors = _validate(admin_client, kind, text).json()["errors"]
    assert errors and fragment in " ".join(e["message"] for e in errors)


def test_an_empty_output_schema_is_allowed(admin_client):
    assert _validate(admin_client, "tool.output_schema", "").json() == {"errors": []}


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"kind": "json"}', b'{"kind": 5, "text": "{}"}'])
def test_bad_requests_answer_in_the_house_envelope(admin_client, body):
    answer = admin_client.post(reverse("console:json-validate"), data=body, content_type="application/json")
    assert answer.status_code in (400, 422) and answer.json()["error"]["type"] in ("bad_request", "validation_error")


def test_validation_is_for_staff_only(client):
    answer = _validate(client, "json", "{}")
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]


def test_the_agent_form_shows_the_character_indented_in_an_editor_field(admin_client):
    make_agent("agent:pm", character={"bio": ["Plans things."], "topics": ["planning"]})
    page = admin_client.get(reverse("admin:agents_agent_change", args=["agent:pm"])).content.decode()
    assert 'data-json-kind="agent.character"' in page and "json-editor-source" in page
    assert "{\n  &quot;bio&quot;: [\n    &quot;Plans things.&quot;" in page
    assert '<script src="/static/console/json-field.js" type="module">' in page


def test_json_fields_of_providers_mcp_servers_and_embedding_models_use_the_editor(admin_client):
    for url, kind in (
        ("/admin/llm/provider/add/", "string-map"),
        ("/admin/tools/mcpserver/add/", "string-map"),
        ("/admin/memory/embeddingmodel/add/", "object"),
    ):
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert f'data-json-kind="{kind}"' in page.content.decode(), url

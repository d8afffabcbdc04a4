"""The registry document's pydantic models: every problem of a malformed document comes back
at once, at its path in the document, in the engine's words; and the models know every field
the owning services take."""

from __future__ import annotations

import pytest

from apps.agents.services import EDITABLE_FIELDS
from apps.registry.documents import parse
from apps.registry.documents.models import AgentDoc, McpServerDoc, ToolDoc
from apps.tools.services import MCP_SERVER_FIELDS, TOOL_FIELDS
from daarion.infra.errors import ValidationFailed


def _refusal(document: object) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as raised:
        parse(document)
    return [(d["path"], d["message"]) for d in raised.value.details]


def test_every_shape_problem_is_named_at_its_path():
    assert _refusal(
        {
            "providers": {"p": {"timeout": "soon", "max_retries": True}},
            "models": {"m": {"deployments": [{"provider": "p", "weight": 1.5}, "x"]}},
        }
    ) == [
        ("providers.p.timeout", "must be a number"),
        ("providers.p.max_retries", "must be an integer"),
        ("models.m.deployments[0].weight", "must be an integer"),
        ("models.m.deployments[1]", "expected a mapping, got str"),
    ]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (None, [("(root)", "expected a mapping, got NoneType")]),
        ({"models": [1]}, [("models", "expected a mapping, got list")]),
        ({"rate_limits": {"a": 1}}, [("rate_limits", "expected a list, got dict")]),
        (
            {"providers": {"p": {"colour": "red"}}},
            [
                (
                    "providers.p",
                    "unknown key(s) ['colour']; allowed: ['api_key', "
                    "'api_key_env', 'base_url', 'enabled', 'extra_headers', 'kind', "
                    "'max_retries', 'timeout', 'timeout_seconds']",
                )
            ],
        ),
        ({"models": {"m": {}}}, [("models.m", "needs a provider (or a deployments list)")]),
        (
            {"models": {"m": {"provider": "p", "deployments": []}}},
            [("models.m", "give either provider/name or deployments, not both")],
        ),
        (
            {"models": {"m": {"provider": "p", "price": {"input": "cheap"}}}},
            [("models.m.price.input", "'cheap' is not a number")],
        ),
        ({"rate_limits": [{"scope": "default"}, {"scope": "default"}]}, [("rate_limits[1]", "policy default appears twice")]),
        ({"rate_limits": [{"budget_usd": 5, "budget_period": None}]}, [("rate_limits[0].budget_period", "must be a string")]),
        ({"tools": [{"name": "x"}]}, [("tools[0].id", "required (a string like projects.list)")]),
        ({"tools": [{"id": "a"}, {"id": "a"}]}, [("tools[1].id", "'a' appears twice in the document")]),
        ({"tools": [{"id": "a", "secrets": {"K": 5}}]}, [("tools[0].secrets.K", "expected a mapping, got int")]),
        ({"agents": [{"id": "agent:x", "name": "X"}]}, [("agents[0].microdao_id", "required"), ("agents[0].model", "required")]),
        ({"mcp_servers": [{"name": "m"}]}, [("mcp_servers[0].url", "required")]),
    ],
)
def test_malformed_parts(document, expected):
    assert _refusal(document) == expected


def test_defaults_and_spellings():
    desired = parse(
        {
            "providers": {"openai": None, "local": {"kind": "vllm", "base_url": "http://gpu:8000/v1/", "timeout": 5}},
            "models": {"m": {"provider": "local", "price": {"input": "0.5"}, "output_price_per_mtok": 2}},
            "rate_limits": [{"budget_usd": 10}],
            "tools": [{"id": "a", "annotations": {"read_only": True}, "secrets": {"K": "v", "E": {"env": "X"}}}],
        }
    )
    assert desired.sections == {"providers", "models", "rate_limits", "tools"}
    _path, openai, _secret = desired.providers["openai"]
    assert (openai["kind"], openai["base_url"], openai["timeout_seconds"]) == ("openai", "https://api.openai.com/v1", 60.0)
    assert (
        desired.providers["local"][1]["base_url"] == "http://gpu:8000/v1"
        and desired.providers["local"][1]["timeout_seconds"] == 5.0
    )
    model = desired.models["m"][1]
    assert (str(model["input_price_per_mtok"]), model["output_price_per_mtok"]) == ("0.5", 2)
    assert model["deployments"] == [
        {
            "path": "models.m",
            "provider": "local",
            "upstream_model": "m",
            "weight": 1,
            "rpm_limit": None,
            "tpm_limit": None,
            "enabled": True,
        }
    ]
    assert desired.rate_limits[("default", "")][1]["budget_period"] == "month"
    _path, tool, secrets = desired.tools["a"]
    assert (tool["read_only"], tool["destructive"]) == (True, False)
    assert {n: (s.value, s.env) for n, s in secrets.items()} == {"K": ("v", None), "E": (None, "X")}


def test_the_models_know_every_field_the_services_take():
    assert set(TOOL_FIELDS) <= set(ToolDoc.model_fields)
    assert set(MCP_SERVER_FIELDS) <= set(McpServerDoc.model_fields)
    assert set(EDITABLE_FIELDS) <= set(AgentDoc.model_fields)

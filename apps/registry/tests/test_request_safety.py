"""Bodies the management API must read right or refuse fast: chunked bodies (no
Content-Length) are parsed like any other, and YAML that would expand (an alias bomb) is a 400
at its first anchor."""

from __future__ import annotations

import json

import pytest

from apps.llm.models import Provider
from apps.registry.tests.conftest import RegistryClient


def _chunked(data: bytes) -> object:
    # A generator body: httpx sends it with Transfer-Encoding: chunked and no Content-Length.
    def pieces():
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    return pieces()


def test_a_chunked_apply_applies(token_client: RegistryClient) -> None:
    document = token_client.get("/export").json()
    document["providers"]["chunked"] = {"kind": "stub"}
    body = json.dumps(document).encode()
    plan = token_client.post("/apply?dry_run=1", content=_chunked(body), headers={"Content-Type": "application/json"})
    assert plan.status_code == 200, plan.text
    assert not Provider.objects.filter(name="chunked").exists()
    applied = token_client.post("/apply", content=_chunked(body), headers={"Content-Type": "application/json"})
    assert applied.status_code == 200, applied.text
    assert Provider.objects.filter(name="chunked").exists()


def test_a_chunked_yaml_apply_applies(token_client: RegistryClient) -> None:
    body = b"providers:\n  chunked-yaml:\n    kind: stub\n"
    applied = token_client.post("/apply?prune=0", content=_chunked(body), headers={"Content-Type": "application/yaml"})
    assert applied.status_code == 200, applied.text
    assert Provider.objects.filter(name="chunked-yaml").exists()


def test_chunked_creates_and_updates_work(token_client: RegistryClient) -> None:
    body = json.dumps({"name": "chunked-main", "kind": "openai", "api_key": "sk-chunked", "timeout_seconds": 30}).encode()
    created = token_client.post("/providers/", content=_chunked(body), headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert created.json()["timeout_seconds"] == 30
    patched = token_client.patch(
        "/providers/chunked-main/", content=_chunked(b'{"max_retries": 4}'), headers={"Content-Type": "application/json"}
    )
    assert patched.status_code == 200, patched.text
    assert Provider.objects.get(name="chunked-main").max_retries == 4


BOMB = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize("body", [BOMB, b"providers: *x\n", b"providers:\n  p: {<<: *base}\n"])
def test_yaml_with_anchors_or_aliases_is_refused_with_a_read_only_token(read_client: RegistryClient, body) -> None:
    # 9 levels of 9 aliases: 387 million strings if expanded; refused at the first anchor instead.
    response = read_client.post("/apply?dry_run=1", content=body, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "are not accepted" in error["message"] and ("anchor" in error["message"] or "alias" in error["message"])


def test_yaml_nested_too_deep_or_too_large_is_refused(read_client: RegistryClient) -> None:
    deep = b"providers: " + b"[" * 200 + b"]" * 200
    response = read_client.post("/apply?dry_run=1", content=deep, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]["message"]
    many = b"providers: [" + b",".join([b"1"] * 60_000) + b"]"
    response = read_client.post("/apply?dry_run=1", content=many, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 400 and "nodes" in response.json()["error"]["message"]

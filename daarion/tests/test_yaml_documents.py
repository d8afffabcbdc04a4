"""The YAML loader for documents from outside: plain data, no anchors or aliases, capped."""

from __future__ import annotations

import pytest
import yaml

from daarion.infra.yaml_documents import DocumentRefused, yaml_document_dump, yaml_document_load


def test_plain_documents_load_as_safe_load_loads_them() -> None:
    text = "providers:\n  stub: {kind: stub, timeout: 30}\nmodels:\n- name: small\n  price: 0.15\n  on: yes\n"
    assert yaml_document_load(text) == yaml.safe_load(text)
    assert yaml_document_load(text.encode()) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("a: &x 1\n", "anchors (&x) are not accepted (line 1, column 4)"),
        ("a: *x\n", "aliases (*x) are not accepted"),
        ("a: {<<: *base}\n", "aliases (*base) are not accepted"),
        ("a: " + "[" * 65 + "]" * 65, "nested too deeply (over 64 levels)"),
        ("[" + ",".join(["1"] * 11) + "]", "more than 10 nodes"),
        ("x" * 101, "the document is 101 bytes; the limit is 100"),
    ],
)
def test_what_is_refused(text: str, refusal: str) -> None:
    with pytest.raises(DocumentRefused) as caught:
        yaml_document_load(text, max_nodes=10 if text.startswith("[1") else 50_000, max_bytes=100 if text[0] == "x" else 4096)
    assert refusal in str(caught.value)


def test_what_is_not_yaml_is_a_yaml_error() -> None:
    with pytest.raises(yaml.YAMLError):
        yaml_document_load("a: [")
    with pytest.raises(yaml.YAMLError):
        yaml_document_load("a: 1\n---\nb: 2\n")
    with pytest.raises(yaml.YAMLError):
        yaml_document_load("!!python/object:os.system {}")


def test_what_we_write_loads_back_even_with_shared_objects() -> None:
    shared = {"type": "object"}
    data = {"tools": [{"id": "a", "schema": shared}, {"id": "b", "schema": shared}], "name": "Повертає"}
    assert "&id" in yaml.safe_dump(data)  # what PyYAML alone would write, and the loader refuse
    text = yaml_document_dump(data)
    assert "&" not in text and "Повертає" in text
    assert yaml_document_load(text) == data

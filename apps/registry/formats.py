"""YAML in and out of the management API and the registry commands, for registry documents
kept in git. The reader refuses anchors and aliases and caps size, nodes and depth
(daarion/infra/yaml_documents.py): an alias bomb is refused at its first anchor, before anything is
expanded."""

from __future__ import annotations

from typing import Any

import yaml
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from daarion.infra.yaml_documents import DocumentRefused, yaml_document_dump, yaml_document_load


class DocumentSyntaxError(ValueError):
    """A registry document that is not readable YAML (or JSON, which is YAML), or one refused."""


def load_document(text: str | bytes) -> Any:
    """A registry document from YAML text: the one reader of the API and the commands."""
    try:
        return yaml_document_load(text)
    except DocumentRefused as exc:
        raise DocumentSyntaxError(f"YAML refused: {exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DocumentSyntaxError(f"not valid YAML: {exc}") from exc


def dump_document(data: Any) -> str:
    return yaml_document_dump(data)


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None) -> Any:  # noqa: ANN001
        try:
            return load_document(stream.read())
        except DocumentSyntaxError as exc:
            raise ParseError(str(exc)) from exc


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:  # noqa: ANN001
        if data is None:
            return b""
        return dump_document(data).encode("utf-8")

"""YAML in and out of the management API, for registry documents kept in git."""

from __future__ import annotations

from typing import Any

import yaml
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer


class DocumentSyntaxError(ValueError):
    """A registry document that is not readable YAML (or JSON, which is YAML)."""


def load_document(text: str | bytes) -> Any:
    """A registry document from YAML text: the one reader of the API and the commands."""
    try:
        return yaml.safe_load(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DocumentSyntaxError(f"not valid YAML: {exc}") from exc


def dump_document(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


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

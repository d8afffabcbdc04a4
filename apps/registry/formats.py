"""YAML in and out of the management API, for registry documents kept in git."""

from __future__ import annotations

from typing import Any

import yaml
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from daarion.yaml_documents import (
    DocumentRefused,
    yaml_document_dump,
    yaml_document_load,
)


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None) -> Any:  # noqa: ANN001
        # No anchors or aliases, nodes and depth capped (daarion/yaml_documents.py): an alias
        # bomb is refused at its first anchor, before anything is expanded.
        try:
            return yaml_document_load(stream.read())
        except DocumentRefused as exc:
            raise ParseError(f"YAML refused: {exc}") from exc
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ParseError(f"not valid YAML: {exc}") from exc


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:  # noqa: ANN001
        if data is None:
            return b""
        return yaml_document_dump(data).encode("utf-8")

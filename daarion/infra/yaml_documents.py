"""The one YAML loader for documents from outside (the management API's `apply`, the import
commands): plain data only, bounded in size, nodes and depth.

`yaml.safe_load` refuses arbitrary objects but not aliases: a few hundred bytes of nested
`&a [*b, *b, ...]` expand into millions of nodes when the document is turned into Python data
(the "billion laughs"; issue #18 measured 466 bytes costing 2.5 s and 56 MB, x10 per added line).
No registry document needs anchors, aliases or merge keys (`<<`), so they are refused at the
first one, before anything is built; the node count and depth are capped the same way, so no
shape of document costs more than its caps.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 50_000
MAX_DEPTH = 64

# libyaml's parser where it is built in: the check below walks every event, and the C parser
# makes that walk cheap next to building the data.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)
_OPEN_EVENTS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE_EVENTS = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


class DocumentRefused(ValueError):
    """A YAML document this loader will not build (its message says why, with the position)."""


def _where(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _check(text: str, *, max_nodes: int, max_depth: int) -> None:
    """Walks the parser's events (nothing is built yet) and refuses at the first anchor, alias,
    node over the count or level over the depth."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            raise DocumentRefused(f"aliases (*{event.anchor}) are not accepted{_where(event)}")
        if not isinstance(event, _NODE_EVENTS):
            if isinstance(event, _CLOSE_EVENTS):
                depth -= 1
            continue
        if event.anchor is not None:
            raise DocumentRefused(f"anchors (&{event.anchor}) are not accepted{_where(event)}")
        nodes += 1
        if nodes > max_nodes:
            raise DocumentRefused(f"the document has more than {max_nodes} nodes")
        if isinstance(event, _OPEN_EVENTS):
            depth += 1
            if depth > max_depth:
                raise DocumentRefused(f"the document is nested too deeply (over {max_depth} levels){_where(event)}")


def yaml_document_load(
    text: str | bytes, *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH
) -> Any:
    """The data of one YAML document. Raises DocumentRefused for what is over a cap or uses
    anchors/aliases, yaml.YAMLError for what is not YAML (or holds several documents),
    UnicodeDecodeError for bytes that are not UTF-8."""
    if len(text) > max_bytes:
        raise DocumentRefused(f"the document is {len(text)} bytes; the limit is {max_bytes}")
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    _check(text, max_nodes=max_nodes, max_depth=max_depth)
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader (CSafeLoader or SafeLoader)


class _PlainDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    # PyYAML writes an object met twice as an anchor and an alias, which the loader above
    # refuses: every document we write must load back, so shared objects are written out again.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def yaml_document_dump(data: Any) -> str:
    """`data` as a YAML document that yaml_document_load reads back: no anchors or aliases,
    keys in their order, Unicode as is."""
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True)

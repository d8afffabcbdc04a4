"""The plan of a registry document: one item per object, what applying it does (or did)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Action = str  # create | update | delete | unchanged


@dataclass
class PlanItem:
    type: str  # provider | model | rate_limit | tool | agent | mcp_server
    id: str
    path: str  # where the object sits in the document, e.g. models.gpt-4.1-mini
    action: Action
    changes: dict[str, list[Any]] = field(default_factory=dict)  # field -> [before, after]


@dataclass
class Plan:
    items: list[PlanItem] = field(default_factory=list)
    dry_run: bool = False
    applied: bool = False

    def add(self, item: PlanItem) -> PlanItem:
        self.items.append(item)
        return item

    def summary(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        for item in self.items:
            counts[item.action] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "applied": self.applied,
            "summary": self.summary(),
            "changes": [asdict(item) for item in self.items],
        }

    def lines(self) -> list[str]:
        """One line per object that changes, then the counts: what the import command prints."""
        prefix = "would be " if self.dry_run else ""
        verbs = {"create": "created", "update": "updated", "delete": "deleted"}
        out = [f"{prefix}{verbs[i.action]}: {i.path}" for i in self.items if i.action in verbs]
        counts = self.summary()
        out.append(
            f"{'dry run: ' if self.dry_run else ''}{counts['create']} {prefix}created, {counts['update']} {prefix}updated, "
            f"{counts['unchanged']} unchanged, {counts['delete']} {prefix}deleted"
        )
        return out

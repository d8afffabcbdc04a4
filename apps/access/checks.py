"""System checks for rows that name agents which do not exist (written before the services
refused unknown ids, or past them): `manage.py check --database default` lists each one.

The checks are tagged `database`: Django runs them only when it is given databases
(`check --database`, and `migrate` before it migrates), so start-up and every other command
stay free of queries. Each app checks its own rows through `dangling_agent_warnings`, which
asks daarion.infra.agent_directory (the agents app's resolver) which ids are unknown, so no app
imports apps.agents for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.core import checks
from django.db import ProgrammingError, connections, router, transaction
from django.db.models import Model, QuerySet

from daarion.infra.agent_directory import unknown_agent_ids

# (the row, the agent ids it names) for each row a check looks at.
References = Callable[[QuerySet], Iterable[tuple[Any, Iterable[Any]]]]


def _alias_to_check(model: type[Model], databases: Sequence[str] | None) -> str | None:
    """The database holding `model`'s rows, if the caller asked for it and it has the table.

    `migrate` runs database checks before it migrates: on a fresh database the table is not
    there yet, and there is nothing to check.
    """
    if not databases:
        return None
    alias = router.db_for_read(model)
    if alias not in databases:
        return None
    if model._meta.db_table not in connections[alias].introspection.table_names():
        return None
    return alias


def dangling_agent_warnings(
    *,
    model: type[Model],
    databases: Sequence[str] | None,
    references: References,
    describe: Callable[[Any, list[str]], str],
    hint: Callable[[Any], str],
    check_id: str,
) -> list[checks.CheckMessage]:
    """One Warning per row of `model` naming agents the directory does not know.

    One query for the rows and one for the agents, however many rows there are. Ids that are
    not strings are left to the row's own validation (the services refuse them too).
    """
    alias = _alias_to_check(model, databases)
    if alias is None:
        return []
    rows = [
        (row, list(dict.fromkeys(a for a in (ids or ()) if isinstance(a, str) and a)))
        for row, ids in references(model._default_manager.using(alias))
    ]
    wanted = [agent_id for _, ids in rows for agent_id in ids]
    try:
        # A savepoint, so a missing agents table leaves a caller's transaction usable.
        with transaction.atomic(using=alias):
            unknown = set(unknown_agent_ids(wanted))
    except ProgrammingError:
        return []  # the agents table is not migrated yet (migrate checks before it migrates)
    warnings: list[checks.CheckMessage] = []
    for row, ids in rows:
        missing = [agent_id for agent_id in ids if agent_id in unknown]
        if missing:
            warnings.append(checks.Warning(describe(row, missing), hint=hint(row), obj=model, id=check_id))
    return warnings


def quoted(ids: Iterable[str]) -> str:
    return ", ".join(repr(agent_id) for agent_id in ids)


def check_service_token_agents(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """daarion.W001: a service token bound to agents that do not exist."""
    from apps.access.models import ServiceToken

    return dangling_agent_warnings(
        model=ServiceToken,
        databases=databases,
        references=lambda rows: (
            (token, token.agents)
            for token in rows.only("pk", "name", "agents").order_by("name")
            if isinstance(token.agents, list)
        ),
        describe=lambda token, missing: f"service token {token.name!r} is bound to agents that do not exist: {quoted(missing)}",
        hint=lambda token: (
            f"Take those ids out of the agents of token {token.name!r} in the admin (Service access > "
            "Service tokens), or create those agents; until then the token may act for whatever agent is created "
            "under such an id. A list left empty must stay empty ([]: no agent), not null (any agent)."
        ),
        check_id="daarion.W001",
    )

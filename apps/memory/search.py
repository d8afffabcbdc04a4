"""Hybrid memory retrieval: pgvector similarity and Postgres full-text within one agent's
scope, combined by normalized score, with neighbouring turns lifted.

Why both: the vector finds paraphrases, the text finds names, numbers and rare words, and it
finds entries whose embedding is still pending. The lexical side weighs each query term by
its rarity in the scope (a BM25-style IDF computed in the same SQL), so common words do not
drown the rare ones. Scores are 0..1: 1 is the best match of both sides.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction

from apps.memory import language, selectors
from apps.memory.embeddings import Embedder, EmbeddingError, get_embedder
from apps.memory.embeddings.hashing import _STOP
from apps.memory.models import FTS_LEMMAS, fts_config
from apps.memory.vector_index import TABLE, supports_iterative_scan
from daarion.infra.errors import ValidationFailed
from daarion.observability import metrics, tracing

logger = logging.getLogger(__name__)

MAX_LIMIT = settings.MEMORY_QUERY_MAX_LIMIT
MAX_QUERY_CHARS = 2000
MAX_TERMS = 24
# What each of these means: daarion/settings.py, "memory".
EXACT_SEARCH_MAX = settings.MEMORY_EXACT_SEARCH_MAX
HNSW_EF_SEARCH = settings.MEMORY_HNSW_EF_SEARCH
NEIGHBOUR_WEIGHT = settings.MEMORY_NEIGHBOUR_WEIGHT
_WORD = re.compile(r"\w+", re.UNICODE)
# A slow query embedding (the local model, a model behind the LLM proxy) is computed here
# while the lexical side's SQL runs, so a query pays the longer of the two, not their sum.
_query_embeddings = ThreadPoolExecutor(max_workers=4, thread_name_prefix="memory-query-embedding")
# Ukrainian and Russian words that carry no topic (Postgres's `simple` configuration keeps
# them, and in a small scope their IDF is not low enough to silence them).
_STOP_UK_RU = frozenset(
    "і й та а але або чи що як які який яка яке якого коли де хто чому це ці цей ця той та те ті так не ні "
    "в у на з із зі до від для про по за під над між через при без є був була було були буде будуть "
    "я ти він вона воно ми ви вони мене мені нас нам вас вам його її їх їм свій своя свої наш наша наші "
    "ваш ваша ваші мій моя мої ж же би б вже ще лише тільки також теж щось хтось скажи розкажи коротко "
    "и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне было "
    "вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него до вас "
    "какие какой какая каких где кто это эти этот эта".split()
)


@dataclass
class MemoryHit:
    id: str
    kind: str
    score: float
    content: str
    meta: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    channel_id: str | None = None


@dataclass(frozen=True)
class _Term:
    """One query word as the text search forms it may take in an entry: parsed with the
    query language's configuration, as written (`simple`), and its dictionary form; and,
    in a language Postgres cannot stem, its stem as a prefix (the fuzzy form)."""

    word: str
    forms: tuple[tuple[str, str], ...]  # (configuration, lexeme)
    prefix: str | None = None

    def sql(self) -> tuple[str, list[str]]:
        # The lexemes are quoted, so to_tsquery never parses an operator in them.
        return "(" + " || ".join(f"to_tsquery('{cfg}'::regconfig, %s)" for cfg, _ in self.forms) + ")", [
            f"'{lex}'" for _, lex in self.forms
        ]

    def prefix_sql(self) -> tuple[str, list[str]]:
        return "to_tsquery('simple'::regconfig, %s)", [f"'{self.prefix}':*"]


# The fuzzy form: a word of a language without a Postgres stemmer, cut to its first
# letters, matches its other inflected forms as a prefix (хакатоні -> хакат:* finds
# хакатон, хакатону), words the dictionary does not know included. Cut by the length of a
# long Ukrainian ending, never below PREFIX_MIN letters; it weighs PREFIX_WEIGHT of an exact
# match because a prefix also finds unrelated words that start alike.
PREFIX_MIN = 4
PREFIX_CUT = 3
PREFIX_WEIGHT = 0.5


def fuzzy_prefix(word: str) -> str | None:
    if len(word) < PREFIX_MIN + 1 or word.isdigit() or not word.isalpha():
        return None
    return word[: max(PREFIX_MIN, len(word) - PREFIX_CUT)]


@dataclass
class _Scope:
    template: str  # column references as {a}col, so the filter can be applied to any alias
    params: list[Any]

    @property
    def where(self) -> str:
        return self.template.format(a="")

    def on(self, alias: str) -> str:
        return self.template.format(a=f"{alias}.")


def _scope(
    agent_id: str | None,
    microdao_id: str | None,
    channel_id: str | None,
    kinds: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    meta: dict[str, Any] | None = None,
) -> _Scope:
    p = "{a}"
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    if agent_id is not None:
        clauses.append(f"{p}agent_id = %s")
        params.append(agent_id)
    if microdao_id is not None:
        clauses.append(f"{p}microdao_id = %s")
        params.append(microdao_id)
    if channel_id is not None:
        clauses.append(f"{p}channel_id = %s")
        params.append(channel_id)
    if kinds:
        clauses.append(f"{p}kind = ANY(%s)")
        params.append(list(kinds))
    if since is not None:
        clauses.append(f"{p}occurred_at >= %s")
        params.append(since)
    if until is not None:
        clauses.append(f"{p}occurred_at < %s")
        params.append(until)
    if meta:
        clauses.append(f"{p}meta @> %s::jsonb")
        params.append(json.dumps(meta))
    return _Scope(" AND ".join(clauses), params)


def query_terms(query: str, lang: str | None = None) -> list[_Term]:
    """The query's content words, each with the forms it is looked up in. The query's own
    language (`lang`, or detected) chooses the configuration and the lemmas; the `simple`
    form finds the word in entries of any other language (names, codes, borrowed words).
    """
    lang = language.detect(query) if lang is None else lang
    config = fts_config(lang)
    lemmatize = language.needs_lemmas(lang)
    # Languages Postgres stems (english, russian, ...) get no fuzzy form: their stemmer does it.
    fuzzy = PREFIX_WEIGHT > 0 and fts_config(lang) == "simple"
    seen: dict[str, None] = {}
    for match in _WORD.finditer(query.lower()):
        word = match.group(0)
        if word in _STOP or word in _STOP_UK_RU or len(word) > 64:
            continue
        seen.setdefault(word, None)
    terms = []
    for word in list(seen)[:MAX_TERMS]:
        forms = {(config, word): None, ("simple", word): None}
        if lemmatize and not word.isdigit():
            base = language.lemma(word, lang)
            if _WORD.fullmatch(base):  # a dictionary form with an apostrophe or a space is not one lexeme
                forms[(FTS_LEMMAS, base)] = None
        terms.append(_Term(word, tuple(forms), fuzzy_prefix(word) if fuzzy else None))
    return terms


def _lexical(cursor, scope: _Scope, terms: list[_Term], depth: int) -> tuple[list[tuple[str, float]], int]:
    """(id, score) by IDF-weighted term matches, best first; also returns the scope's size."""
    if not terms:
        cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE {scope.where}", scope.params)
        return [], cursor.fetchone()[0]
    columns, term_params, dfs, weights, any_parts = [], [], [], [], []
    for i, term in enumerate(terms):
        sql, params = term.sql()
        columns.append(f"{sql} AS q{i}")
        term_params.extend(params)
        dfs.append(f"count(*) FILTER (WHERE search @@ tq.q{i}) AS d{i}")
        any_parts.append(f"tq.q{i}")
        exact = f"WHEN search @@ tq.q{i} THEN ln(1 + (st.n - st.d{i} + 0.5) / (st.d{i} + 0.5))"
        if term.prefix:
            sql, params = term.prefix_sql()
            columns.append(f"{sql} AS p{i}")
            term_params.extend(params)
            dfs.append(f"count(*) FILTER (WHERE search @@ (tq.q{i} || tq.p{i})) AS e{i}")
            any_parts.append(f"tq.p{i}")
            fuzzy = f"WHEN search @@ tq.p{i} THEN {float(PREFIX_WEIGHT)} * ln(1 + (st.n - st.e{i} + 0.5) / (st.e{i} + 0.5))"
            weights.append(f"(CASE {exact} {fuzzy} ELSE 0 END)")
        else:
            weights.append(f"(CASE {exact} ELSE 0 END)")
    any_q = "(" + " || ".join(any_parts) + ")"
    sql = (
        f"WITH tq AS MATERIALIZED (SELECT {', '.join(columns)}), "
        f"scope AS MATERIALIZED (SELECT id, search FROM {TABLE} WHERE {scope.where}), "
        f"st AS (SELECT count(*) AS n, {', '.join(dfs)} FROM scope CROSS JOIN tq) "
        f"SELECT s.id, ({' + '.join(weights)}) + 0.1 * ts_rank(search, {any_q}, 1) AS score, st.n "
        f"FROM scope s CROSS JOIN st CROSS JOIN tq WHERE search @@ {any_q} ORDER BY score DESC, s.id LIMIT %s"
    )
    cursor.execute(sql, [*term_params, *scope.params, depth])
    rows = cursor.fetchall()
    if rows:
        return [(r[0], float(r[1])) for r in rows], rows[0][2]
    cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE {scope.where}", scope.params)
    return [], cursor.fetchone()[0]


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


def _dense(
    cursor, scope: _Scope, model: str, dims: int, vector: list[float], depth: int, scope_size: int
) -> list[tuple[str, float]]:
    cast = f"embedding::vector({int(dims)})"
    literal = _vector_literal(vector)
    if scope_size <= EXACT_SEARCH_MAX:
        # The `+ 0` hides the ordering from the HNSW index: an exact scan of the scope.
        cursor.execute(
            f"SELECT id, d FROM (SELECT id, ({cast} <=> %s::vector({int(dims)})) + 0 AS d FROM {TABLE} "
            f"WHERE embedding_model = %s AND {scope.where}) x ORDER BY d LIMIT %s",
            [literal, model, *scope.params, depth],
        )
        return _related(cursor.fetchall())
    # Large scope: the HNSW index, with a wider candidate list because the scope filter is
    # applied after the scan (and pgvector >= 0.8 keeps scanning until enough rows pass).
    # Without iterative scans (pgvector < 0.8) the filter is applied to ef_search candidates
    # only: widen the list by the scope's share of the table, up to pgvector's maximum.
    cursor.execute(f"SELECT GREATEST(reltuples, 1) FROM pg_class WHERE relname = '{TABLE}'")
    total = float(cursor.fetchone()[0])
    share = max(min(1.0, scope_size / total), 1e-6)
    cursor.execute("SET LOCAL hnsw.ef_search = %s", [int(max(HNSW_EF_SEARCH, min(1000, depth / share)))])
    if supports_iterative_scan():
        cursor.execute("SET LOCAL hnsw.iterative_scan = 'relaxed_order'")
    cursor.execute(
        f"SELECT id, {cast} <=> %s::vector({int(dims)}) FROM {TABLE} WHERE embedding_model = %s AND {scope.where} "
        f"ORDER BY {cast} <=> %s::vector({int(dims)}) LIMIT %s",
        [literal, model, *scope.params, literal, depth],
    )
    return _related(cursor.fetchall())


def _related(rows: list[tuple]) -> list[tuple[str, float]]:
    # (id, cosine similarity). A vector no closer than orthogonal says nothing about relevance.
    # A row without a vector (its text just changed) has no distance.
    return [(r[0], 1.0 - float(r[1])) for r in rows if r[1] is not None and r[1] < 1.0]


def _neighbours(cursor, ids: list[str], scope: _Scope) -> dict[str, list[str]]:
    """For each id, the entries just before and after it in the same agent and channel,
    within the query's scope (a neighbour outside the filters is not lent anything).
    Entries without a channel have no turn order to speak of. Each lookup is one step on
    the (agent_id, channel_id, occurred_at, id) index.
    """
    if not ids:
        return {}
    cursor.execute(
        f"""
        SELECT c.id, n.id FROM {TABLE} c
        CROSS JOIN LATERAL (
            (SELECT p.id FROM {TABLE} p WHERE {scope.on("p")} AND p.agent_id = c.agent_id AND p.channel_id = c.channel_id
               AND (p.occurred_at, p.id) < (c.occurred_at, c.id) ORDER BY p.occurred_at DESC, p.id DESC LIMIT 1)
            UNION ALL
            (SELECT f.id FROM {TABLE} f WHERE {scope.on("f")} AND f.agent_id = c.agent_id AND f.channel_id = c.channel_id
               AND (f.occurred_at, f.id) > (c.occurred_at, c.id) ORDER BY f.occurred_at, f.id LIMIT 1)
        ) n
        WHERE c.id = ANY(%s) AND c.channel_id IS NOT NULL
        """,
        [*scope.params, *scope.params, ids],
    )
    result: dict[str, list[str]] = {}
    for cid, nid in cursor.fetchall():
        result.setdefault(cid, []).append(nid)
    return result


def combine(lexical: list[tuple[str, float]], dense: list[tuple[str, float]], alpha: float = 0.5) -> dict[str, float]:
    """A convex combination of the two sides' normalized scores: the lexical score over its
    best, the cosine similarity min-max scaled over the candidates. Unlike rank fusion it
    keeps how far apart candidates are, so a strong match on one side is not pulled level
    with a weak one on the other. Equal weights: neither side is tuned to a data set.
    """
    scores: dict[str, float] = {}
    if lexical:
        best = max(score for _, score in lexical) or 1.0
        for entry_id, score in lexical:
            scores[entry_id] = alpha * score / best
    if dense:
        sims = [sim for _, sim in dense]
        low, high = min(sims), max(sims)
        for entry_id, sim in dense:
            scaled = (sim - low) / (high - low) if high - low > 1e-9 else 1.0
            scores[entry_id] = scores.get(entry_id, 0.0) + (1 - alpha) * scaled
    return scores


def memory_query(
    *,
    agent_id: str,
    microdao_id: str | None = None,
    channel_id: str | None = None,
    query: str,
    limit: int = 5,
    kinds: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
    neighbour_weight: float | None = None,
    meta: dict[str, Any] | None = None,
    min_score: float | None = None,
    lang: str | None = None,
) -> list[MemoryHit]:
    """The top `limit` memories of one agent's scope for `query`, best first, score 0..1.
    `meta` keeps entries whose meta contains those key/value pairs; `min_score` drops hits
    scoring below it; `lang` is the query's language (detected when not given).
    """
    started, status = time.perf_counter(), "error"
    try:
        with tracing.span("memory.query", {"gen_ai.agent.id": agent_id, "daarion.memory.limit": limit}) as span:
            if not isinstance(agent_id, str) or not agent_id.strip():
                raise ValidationFailed(
                    "agent_id is required", details=[{"path": "agent_id", "message": "must be a non-empty string"}]
                )
            meta = meta_filter_clean(meta, "meta")
            if min_score is not None and not 0 <= float(min_score) <= 1:
                raise ValidationFailed(
                    "min_score must be between 0 and 1", details=[{"path": "min_score", "message": "must be between 0 and 1"}]
                )
            hits = _hybrid(
                agent_id=agent_id,
                microdao_id=microdao_id,
                channel_id=channel_id,
                query=query,
                limit=limit,
                kinds=kinds,
                since=since,
                until=until,
                model=model,
                neighbour_weight=neighbour_weight,
                meta=meta,
                lang=lang,
            )
            if min_score is not None:
                hits = [hit for hit in hits if hit.score >= min_score]
            tracing.set_attributes(span, {"daarion.memory.hits": len(hits)})
        status = "ok"
        return hits
    finally:
        metrics.observe_memory_query(status, time.perf_counter() - started)


def meta_filter_clean(meta: Any, path: str) -> dict[str, Any] | None:
    """A meta filter is an object of key -> scalar (string, number, boolean or null): an
    entry matches when its meta holds each pair (JSON containment)."""
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise ValidationFailed(
            f"{path} must be an object", details=[{"path": path, "message": "must be an object of key -> value"}]
        )
    for key, value in meta.items():
        if not isinstance(key, str) or not key or len(key) > 128 or "\x00" in key:
            raise ValidationFailed(
                f"{path} has a bad key", details=[{"path": f"{path}.{key}", "message": "keys are 1-128 characters"}]
            )
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValidationFailed(
                f"{path}.{key} must be a scalar",
                details=[{"path": f"{path}.{key}", "message": "must be a string, number, boolean or null"}],
            )
        if isinstance(value, str) and "\x00" in value:
            raise ValidationFailed(f"{path}.{key} holds NUL", details=[{"path": f"{path}.{key}", "message": "must not hold NUL"}])
    return meta or None


def memory_search_staff(*, query: str, agent_id: str | None = None, limit: int = 100) -> list[MemoryHit]:
    """The same hybrid query for operators (admin): across every agent unless one is given."""
    return _hybrid(
        agent_id=agent_id or None,
        microdao_id=None,
        channel_id=None,
        query=query,
        limit=limit,
        kinds=None,
        since=None,
        until=None,
        model=None,
        neighbour_weight=0.0,
        max_limit=200,
    )


def source_of(channel_id: str | None, microdao_id: str) -> str:
    """`channel:<id>` for an entry of a channel (once: ids that already say `channel:` are
    kept as they are), else its microDAO."""
    if not channel_id:
        return microdao_id
    return channel_id if channel_id.startswith("channel:") else f"channel:{channel_id}"


def _hybrid(
    *,
    agent_id,
    microdao_id,
    channel_id,
    query,
    limit,
    kinds,
    since,
    until,
    model,
    neighbour_weight,
    max_limit: int = MAX_LIMIT,
    sides: tuple[str, ...] = ("lexical", "dense"),
    meta: dict | None = None,
    lang: str | None = None,
) -> list[MemoryHit]:
    # `sides` lets the benchmark measure each ranking alone; callers always use both.
    if not isinstance(query, str) or not query.strip():
        raise ValidationFailed("query must not be empty", details=[{"path": "query", "message": "must be a non-empty string"}])
    if len(query) > MAX_QUERY_CHARS:
        raise ValidationFailed(
            f"query is over {MAX_QUERY_CHARS} characters",
            details=[{"path": "query", "message": f"at most {MAX_QUERY_CHARS} characters"}],
        )
    if since is not None and until is not None and since >= until:
        raise ValidationFailed("since must be before until", details=[{"path": "since", "message": "must be before until"}])
    if lang is not None and language.clean_lang(lang) is None:
        raise ValidationFailed(
            "lang must be a language code", details=[{"path": "lang", "message": "an ISO 639-1 code such as en or uk"}]
        )
    limit = max(1, min(int(limit), max_limit))
    depth = max(50, limit * 4)
    weight = NEIGHBOUR_WEIGHT if neighbour_weight is None else neighbour_weight
    scope = _scope(agent_id, microdao_id, channel_id, kinds, since, until, meta)
    spec = selectors.model_spec(model) if model else selectors.active_model_spec()
    vector: list[float] | None = None
    pending: Future | None = None
    try:
        embedder: Embedder | None = get_embedder(spec)
    except EmbeddingError:
        logger.warning("no query embedder; answering by text only", exc_info=True)
        embedder = None
    if embedder is not None and getattr(embedder, "slow", False):
        # The copied context keeps the trace and the calling token (usage of a proxy model).
        pending = _query_embeddings.submit(contextvars.copy_context().run, _query_vector, embedder, query)
    elif embedder is not None:
        vector = _query_vector(embedder, query)
    terms = query_terms(query, language.clean_lang(lang) if lang is not None else None)

    with transaction.atomic(), connection.cursor() as cursor:
        lexical, scope_size = _lexical(cursor, scope, terms, depth)
        if pending is not None:
            vector = pending.result()
        dense = (
            _dense(cursor, scope, spec.name, spec.dimensions, vector, depth, scope_size)
            if vector is not None and scope_size
            else []
        )
        if sides == ("lexical",):
            scores, max_score = combine(lexical, [], alpha=1.0), 1.0
        elif sides == ("dense",):
            scores, max_score = combine([], dense, alpha=0.0), 1.0
        else:
            scores, max_score = combine(lexical, dense), 1.0
        if weight > 0 and scores:
            top = sorted(scores, key=lambda entry_id: scores[entry_id], reverse=True)[: max(limit * 3, 20)]
            lent: dict[str, float] = {}
            for cid, nids in _neighbours(cursor, top, scope).items():
                for nid in nids:
                    lent[nid] = max(lent.get(nid, 0.0), weight * scores[cid])
            for nid, value in lent.items():
                scores[nid] = scores.get(nid, 0.0) + value
            max_score *= 1 + weight
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
        rows = {r[0]: r for r in _fetch(cursor, [entry_id for entry_id, _ in best])}
    hits = []
    for entry_id, score in best:
        row = rows.get(entry_id)
        if row is None:
            continue
        _, kind, text, meta, occurred_at, row_channel, row_microdao = row
        hit_meta = dict((json.loads(meta) if isinstance(meta, str) else meta) or {})
        hit_meta.setdefault("source", source_of(row_channel, row_microdao))
        hit_meta.setdefault("timestamp", occurred_at.isoformat())
        hits.append(MemoryHit(entry_id, kind, round(min(1.0, score / max_score), 4), text, hit_meta, occurred_at, row_channel))
    return hits


def _query_vector(embedder: Embedder, query: str) -> list[float] | None:
    try:
        return embedder.embed([query], purpose="query")[0]
    except EmbeddingError:
        # The text side still answers; a query must not fail because the embedder is down.
        logger.warning("query embedding failed; answering by text only", exc_info=True)
        return None


def _fetch(cursor, ids: list[str]) -> list[tuple]:
    if not ids:
        return []
    cursor.execute(f"SELECT id, kind, text, meta, occurred_at, channel_id, microdao_id FROM {TABLE} WHERE id = ANY(%s)", [ids])
    # Django registers no jsonb loader on raw cursors: meta arrives as text.
    return cursor.fetchall()


async def amemory_query(**kwargs: Any) -> list[MemoryHit]:
    from apps.memory.services import closing_connection

    return await sync_to_async(closing_connection(memory_query), thread_sensitive=False)(**kwargs)

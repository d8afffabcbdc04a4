"""Per-model partial HNSW indexes over the shared, dimension-less embedding column.

pgvector indexes need a fixed dimension, so each embedding model gets its own expression
index `(embedding::vector(N))` restricted to its rows, as pgvector's README shows; queries
must use the same cast and predicate to be served by it.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from django.db import connection

TABLE = "memory_memoryentry"
# A wider construction list than pgvector's default (64) buys recall on lexical (hash)
# vectors, whose neighbours are many near-ties, for a slower build (docs/BENCHMARKS.md).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128


def index_name_for(model_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", model_name.lower()).strip("_")[:30]
    digest = hashlib.sha1(model_name.encode()).hexdigest()[:8]
    return f"memory_hnsw_{slug}_{digest}"


def create_index_sql(model_name: str, dimensions: int, *, concurrently: bool = False) -> tuple[str, list]:
    # Identifiers cannot be parameters; the name is our own slug and dimensions an int.
    name = index_name_for(model_name)
    how = "CONCURRENTLY " if concurrently else ""
    sql = (
        f"CREATE INDEX {how}IF NOT EXISTS {name} ON {TABLE} "
        f"USING hnsw ((embedding::vector({int(dimensions)})) vector_cosine_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) "
        f"WHERE embedding_model = %s"
    )
    return sql, [model_name]


def ensure_index(model_name: str, dimensions: int) -> None:
    """Creates the model's index if missing. Concurrently when outside a transaction, so a
    production table is not locked while a new model's index builds.
    """
    concurrently = connection.get_autocommit()
    sql, params = create_index_sql(model_name, dimensions, concurrently=concurrently)
    # CREATE INDEX does not take bind parameters in its predicate: inline the quoted literal.
    literal = "'" + model_name.replace("'", "''") + "'"
    with connection.cursor() as cursor:
        cursor.execute(sql.replace("%s", literal))


def drop_index(model_name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {index_name_for(model_name)}")


@lru_cache(maxsize=1)
def pgvector_version() -> tuple[int, ...]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if not row:
        return (0,)
    return tuple(int(part) for part in re.findall(r"\d+", row[0]))


def supports_iterative_scan() -> bool:
    return pgvector_version() >= (0, 8)

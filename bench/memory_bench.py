"""Memory orchestrator benchmarks: latency and index recall at scale, and retrieval quality
on LoCoMo. Figures go to bench/results/memory_*.json (and into docs/BENCHMARKS.md by hand).

    # its own embedded database, so dev data is untouched:
    .venv/bin/python -m devtools.devstack exec --data-dir .data/memory-bench -- \\
        .venv/bin/python bench/memory_bench.py scale [--n 100000 --agents 100]
    .venv/bin/python -m devtools.devstack exec --data-dir .data/memory-bench -- \\
        .venv/bin/python bench/memory_bench.py locomo [--models hash,local]
    .venv/bin/python -m devtools.devstack exec --data-dir .data/memory-bench -- \\
        .venv/bin/python bench/memory_bench.py multilingual [--models hash,local]

scale:  N synthetic entries over A agents (hash-model vectors), bulk-loaded with COPY and
        indexed after; p50/p95 of `memory_query` for one agent's scope (the hash query
        embedding costs ~0.1 ms, the rest is Postgres), store throughput through the
        service, and recall@10 of the HNSW index against exact search, unscoped and scoped.
locomo: every turn of the five development conversations stored as one agent's memories
        (one agent per conversation), each question of categories 1-4 asked as a memory
        query; a hit when an evidence dia_id is in the top k (recall@k), overall and per
        category, for each embedding model and for each side of the fusion alone.
multilingual: the Ukrainian retrieval set (apps/memory/tests/data/ukrainian_retrieval.json)
        stored as one agent's memories; for each question, whether its memory ranks first
        (top-1), in the top 3, and the mean reciprocal rank; for the shipped hybrid, each side
        alone, and `english_only`: the entries and queries indexed as before languages were
        told apart (english configuration, no lemmas).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")
os.environ.setdefault("DAARION_LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from apps.memory import language, search, selectors, services  # noqa: E402
from apps.memory.models import MemoryEntry  # noqa: E402
from apps.memory.embeddings import ModelSpec, get_embedder  # noqa: E402
from apps.memory.embeddings.local import is_available as local_available  # noqa: E402
from apps.memory.vector_index import create_index_sql, index_name_for, pgvector_version  # noqa: E402

RESULTS = BASE_DIR / "bench" / "results"
UK_SET = BASE_DIR / "apps" / "memory" / "tests" / "data" / "ukrainian_retrieval.json"
LOCOMO_DIR = Path(os.environ.get("LOCOMO_DIR", BASE_DIR.parent / "shared" / "data" / "locomo"))
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _prepare() -> None:
    call_command("migrate", verbosity=0)
    services.embedding_models_ensure_builtin()
    services.embedding_model_activate(name="hash")
    selectors.invalidate_models()


def _write(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"memory_{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path.relative_to(BASE_DIR)}", file=sys.stderr)
    return path


# --- scale ---------------------------------------------------------------------------------


def _vocabulary() -> list[str]:
    words: dict[str, int] = {}
    for path in sorted(LOCOMO_DIR.glob("conv-*.json")):
        data = json.loads(path.read_text())
        for key, turns in data.items():
            if key.startswith("session_") and isinstance(turns, list):
                for turn in turns:
                    for word in re.findall(r"[a-z]+", turn.get("text", "").lower()):
                        words[word] = words.get(word, 0) + 1
    ranked = sorted(words, key=words.get, reverse=True)
    return ranked or [f"w{i}" for i in range(5000)]


def _sentence(rng: random.Random, vocab: list[str], weights: list[float]) -> str:
    return " ".join(rng.choices(vocab, weights=weights, k=rng.randint(8, 30)))


def _copy_rows(rows: list[tuple]) -> None:
    columns = (
        "id, agent_id, microdao_id, channel_id, kind, content, text, meta, occurred_at, embedding, "
        "embedding_model, embedding_status, embedding_error, created_at, lang, lemmas, version"
    )
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY memory_memoryentry ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def scale(n: int, agents: int, queries: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    vocab = _vocabulary()[:8000]
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(vocab))]  # Zipf-like word use
    spec = ModelSpec("hash", "hash", 256)
    embedder = get_embedder(spec)
    result: dict = {"n": n, "agents": agents, "pgvector": ".".join(map(str, pgvector_version())), "model": "hash/256"}

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE memory_memoryentry")
        cursor.execute(f"DROP INDEX IF EXISTS {index_name_for('hash')}")
        cursor.execute("DROP INDEX IF EXISTS memory_entry_fts")

    t0 = time.perf_counter()
    texts = [_sentence(rng, vocab, weights) for _ in range(n)]
    vectors = embedder.embed(texts)
    result["embed_hash_per_s"] = round(n / (time.perf_counter() - t0))

    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    t0 = time.perf_counter()
    rows = []
    for i, (text, vector) in enumerate(zip(texts, vectors)):
        agent = f"agent:bench-{i % agents}"
        when = base + timedelta(seconds=i)
        lang = language.detect(text)
        rows.append(
            (
                f"mem-b{i:09d}",
                agent,
                "microdao:bench",
                f"ch-{i % agents}-{(i // agents) % 10}",
                "conversation",
                json.dumps({"text": text}),
                text,
                "{}",
                when,
                "[" + ",".join(f"{x:.6g}" for x in vector) + "]",
                "hash",
                "ready",
                "",
                when,
                lang,
                language.lemmas(text, lang),
                1,
            )
        )
    with transaction.atomic():
        _copy_rows(rows)
    result["copy_load_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        sql, _ = create_index_sql("hash", 256)
        cursor.execute(sql.replace("%s", "'hash'"))
        result["hnsw_build_s"] = round(time.perf_counter() - t0, 2)
        t1 = time.perf_counter()
        cursor.execute("CREATE INDEX IF NOT EXISTS memory_entry_fts ON memory_memoryentry USING gin (search)")
        result["gin_build_s"] = round(time.perf_counter() - t1, 2)
        cursor.execute("ANALYZE memory_memoryentry")
    print(f"loaded {n} rows: {result}", file=sys.stderr)

    # Query latency for one agent's scope, through the real service.
    def _query_text() -> tuple[str, str]:
        i = rng.randrange(n)
        words = texts[i].split()
        start = rng.randrange(max(1, len(words) - 5))
        return f"agent:bench-{i % agents}", " ".join(words[start : start + rng.randint(3, 6)])

    for _ in range(20):  # warm-up: connection, plans, caches
        agent, text = _query_text()
        search.memory_query(agent_id=agent, query=text, limit=10)
    latencies = []
    for _ in range(queries):
        agent, text = _query_text()
        t0 = time.perf_counter()
        search.memory_query(agent_id=agent, query=text, limit=10)
        latencies.append((time.perf_counter() - t0) * 1000)
    result["query_ms"] = {
        "p50": round(_pct(latencies, 0.5), 2),
        "p95": round(_pct(latencies, 0.95), 2),
        "mean": round(statistics.fmean(latencies), 2),
        "queries": queries,
        "scope_size": n // agents,
    }
    print(f"query: {result['query_ms']}", file=sys.stderr)
    if local_available():
        result["query_ms_with_local_embedding"] = _query_with_local_embedding(_query_text, queries)
        print(f"query with the local model's embedding: {result['query_ms_with_local_embedding']}", file=sys.stderr)

    # Store throughput through the service (write path: validate, insert, enqueue on commit).
    t0 = time.perf_counter()
    stores = 500
    for i in range(stores):
        services.memory_store(
            agent_id=f"agent:bench-{i % agents}",
            microdao_id="microdao:bench",
            kind="conversation",
            content={"user_message": _sentence(rng, vocab, weights), "agent_reply": _sentence(rng, vocab, weights)},
        )
    result["store_per_s_single"] = round(stores / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    for b in range(10):
        services.memory_store_bulk(
            items=[
                {
                    "agent_id": f"agent:bench-{(b * 100 + j) % agents}",
                    "microdao_id": "microdao:bench",
                    "kind": "kb",
                    "content": {"text": _sentence(rng, vocab, weights)},
                }
                for j in range(100)
            ]
        )
    result["store_per_s_bulk100"] = round(1000 / (time.perf_counter() - t0))
    print(f"store: {result['store_per_s_single']}/s single, {result['store_per_s_bulk100']}/s bulk", file=sys.stderr)

    result["recall"] = _index_recall(rng, texts, embedder, agents, min(queries, 100))
    return result


def _query_with_local_embedding(query_text, queries: int) -> dict:
    """memory_query's latency when its embedding is MiniLM's on the CPU.

    The table's vectors stay hash/256 (embedding 100k entries with MiniLM would take most of
    an hour here), so the active model's embedder is swapped for a stand-in that pays MiniLM's
    embedding of the query text and then searches with the text's hash vector. `overlapped` is
    the service as it runs (a slow embedder's work beside the lexical SQL); `sequential` is the
    same stand-in marked fast, so the embedding runs first (the service before the overlap).
    Both take turns in the same run."""
    from apps.memory import embeddings

    local = get_embedder(ModelSpec("local", "local", 384))
    local.embed(["warm-up"] * 4)
    spec = selectors.active_model_spec()
    hashed = get_embedder(spec)
    slot = next(key for key, value in embeddings._instances.items() if value is hashed)

    class MiniLmCost:
        def __init__(self, slow: bool) -> None:
            self.spec, self.slow = spec, slow

        def embed(self, texts, *, purpose: str = "document"):  # noqa: ANN001, ANN202
            local.embed(texts, purpose=purpose)
            return hashed.embed(texts, purpose=purpose)

    stand_ins = {"overlapped": MiniLmCost(slow=True), "sequential": MiniLmCost(slow=False)}
    timings: dict[str, list[float]] = {name: [] for name in stand_ins}
    embed_only: list[float] = []
    try:
        for i in range(queries * 2):
            name = "overlapped" if i % 2 == 0 else "sequential"
            embeddings._instances[slot] = stand_ins[name]
            agent, text = query_text()
            if name == "sequential":
                t0 = time.perf_counter()
                local.embed([text])
                embed_only.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            search.memory_query(agent_id=agent, query=text, limit=10)
            timings[name].append((time.perf_counter() - t0) * 1000)
    finally:
        embeddings._instances[slot] = hashed
    out = {name: {"p50": round(_pct(values, 0.5), 2), "p95": round(_pct(values, 0.95), 2)} for name, values in timings.items()}
    return {
        **out["overlapped"],
        "sequential": out["sequential"],
        "embedding_p50": round(_pct(embed_only, 0.5), 2),
        "embedding_p95": round(_pct(embed_only, 0.95), 2),
        "queries": queries,
    }


def _ids(cursor, sql: str, params: list) -> list[str]:
    cursor.execute(sql, params)
    return [r[0] for r in cursor.fetchall()]


def _index_recall(rng: random.Random, texts: list[str], embedder, agents: int, queries: int) -> dict:
    """recall@10 of the HNSW index against exact search, unscoped and within one agent."""
    cast = "embedding::vector(256)"
    out: dict = {}
    samples = []
    for _ in range(queries):
        i = rng.randrange(len(texts))
        words = texts[i].split()
        samples.append((f"agent:bench-{i % agents}", " ".join(rng.sample(words, min(len(words), 5)))))
    vectors = embedder.embed([q for _, q in samples])
    literal = ["[" + ",".join(f"{x:.6g}" for x in v) + "]" for v in vectors]

    exact_all, exact_scoped = [], []
    with transaction.atomic(), connection.cursor() as cursor:
        for (agent, _), lit in zip(samples, literal):
            exact_all.append(
                _ids(
                    cursor,
                    f"SELECT id FROM memory_memoryentry WHERE embedding_model = 'hash' ORDER BY ({cast} <=> %s::vector(256)) + 0 LIMIT 10",
                    [lit],
                )
            )
            exact_scoped.append(
                _ids(
                    cursor,
                    f"SELECT id FROM memory_memoryentry WHERE embedding_model = 'hash' AND agent_id = %s ORDER BY ({cast} <=> %s::vector(256)) + 0 LIMIT 10",
                    [agent, lit],
                )
            )

    def _recall(found: list[list[str]], truth: list[list[str]]) -> float:
        return round(statistics.fmean(len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth)), 4)

    for ef in (40, 100, 200, 400):
        found, times = [], []
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL hnsw.ef_search = %s", [ef])
            for lit in literal:
                t0 = time.perf_counter()
                found.append(
                    _ids(
                        cursor,
                        f"SELECT id FROM memory_memoryentry WHERE embedding_model = 'hash' ORDER BY {cast} <=> %s::vector(256) LIMIT 10",
                        [lit],
                    )
                )
                times.append((time.perf_counter() - t0) * 1000)
        out[f"unscoped_hnsw_ef{ef}"] = {
            "recall_at_10": _recall(found, exact_all),
            "p50_ms": round(_pct(times, 0.5), 2),
            "p95_ms": round(_pct(times, 0.95), 2),
        }
        print(f"unscoped ef={ef}: {out[f'unscoped_hnsw_ef{ef}']}", file=sys.stderr)

    # Scoped: the production path (exact within a small scope) and the index path forced.
    for label, exact_max in (("scoped_production_path", search.EXACT_SEARCH_MAX), ("scoped_hnsw_forced", 0)):
        saved = search.EXACT_SEARCH_MAX
        search.EXACT_SEARCH_MAX = exact_max
        found, times = [], []
        try:
            for (agent, _), vector in zip(samples, vectors):
                scope = search._scope(agent, None, None, None, None, None)
                with transaction.atomic(), connection.cursor() as cursor:
                    size = len(texts) // agents
                    t0 = time.perf_counter()
                    found.append([i for i, _ in search._dense(cursor, scope, "hash", 256, vector, 10, size)])
                    times.append((time.perf_counter() - t0) * 1000)
        finally:
            search.EXACT_SEARCH_MAX = saved
        out[label] = {
            "recall_at_10": _recall(found, exact_scoped),
            "p50_ms": round(_pct(times, 0.5), 2),
            "p95_ms": round(_pct(times, 0.95), 2),
            "iterative_scan": search.supports_iterative_scan(),
        }
        print(f"{label}: {out[label]}", file=sys.stderr)
    return out


# --- LoCoMo --------------------------------------------------------------------------------


def _parse_when(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=timezone.utc)


def _evidence(raw: list) -> set[str]:
    ids: set[str] = set()
    for item in raw or []:
        ids.update(re.findall(r"D\d+:\d+", str(item)))
    return ids


def _load_conversation(path: Path, agent: str, spec: ModelSpec) -> int:
    data = json.loads(path.read_text())
    services.memory_forget(agent_id=agent)
    items = []
    sessions = sorted((int(m.group(1)) for k in data if (m := re.fullmatch(r"session_(\d+)", k))))
    for number in sessions:
        turns = data[f"session_{number}"]
        when = _parse_when(data[f"session_{number}_date_time"])
        for j, turn in enumerate(turns):
            content = {"speaker": turn["speaker"], "text": turn["text"]}
            if turn.get("blip_caption"):
                content["image"] = turn["blip_caption"]  # a shared photo, as its caption
            items.append(
                {
                    "agent_id": agent,
                    "microdao_id": "microdao:locomo",
                    "channel_id": f"session-{number}",
                    "kind": "conversation",
                    "content": content,
                    "meta": {"dia_id": turn["dia_id"], "session": number},
                    "occurred_at": when + timedelta(seconds=j),
                }
            )
    ids = []
    for start in range(0, len(items), 500):
        ids += [e.id for e, _ in services.memory_store_bulk(items=items[start : start + 500])]
    for start in range(0, len(ids), 256):
        services.memory_embed_entries(entry_ids=ids[start : start + 256], spec=spec)
    return len(ids)


CONFIGS = {
    "hybrid": {"sides": ("lexical", "dense"), "neighbour_weight": None},
    "hybrid_no_neighbours": {"sides": ("lexical", "dense"), "neighbour_weight": 0.0},
    "lexical_only": {"sides": ("lexical",), "neighbour_weight": 0.0},
    "dense_only": {"sides": ("dense",), "neighbour_weight": 0.0},
}


def locomo(models: list[str], ks: tuple[int, ...] = (5, 10)) -> dict:
    specs = {"hash": ModelSpec("hash", "hash", 256), "local": ModelSpec("local", "local", 384)}
    out: dict = {
        "conversations": [],
        "definition": "a question is a hit at k when any of its evidence dia_ids is among the top k results; categories 1-4",
    }
    files = sorted(LOCOMO_DIR.glob("conv-*.json"))
    for name in models:
        if name == "local" and not local_available():
            out[name] = {"skipped": "requirements-local.txt is not installed"}
            continue
        spec = specs[name]
        t0 = time.perf_counter()
        questions = []
        for path in files:
            agent = f"locomo-{name}:{path.stem}"
            count = _load_conversation(path, agent, spec)
            if name == models[0]:
                out["conversations"].append({"file": path.name, "turns": count})
            for qa in json.loads(path.read_text())["qa"]:
                if qa.get("category") in CATEGORIES and _evidence(qa.get("evidence")):
                    questions.append((agent, qa))
        load_s = time.perf_counter() - t0
        per_config = {}
        for label, cfg in CONFIGS.items():
            hits = {k: [] for k in ks}
            by_cat: dict[str, dict[int, list[int]]] = {c: {k: [] for k in ks} for c in CATEGORIES.values()}
            frac = {k: [] for k in ks}
            t0 = time.perf_counter()
            for agent, qa in questions:
                results = search._hybrid(
                    agent_id=agent,
                    microdao_id=None,
                    channel_id=None,
                    query=qa["question"],
                    limit=max(ks),
                    kinds=None,
                    since=None,
                    until=None,
                    model=spec.name,
                    neighbour_weight=cfg["neighbour_weight"],
                    sides=cfg["sides"],
                )
                found = [h.meta.get("dia_id") for h in results]
                evidence = _evidence(qa["evidence"])
                for k in ks:
                    hit = int(bool(evidence & set(found[:k])))
                    hits[k].append(hit)
                    by_cat[CATEGORIES[qa["category"]]][k].append(hit)
                    frac[k].append(len(evidence & set(found[:k])) / len(evidence))
            elapsed = time.perf_counter() - t0
            per_config[label] = {
                **{f"recall@{k}": round(statistics.fmean(hits[k]), 4) for k in ks},
                **{f"evidence_fraction@{k}": round(statistics.fmean(frac[k]), 4) for k in ks},
                "by_category": {
                    c: {f"recall@{k}": round(statistics.fmean(v[k]), 4) for k in ks} | {"questions": len(v[ks[0]])}
                    for c, v in by_cat.items()
                },
                "query_ms_mean": round(elapsed / len(questions) * 1000, 2),
            }
            print(f"{name} {label}: R@5={per_config[label]['recall@5']} R@10={per_config[label]['recall@10']}", file=sys.stderr)
        out[name] = {"questions": len(questions), "load_and_embed_s": round(load_s, 1), "configs": per_config}
    return out


# --- multilingual --------------------------------------------------------------------------


def _rank_of(results: list, wanted: str) -> int | None:
    for rank, hit in enumerate(results, start=1):
        if hit.id == wanted:
            return rank
    return None


def multilingual(models: list[str]) -> dict:
    data = json.loads(UK_SET.read_text())
    specs = {"hash": ModelSpec("hash", "hash", 256), "local": ModelSpec("local", "local", 384)}
    out: dict = {
        "memories": len(data["memories"]),
        "questions": len(data["questions"]),
        "definition": "top-1: the question's memory ranks first; recall@3: it is in the top 3; mrr over the top 10",
    }
    configs = {**CONFIGS, "english_only": {"sides": ("lexical", "dense"), "neighbour_weight": None}}
    for name in models:
        if name == "local" and not local_available():
            out[name] = {"skipped": "requirements-local.txt is not installed"}
            continue
        spec = specs[name]
        agent = f"multilingual-{name}"
        services.memory_forget(agent_id=agent)
        items = [
            {
                "agent_id": agent,
                "microdao_id": "microdao:uk",
                "channel_id": m["channel"],
                "kind": m["kind"],
                "content": {"text": m["text"]},
                "occurred_at": datetime.fromisoformat(m["occurred_at"].replace("Z", "+00:00")),
            }
            for m in data["memories"]
        ]
        ids = [e.id for e, _ in services.memory_store_bulk(items=items)]
        services.memory_embed_entries(entry_ids=ids, spec=spec)
        by_key = {m["key"]: entry_id for m, entry_id in zip(data["memories"], ids)}
        per_config: dict = {}
        for label, cfg in configs.items():
            if label == "english_only":
                # As every entry was indexed before: the english configuration, no lemmas.
                MemoryEntry.objects.filter(agent_id=agent).update(lang="", lemmas="")
            ranks, times, misses = [], [], []
            for question in data["questions"]:
                t0 = time.perf_counter()
                results = search._hybrid(
                    agent_id=agent,
                    microdao_id=None,
                    channel_id=None,
                    query=question["q"],
                    limit=10,
                    kinds=None,
                    since=None,
                    until=None,
                    model=spec.name,
                    neighbour_weight=cfg["neighbour_weight"],
                    sides=cfg["sides"],
                    lang="en" if label == "english_only" else None,
                )
                times.append((time.perf_counter() - t0) * 1000)
                rank = _rank_of(results, by_key[question["answer"]])
                ranks.append(rank)
                if rank != 1:
                    misses.append({"q": question["q"], "rank": rank})
            per_config[label] = {
                "top1": round(sum(1 for r in ranks if r == 1) / len(ranks), 4),
                "recall@3": round(sum(1 for r in ranks if r and r <= 3) / len(ranks), 4),
                "mrr": round(statistics.fmean(1 / r if r else 0.0 for r in ranks), 4),
                "query_ms_p50": round(_pct(times, 0.5), 2),
                "query_ms_p95": round(_pct(times, 0.95), 2),
                "misses": misses,
            }
            print(
                f"{name} {label}: top1={per_config[label]['top1']} R@3={per_config[label]['recall@3']} "
                f"mrr={per_config[label]['mrr']}",
                file=sys.stderr,
            )
        services.memory_forget(agent_id=agent)
        out[name] = {"configs": per_config}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["scale", "locomo", "multilingual", "all"])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--models", default="hash,local")
    args = parser.parse_args()
    _prepare()
    meta = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count()}
    if args.what in ("locomo", "all"):
        _write("locomo", {**meta, **locomo([m.strip() for m in args.models.split(",") if m.strip()])})
    if args.what in ("multilingual", "all"):
        _write("multilingual", {**meta, **multilingual([m.strip() for m in args.models.split(",") if m.strip()])})
    if args.what in ("scale", "all"):
        _write("scale", {**meta, **scale(args.n, args.agents, args.queries)})


if __name__ == "__main__":
    main()

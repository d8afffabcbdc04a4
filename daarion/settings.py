"""Django settings for the DAARION control plane, read from the environment only.

`DAARION_ENV=production` turns on the strict mode: values that only production needs have no
default there, so a missing one fails at start-up instead of at the first request.

Every setting is declared here once, and code reads `settings.X` plainly (no getattr defaults).
Environment variables follow one convention (docs/OPERATIONS.md, "Configuration"):
- an app's settings are named for its namespace (`LLM_*`, `MEMORY_*`, `TOOLS_*`, `AGENTS_*`,
  `REGISTRY_*`) and read from the variable of the same name (`LLM_RETRY_BACKOFF`);
- project-wide settings are read from `DAARION_*` variables (`DAARION_MAX_BODY_BYTES`);
- what has a name outside the project keeps it (`DJANGO_*`, `DATABASE_*`, `REDIS_URL`,
  `CELERY_*`, `OTEL_*`).
The LLM and agents settings were once read from `DAARION_LLM_*` / `DAARION_AGENTS_*`: those
names are still read when the new one is unset (`_env(..., old=...)`), so no deployment breaks.
"""

from __future__ import annotations

import os
from datetime import timedelta as _timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit as _urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
ENVIRONMENT = os.environ.get("DAARION_ENV", "development")
PRODUCTION = ENVIRONMENT == "production"
DATA_DIR = Path(os.environ.get("DAARION_DATA_DIR", BASE_DIR / ".data"))


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _env(name: str, default: str, *, old: str | None = None) -> str:
    """The variable `name`; else `old`, the name it had before the naming convention (kept so
    deployments that set it keep working; `name` wins when both are set); else `default`."""
    value = os.environ.get(name)
    if value is None and old is not None:
        value = os.environ.get(old)
    return default if value is None else value


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when DAARION_ENV=production")
    return value


if PRODUCTION:
    SECRET_KEY = _required("DJANGO_SECRET_KEY")
else:
    SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-secret-key-change-me")

DEBUG = _env_bool("DJANGO_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "*")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "ninja",
    "daarion.apps.ProjectConfig",  # the project wiring (no models)
    "apps.access.apps.AccessConfig",  # service tokens and the change log (label "daarion")
    "apps.llm",
    "apps.memory",
    "apps.tools",
    "apps.agents",
    "apps.console",  # the operator console (front page, playground, test buttons): imported by nothing
    "apps.demo",  # seed_demo and the demo projects service: imported by nothing
    "axes",  # admin sign-in throttling (below)
    # The registry management API (/api/registry/) is served by Django REST framework; the
    # runtime APIs stay on django-ninja (REST_FRAMEWORK below).
    "apps.registry",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    "daarion.middleware.RequestIdMiddleware",
    "daarion.middleware.ApiErrorShapeMiddleware",
    "daarion.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "daarion.middleware.AdminActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Admin sign-in throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one
# username from one address, that pair is locked out for AXES_COOLOFF_TIME (429 with a page
# saying so and when to retry), the right password included; a success resets the count.
# Attempts are rows in the database, so every web process sees them. Only the admin signs in
# with a password: service tokens and the registry API's session reuse never reach it.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("DAARION_ADMIN_LOGIN_FAILURES", "5"))
AXES_COOLOFF_TIME = _timedelta(minutes=float(os.environ.get("DAARION_ADMIN_LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_VERBOSE = False

ROOT_URLCONF = "daarion.urls"
ASGI_APPLICATION = "daarion.asgi.application"
WSGI_APPLICATION = "daarion.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
# The embedded stack (devtools/devstack.py) exports DATABASE_URL before Django starts, so the
# settings only ever read the variable.
if PRODUCTION:
    _database_url = _required("DATABASE_URL")
else:
    _database_url = os.environ.get("DATABASE_URL", "")
    if not _database_url:
        raise ImproperlyConfigured(
            "DATABASE_URL is not set. Run through `make run` / `make test`, or "
            "`python -m devtools.devstack exec -- <command>`, which start the embedded stack."
        )

DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")))}
# Django's PostgreSQL backend with a fail-fast window during an outage (daarion/infra/postgres/base.py).
DATABASES["default"]["ENGINE"] = "daarion.infra.postgres"
# After a failed connection attempt (pool mode), further attempts fail at once for this long.
DATABASE_OUTAGE_FAIL_FAST_SECONDS = float(os.environ.get("DATABASE_OUTAGE_FAIL_FAST_SECONDS", "1"))
DATABASES["default"].setdefault("OPTIONS", {})
if _env_bool("DATABASE_POOL", False):
    # psycopg's pool keeps connections warm for the web server's threads (on for `web` and the
    # agents worker's thread pool, off for Celery's forked workers, where a pool made before the
    # fork would be shared); it replaces
    # persistent connections (CONN_MAX_AGE must be 0 with it).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": int(os.environ.get("DATABASE_POOL_MIN", "1")),
        "max_size": int(os.environ.get("DATABASE_POOL_MAX", "10")),
        # How long a request waits for a connection. Short: while Postgres is down the pool has
        # none to give, and a request must answer 503 database_unavailable at once, not queue
        # for 10 s (docs/OPERATIONS.md, "Outages"). Workers may set a longer one.
        "timeout": float(os.environ.get("DATABASE_POOL_TIMEOUT", "1")),
    }
# A server that does not answer (a host down, a dropped route) fails the connect within this.
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "3")))
DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get("DATABASE_TEST_NAME", "test_daarion")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and Celery -------------------------------------------------------------------
if PRODUCTION:
    REDIS_URL = _required("REDIS_URL")
else:
    REDIS_URL = os.environ.get("REDIS_URL", "")
    if not REDIS_URL:
        raise ImproperlyConfigured("REDIS_URL is not set. Run through `make run` / `make test`, which start the embedded Redis.")
# Every key this deployment writes starts with this prefix, so two deployments (or the test
# suite and a dev server) can share one Redis without seeing each other's counters.
REDIS_KEY_PREFIX = os.environ.get("DAARION_REDIS_PREFIX", "daarion:")

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "300"))
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", "240"))
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    "global_keyprefix": REDIS_KEY_PREFIX + "celery:",
    # Sending a task while Redis is down fails at once instead of retrying the connection for
    # seconds inside a request: what could not be sent is picked up by a sweep (memory's
    # requeue_pending, the runs' redispatch). A worker's own connection retries on its own
    # terms (CELERY_BROKER_CONNECTION_MAX_RETRIES), unaffected by these.
    "max_retries": int(os.environ.get("CELERY_BROKER_SEND_RETRIES", "0")),
    "connect_retries_timeout": float(os.environ.get("CELERY_BROKER_SEND_TIMEOUT", "2")),
    "socket_connect_timeout": 2,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_KEY_PREFIX + "celery:"}

# --- Secrets at rest --------------------------------------------------------------------
# "kid:base64key,kid2:base64key2": the first key encrypts, every key decrypts (rotation).
# Development generates a key ring into DATA_DIR on first use (see daarion/infra/crypto.py).
ENCRYPTION_KEYS = os.environ.get("DAARION_ENCRYPTION_KEYS", "")
if PRODUCTION and not ENCRYPTION_KEYS:
    raise ImproperlyConfigured("DAARION_ENCRYPTION_KEYS must be set when DAARION_ENV=production")

# --- API edge ---------------------------------------------------------------------------
MAX_BODY_BYTES = int(os.environ.get("DAARION_MAX_BODY_BYTES", str(2 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
# Paths whose errors are always rendered in the JSON error envelope.
API_PATH_PREFIXES = ("/internal/", "/v1/", "/api/", "/health")
# Retry-After (seconds) of the 503s a Postgres or Redis outage answers (daarion/infra/outages.py).
OUTAGE_RETRY_AFTER_SECONDS = int(os.environ.get("DAARION_OUTAGE_RETRY_AFTER_SECONDS", "5"))
# How often a process checks the Redis version keys of its cached registries (seconds).
LIVE_CONFIG_CHECK_INTERVAL = float(os.environ.get("DAARION_LIVE_CONFIG_CHECK_INTERVAL", "0.5"))
# The LLM proxy's two hottest routes skip Django's middleware chain and Ninja's operation wrapper
# (daarion/fastlane.py, same views and rules); 0 sends them the usual way.
FAST_LANE = os.environ.get("DAARION_FAST_LANE", "1") not in {"0", "false", "no"}
# The ASGI app serves /static/ itself (daarion/asgi.py); 0 when a proxy or CDN serves it.
SERVE_STATIC = os.environ.get("DAARION_SERVE_STATIC", "1") not in {"0", "false", "no"}

# Registry models whose every change (admin, API, import) is written to the change log
# (apps.access.audit). Labels of models an app does not define are skipped.
DAARION_AUDITED_MODELS = [
    "daarion.ServiceToken",
    "llm.Provider",
    "llm.LogicalModel",
    "llm.Deployment",
    "llm.RateLimitPolicy",
    "tools.Tool",
    "agents.Agent",
    "agents.AgentSecret",
    "memory.EmbeddingModel",
    "tools.McpServer",
]

# --- Auth, i18n, static -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", DATA_DIR / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

if PRODUCTION:
    SESSION_COOKIE_SECURE = _env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- Logging: one JSON object per line, with the request id -------------------------------
LOG_LEVEL = os.environ.get("DAARION_LOG_LEVEL", "INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "daarion.log.RequestIdFilter"},
        # Beat queues these every second (their settings below): beat and a worker at INFO
        # would log "sending", "received" and "succeeded" for each, ~500k lines a day. Their
        # failures still log.
        "quiet_periodic_tasks": {
            "()": "daarion.celery.QuietTaskLines",
            "tasks": ["llm.drain_usage", "tools.flush_audit", "agents.sweep_runs"],
        },
    },
    "formatters": {
        "json": {"()": "daarion.log.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": os.environ.get("DAARION_LOG_FORMAT", "json"),
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        # httpx logs every request at INFO; tool calls are audited already, so only its warnings.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},  # the MCP SDK's client
        # The loggers of beat's per-task "sending" and the worker's "received" and "succeeded"
        # lines (no level of their own: --loglevel and DAARION_LOG_LEVEL still decide).
        "celery.beat": {"filters": ["quiet_periodic_tasks"]},
        "celery.worker.strategy": {"filters": ["quiet_periodic_tasks"]},
        "celery.app.trace": {"filters": ["quiet_periodic_tasks"]},
    },
}

# --- App settings: one block per app namespace, each read from the variable of its own name ---


# --- tools (TOOLS_*) ---
def _served_at(data_dir: Path) -> str | None:
    """The address `make run` last served on (DATA_DIR/server.json), so commands run from a
    shell (agent_chat, seed_demo) agree with the server without repeating HOST/PORT."""
    import json

    try:
        return json.loads((data_dir / "server.json").read_text()).get("public_url") or None
    except (OSError, ValueError, AttributeError):
        return None


# The demo projects service (/demo/projects.list, apps/demo), the target of the demo HTTP tool:
# served in development and tests, not in production unless asked for.
DAARION_DEMO_SERVICE = _env_bool("DAARION_DEMO_SERVICE", not PRODUCTION)
# Where this deployment is reachable; the demo HTTP tool targets its own /demo/ service here.
DAARION_PUBLIC_URL = (
    os.environ.get("DAARION_PUBLIC_URL") or (None if PRODUCTION else _served_at(DATA_DIR)) or "http://127.0.0.1:8000"
).rstrip("/")
# Hosts HTTP tools may reach: `host`, `host:port`, `*.suffix`, `*` (public addresses only).
# Internal addresses (loopback, private, link-local) need the host listed exactly.
TOOLS_HTTP_ALLOWED_HOSTS = _env_list("TOOLS_HTTP_ALLOWED_HOSTS", _urlsplit(DAARION_PUBLIC_URL).netloc)
TOOLS_HTTP_MAX_RESPONSE_BYTES = int(os.environ.get("TOOLS_HTTP_MAX_RESPONSE_BYTES", str(1024 * 1024)))
TOOLS_HTTP_MAX_REDIRECTS = int(os.environ.get("TOOLS_HTTP_MAX_REDIRECTS", "3"))
# A CA bundle (PEM path) for HTTPS tool targets behind an internal CA; empty: the public CAs.
TOOLS_HTTP_CA_BUNDLE = os.environ.get("TOOLS_HTTP_CA_BUNDLE", "")
# Browser origins (besides our own host) allowed to call /mcp; e.g. "https://studio.example.com".
TOOLS_MCP_ALLOWED_ORIGINS = _env_list("TOOLS_MCP_ALLOWED_ORIGINS")
# Items per page of /mcp tools/list and prompts/list (the client follows nextCursor).
TOOLS_MCP_PAGE_SIZE = int(os.environ.get("TOOLS_MCP_PAGE_SIZE", "100"))
# Open `subscriptions/listen` streams one web process serves at once (each holds a connection);
# one more is refused with a JSON-RPC error.
TOOLS_MCP_MAX_LISTEN_STREAMS = int(os.environ.get("TOOLS_MCP_MAX_LISTEN_STREAMS", "1000"))
# How often beat re-lists the tools of every enabled upstream MCP server (tools.sync_mcp_servers).
TOOLS_MCP_SYNC_SECONDS = float(os.environ.get("TOOLS_MCP_SYNC_SECONDS", "300"))
# The queue of the sync a new (or re-pointed) MCP server queues; a slow upstream can be kept off
# the default queue by giving it a worker of its own.
TOOLS_MCP_SYNC_QUEUE = os.environ.get("TOOLS_MCP_SYNC_QUEUE", "default")
# Tool-call audit entries wait in a Redis list and become ToolCall rows in the Celery worker
# (beat's tools.flush_audit, every TOOLS_AUDIT_DRAIN_SECONDS). A web process writes them itself
# only when TOOLS_AUDIT_FLUSH_INTERVAL is above 0 (a deployment without a worker): parsing and
# inserting in the web process holds the GIL, as the LLM usage records showed (docs/BENCHMARKS.md).
TOOLS_AUDIT_FLUSH_INTERVAL = float(os.environ.get("TOOLS_AUDIT_FLUSH_INTERVAL", "0"))
TOOLS_AUDIT_DRAIN_SECONDS = float(os.environ.get("TOOLS_AUDIT_DRAIN_SECONDS", "1.0"))
# Name of the Redis list the audit entries wait in (processes sharing it drain each other's).
TOOLS_AUDIT_QUEUE = os.environ.get("TOOLS_AUDIT_QUEUE", "audit")

# --- memory (MEMORY_*) ---
# Query results per call at most (a larger `limit` is capped).
MEMORY_QUERY_MAX_LIMIT = int(os.environ.get("MEMORY_QUERY_MAX_LIMIT", "50"))
# Scopes up to this many entries are searched exactly: cheaper than the index for a few
# thousand rows, and a filtered HNSW scan could return too few of them.
MEMORY_EXACT_SEARCH_MAX = int(os.environ.get("MEMORY_EXACT_SEARCH_MAX", "20000"))
# The HNSW candidate list: pgvector's default (40) gives recall@10 of about 0.88 on our 100k
# benchmark; 200 gives 0.95+ for a few milliseconds more (docs/BENCHMARKS.md).
MEMORY_HNSW_EF_SEARCH = int(os.environ.get("MEMORY_HNSW_EF_SEARCH", "200"))
# How much a hit lends its neighbouring turns (same agent and channel, adjacent in time): an
# answer often sits in the turn after the one that matches the question's words.
MEMORY_NEIGHBOUR_WEIGHT = float(os.environ.get("MEMORY_NEIGHBOUR_WEIGHT", "0.3"))
# Size limits of one stored memory (its content and its metadata, as JSON) and of a bulk store.
MEMORY_MAX_CONTENT_BYTES = int(os.environ.get("MEMORY_MAX_CONTENT_BYTES", str(64 * 1024)))
MEMORY_MAX_META_BYTES = int(os.environ.get("MEMORY_MAX_META_BYTES", str(8 * 1024)))
MEMORY_MAX_BULK_ITEMS = int(os.environ.get("MEMORY_MAX_BULK_ITEMS", "500"))
# Size limits of an uploaded transcript: entries, total bytes, bytes of one entry.
MEMORY_TRANSCRIPT_MAX_ENTRIES = int(os.environ.get("MEMORY_TRANSCRIPT_MAX_ENTRIES", "20000"))
MEMORY_TRANSCRIPT_MAX_BYTES = int(os.environ.get("MEMORY_TRANSCRIPT_MAX_BYTES", str(8 * 1024 * 1024)))
MEMORY_TRANSCRIPT_MAX_ENTRY_BYTES = int(os.environ.get("MEMORY_TRANSCRIPT_MAX_ENTRY_BYTES", str(512 * 1024)))
# Entries embedded per embedding call; an embedding job that fails transiently is retried this
# many times, with exponential backoff from MEMORY_RETRY_BASE_SECONDS (capped at 10 minutes).
MEMORY_EMBED_BATCH = int(os.environ.get("MEMORY_EMBED_BATCH", "64"))
MEMORY_EMBED_MAX_RETRIES = int(os.environ.get("MEMORY_EMBED_MAX_RETRIES", "5"))
MEMORY_RETRY_BASE_SECONDS = float(os.environ.get("MEMORY_RETRY_BASE_SECONDS", "5"))
MEMORY_SUMMARY_MODEL = os.environ.get("MEMORY_SUMMARY_MODEL", "gpt-4.1-mini")
# Threads the local embedding model (torch) may use in one process. One: a web process embeds
# one short query at a time beside other requests, and workers scale by processes; torch's
# default (a thread per core) made a query's embedding wait on its own threads under load.
MEMORY_LOCAL_EMBEDDING_THREADS = int(os.environ.get("MEMORY_LOCAL_EMBEDDING_THREADS", "1"))
# The languages memory tells apart (ISO 639-1, any that simplemma knows): detected on store and
# query, to pick the text search configuration and the lemmas (docs/MEMORY_ORCHESTRATOR_SPEC.md).
MEMORY_LANGUAGES = _env_list("MEMORY_LANGUAGES", "en,uk,ru")

# --- llm (LLM_*; the older DAARION_LLM_* names still work) ---
# Usage records move from Redis to Postgres in the Celery worker (beat's llm.drain_usage,
# every LLM_USAGE_DRAIN_SECONDS). A web process writes them itself only when this is above 0
# (a deployment without a worker): parsing and inserting a second's records in the web process
# holds the GIL long enough to show in the proxy's p99 latency (docs/BENCHMARKS.md).
LLM_USAGE_FLUSH_INTERVAL = float(_env("LLM_USAGE_FLUSH_INTERVAL", "0", old="DAARION_LLM_USAGE_FLUSH_INTERVAL"))
LLM_USAGE_DRAIN_SECONDS = float(_env("LLM_USAGE_DRAIN_SECONDS", "1.0", old="DAARION_LLM_USAGE_DRAIN_SECONDS"))
# When Redis cannot be reached, rate-limited calls are let through ("allow", logged) or refused
# with 503 rate_limiter_unavailable ("refuse": for limits that guard spend).
LLM_RATE_LIMIT_WHEN_REDIS_DOWN = _env("LLM_RATE_LIMIT_WHEN_REDIS_DOWN", "allow", old="DAARION_LLM_RATE_LIMIT_WHEN_REDIS_DOWN")
if LLM_RATE_LIMIT_WHEN_REDIS_DOWN not in {"allow", "refuse"}:
    _variable = (
        "LLM_RATE_LIMIT_WHEN_REDIS_DOWN"
        if "LLM_RATE_LIMIT_WHEN_REDIS_DOWN" in os.environ
        else "DAARION_LLM_RATE_LIMIT_WHEN_REDIS_DOWN"
    )
    raise ImproperlyConfigured(f"{_variable} must be allow or refuse, not {LLM_RATE_LIMIT_WHEN_REDIS_DOWN!r}")
# Heartbeat comments on /internal/llm/stream while no token has arrived yet (seconds).
LLM_STREAM_HEARTBEAT_SECONDS = float(_env("LLM_STREAM_HEARTBEAT_SECONDS", "5", old="DAARION_LLM_HEARTBEAT_SECONDS"))
# A deployment failing this many times within a minute is skipped for LLM_COOLDOWN_SECONDS.
LLM_COOLDOWN_FAILURES = int(_env("LLM_COOLDOWN_FAILURES", "3", old="DAARION_LLM_COOLDOWN_FAILURES"))
LLM_COOLDOWN_SECONDS = float(_env("LLM_COOLDOWN_SECONDS", "30", old="DAARION_LLM_COOLDOWN_SECONDS"))
# Retry backoff base (seconds) and the longest upstream Retry-After we wait for before moving
# on to the next deployment instead.
LLM_RETRY_BACKOFF = float(_env("LLM_RETRY_BACKOFF", "0.2", old="DAARION_LLM_RETRY_BACKOFF"))
LLM_MAX_RETRY_AFTER = float(_env("LLM_MAX_RETRY_AFTER", "5", old="DAARION_LLM_MAX_RETRY_AFTER"))
# /internal/llm/batch: at most this many items per call, run this many at a time.
LLM_BATCH_MAX_ITEMS = int(_env("LLM_BATCH_MAX_ITEMS", "100", old="DAARION_LLM_BATCH_MAX_ITEMS"))
LLM_BATCH_CONCURRENCY = int(_env("LLM_BATCH_CONCURRENCY", "8", old="DAARION_LLM_BATCH_CONCURRENCY"))
# How long /v1/responses keeps a stored response (store not false) for previous_response_id.
LLM_RESPONSES_TTL_SECONDS = int(_env("LLM_RESPONSES_TTL_SECONDS", "86400", old="DAARION_LLM_RESPONSES_TTL_SECONDS"))

# --- agents (AGENTS_*; the older DAARION_AGENTS_* names still work) ---
# Seconds without a chunk after which an agent stream sends an SSE heartbeat comment.
AGENTS_STREAM_HEARTBEAT_SECONDS = float(_env("AGENTS_STREAM_HEARTBEAT_SECONDS", "10", old="DAARION_AGENTS_HEARTBEAT_SECONDS"))
# Runs (apps/agents/runs): executed by workers of the `agents` queue under a Redis lease of
# this many seconds, renewed every third of it; a run whose lease ran out is `interrupted` by
# the sweep (beat, every AGENTS_RUN_SWEEP_SECONDS).
# The queue runs are sent to (and beat's sweep): its workers are the executors. A deployment
# may give a set of web processes a queue (and workers) of its own.
AGENTS_RUN_QUEUE = _env("AGENTS_RUN_QUEUE", "agents", old="DAARION_AGENTS_RUN_QUEUE")
AGENTS_RUN_LEASE_SECONDS = float(_env("AGENTS_RUN_LEASE_SECONDS", "15", old="DAARION_AGENTS_RUN_LEASE_SECONDS"))
AGENTS_RUN_SWEEP_SECONDS = float(_env("AGENTS_RUN_SWEEP_SECONDS", "5", old="DAARION_AGENTS_RUN_SWEEP_SECONDS"))
# A run longer than this is stopped and `interrupted` (the executor's own limit).
AGENTS_RUN_TIME_LIMIT_SECONDS = float(_env("AGENTS_RUN_TIME_LIMIT_SECONDS", "600", old="DAARION_AGENTS_RUN_TIME_LIMIT_SECONDS"))
# A queued run whose task has not started within this many seconds is sent again (a lost
# enqueue); a duplicate is harmless, since only a queued run can start.
AGENTS_RUN_REDISPATCH_SECONDS = float(_env("AGENTS_RUN_REDISPATCH_SECONDS", "60", old="DAARION_AGENTS_RUN_REDISPATCH_SECONDS"))
# A chat waits this long for a worker to take its run; then the run is ended and the answer is
# 503 runtime_unavailable (no worker of the agents queue is alive), not a wait without end.
AGENTS_RUN_START_TIMEOUT_SECONDS = float(
    _env("AGENTS_RUN_START_TIMEOUT_SECONDS", "20", old="DAARION_AGENTS_RUN_START_TIMEOUT_SECONDS")
)
# A run's chunk stream is kept this long after the run ends (for resume), then expires; the
# final message stays on the run row. At most this many chunks per run (XADD MAXLEN ~).
AGENTS_RUN_RETENTION_SECONDS = int(_env("AGENTS_RUN_RETENTION_SECONDS", "3600", old="DAARION_AGENTS_RUN_RETENTION_SECONDS"))
AGENTS_RUN_STREAM_MAX_CHUNKS = int(_env("AGENTS_RUN_STREAM_MAX_CHUNKS", "20000", old="DAARION_AGENTS_RUN_STREAM_MAX_CHUNKS"))

# --- Celery beat: every periodic job of every app, in one place ---
# A drain not started within a few ticks is dropped (a worker back from a stall runs a few,
# not one per tick it missed), and its result is not kept: one a second would fill the backend.
CELERY_BEAT_SCHEDULE = {
    "tools-flush-audit": {
        "task": "tools.flush_audit",
        "schedule": TOOLS_AUDIT_DRAIN_SECONDS,
        "options": {"queue": "default", "expires": max(5.0, 3 * TOOLS_AUDIT_DRAIN_SECONDS), "ignore_result": True},
    },
    "tools-sync-mcp-servers": {
        "task": "tools.sync_mcp_servers",
        "schedule": TOOLS_MCP_SYNC_SECONDS,
        "options": {"queue": "default", "expires": TOOLS_MCP_SYNC_SECONDS, "ignore_result": True},
    },
    "memory-requeue-pending": {"task": "memory.requeue_pending", "schedule": 60.0},
    "llm-drain-usage": {
        "task": "llm.drain_usage",
        "schedule": LLM_USAGE_DRAIN_SECONDS,
        "options": {"queue": "default", "expires": max(5.0, 3 * LLM_USAGE_DRAIN_SECONDS), "ignore_result": True},
    },
    "agents-sweep-runs": {
        "task": "agents.sweep_runs",
        "schedule": AGENTS_RUN_SWEEP_SECONDS,
        "options": {"queue": AGENTS_RUN_QUEUE, "expires": max(5.0, 3 * AGENTS_RUN_SWEEP_SECONDS), "ignore_result": True},
    },
}

# --- registry ---
# Errors are rendered in the project's envelope by the app's handler.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its `WWW-Authenticate: Bearer` keeps an anonymous call a 401.
        "apps.registry.authentication.ServiceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.registry.permissions.RegistryAccess"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "apps.registry.filters.FieldFilter",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.registry.pagination.RegistryPagination",
    "PAGE_SIZE": int(os.environ.get("REGISTRY_API_PAGE_SIZE", "50")),
    "EXCEPTION_HANDLER": "apps.registry.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "DAARION registry management API",
    "DESCRIPTION": "Providers, logical models, rate limits, tools, agents and embedding models: "
    "the same services as the admin and the import commands. See docs/REGISTRY_API.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.registry.schema.add_error_responses",
    ],
}

# --- Observability (daarion/observability/, docs/OPERATIONS.md) --------------------------
# Prometheus metrics: counted in every process (web, workers), served at GET /metrics to a
# token with the `metrics` scope. Processes that share one /metrics need the same
# PROMETHEUS_MULTIPROC_DIR (emptied when the service starts). 0 turns the counting off (the
# bench compares both: bench/proxy_overhead.py --metrics-off).
METRICS_ENABLED = _env_bool("DAARION_METRICS", True)
# GET /health/ready: a Celery worker must have sent its heartbeat within this many seconds.
WORKER_SEEN_SECONDS = float(os.environ.get("DAARION_WORKER_SEEN_SECONDS", "60"))
WORKER_HEARTBEAT_SECONDS = float(os.environ.get("DAARION_WORKER_HEARTBEAT_SECONDS", "10"))
HEALTH_READY_REQUIRE_WORKER = _env_bool("DAARION_READY_REQUIRE_WORKER", True)
# OpenTelemetry tracing: on when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set;
# the standard OTEL_* variables (service name, sampler, headers) apply. DAARION_TRACING=0
# keeps it off whatever the environment says.
TRACING_ENABLED = _env_bool("DAARION_TRACING", True) and bool(
    os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
)
# The Grafana dashboard the admin's metrics page links to (docs/grafana/daarion.json).
GRAFANA_DASHBOARD_URL = os.environ.get("DAARION_GRAFANA_URL", "http://127.0.0.1:3000/d/daarion/daarion")

"""The settings' env naming convention: app settings read the variable of their own name, and
the older DAARION_LLM_* / DAARION_AGENTS_* names still work where the new one is unset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_PRINT = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.LLM_RETRY_BACKOFF, s.AGENTS_RUN_QUEUE, s.AGENTS_STREAM_HEARTBEAT_SECONDS, "
    "sorted(s.CELERY_BEAT_SCHEDULE)]))"
)


def _settings_with(**env: str) -> list:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "AGENTS_", "DAARION_LLM_", "DAARION_AGENTS_"))}
    result = subprocess.run([sys.executable, "-c", _PRINT], env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_app_settings_read_their_own_name_and_the_old_one():
    assert _settings_with()[:3] == [0.2, "agents", 10.0]
    assert _settings_with(LLM_RETRY_BACKOFF="0.5", AGENTS_RUN_QUEUE="q1", AGENTS_STREAM_HEARTBEAT_SECONDS="2")[:3] == [
        0.5,
        "q1",
        2.0,
    ]
    assert _settings_with(DAARION_LLM_RETRY_BACKOFF="0.7", DAARION_AGENTS_RUN_QUEUE="q2", DAARION_AGENTS_HEARTBEAT_SECONDS="3")[
        :3
    ] == [0.7, "q2", 3.0]
    # Both set: the new name wins.
    assert _settings_with(LLM_RETRY_BACKOFF="0.5", DAARION_LLM_RETRY_BACKOFF="0.7")[0] == 0.5


def test_the_beat_schedule_holds_every_apps_jobs():
    assert _settings_with()[3] == [
        "agents-sweep-runs",
        "llm-drain-usage",
        "memory-requeue-pending",
        "tools-flush-audit",
        "tools-sync-mcp-servers",
    ]

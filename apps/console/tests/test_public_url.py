"""Where the demo HTTP tool points: seed_demo repoints it only when told; commands from a
shell read the address `make run` serves on; agent_chat keeps library logs out of the chat."""

from __future__ import annotations

import json
import logging

import pytest
from django.core.management import call_command

from apps.agents.management.commands.agent_chat import quiet_library_logs
from apps.tools.models import Tool
from daarion.settings import _served_at


def _target() -> str:
    return Tool.objects.get(tool_id="projects.list").target


@pytest.mark.django_db
def test_seed_demo_repoints_the_demo_tool_only_with_public_url(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    call_command("seed_demo", "--quiet", "--public-url", "http://127.0.0.1:18123")
    assert _target() == "http://127.0.0.1:18123/demo/projects.list"
    settings.DAARION_PUBLIC_URL = "http://127.0.0.1:8000"  # a shell that does not know the port
    call_command("seed_demo", "--quiet")
    assert _target() == "http://127.0.0.1:18123/demo/projects.list"
    call_command("seed_demo", "--quiet", "--public-url", "http://127.0.0.1:18124/")
    assert _target() == "http://127.0.0.1:18124/demo/projects.list"


def test_the_served_address_is_read_from_the_data_dir(tmp_path):
    assert _served_at(tmp_path) is None
    (tmp_path / "server.json").write_text(json.dumps({"public_url": "http://127.0.0.1:18123", "pid": 1}))
    assert _served_at(tmp_path) == "http://127.0.0.1:18123"
    (tmp_path / "server.json").write_text("not json")
    assert _served_at(tmp_path) is None


def test_agent_chat_quiets_library_loggers(monkeypatch):
    from apps.agents.management.commands.agent_chat import NOISY_LOGGERS

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in NOISY_LOGGERS)]
    before = [lg.level for lg in loggers]
    for name in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "TOKENIZERS_PARALLELISM"):
        monkeypatch.delenv(name, raising=False)
    try:
        quiet_library_logs()
        assert not logging.getLogger("sentence_transformers.SentenceTransformer").isEnabledFor(logging.INFO)
        assert logging.getLogger("sentence_transformers").isEnabledFor(logging.WARNING)
    finally:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)

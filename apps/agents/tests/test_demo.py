"""The demo agent and `manage.py agent_chat` (runs on a real worker) on the offline stub model."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.demo import agents as demo
from apps.agents.models import Agent
from apps.memory.models import MemoryEntry


@pytest.fixture
def demo_world(transactional_db, agents_worker):
    """The demo registries: stub models, demo tools, Sofia-Prime; a worker of the `agents`
    queue runs the command's runs."""
    from apps.demo import registry as registry_demo
    from apps.demo import tools as tools_demo

    registry_demo.seed()
    demo.seed()
    tools_demo.seed()


def _chat(*args: str) -> tuple[str, str, CommandError | None]:
    out, err = StringIO(), StringIO()
    try:
        call_command("agent_chat", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc
    return out.getvalue(), err.getvalue(), None


def test_seed_is_idempotent(db):
    first = demo.seed()
    assert "created" in first[0]
    assert "unchanged" in demo.seed()[0]
    agent = Agent.objects.get(pk="agent:sofia")
    assert (agent.name, agent.model, agent.microdao_id, agent.enabled) == ("Sofia-Prime", "dagi-stub", "microdao:7", True)
    assert agent.character["topics"][0] == "projects"
    # The project manager and the CTO the demo tools allow, on the same offline model.
    assert sorted(Agent.objects.values_list("id", "name", "model", "microdao_id")) == [
        ("agent:cto", "DAARION CTO", "dagi-stub", "microdao:7"),
        ("agent:pm", "DAARION PM", "dagi-stub", "microdao:7"),
        ("agent:sofia", "Sofia-Prime", "dagi-stub", "microdao:7"),
    ]


def test_seed_demo_seeds_every_agent_its_tools_allow(transactional_db, settings, tmp_path):
    from apps.tools.models import Tool

    settings.DATA_DIR = tmp_path  # demo.json goes here, not into the test stack's data
    for _ in range(2):  # and a second run changes nothing
        err = StringIO()
        call_command("seed_demo", "--quiet", stdout=StringIO(), stderr=err)
    assert "tool projects.list unchanged" in err.getvalue() and "agents: agent:pm (DAARION PM) unchanged" in err.getvalue()
    allowed = {agent_id for tool in Tool.objects.all() for agent_id in tool.allowed_agents or []}
    assert allowed == {"agent:sofia", "agent:pm", "agent:cto"}
    assert set(Agent.objects.values_list("id", flat=True)) >= allowed
    assert set(Tool.objects.values_list("version", flat=True)) == {1}


def test_agent_chat_streams_the_reply_and_shows_tool_calls(demo_world):
    out, err, failed = _chat("agent:sofia", "-m", "Hello Sofia", "-m", "Which projects do we have?")
    assert failed is None, err
    assert "Sofia-Prime> [stub] You said: Hello Sofia" in out
    # The stub calls projects.list when asked about projects; whatever the tool answers
    # (the demo HTTP target may not be served in this test), the turn completes.
    assert "-> tool projects.list" in out and "<- projects.list" in out
    assert out.count("tokens; memory mem-") == 2
    assert MemoryEntry.objects.filter(agent_id="agent:sofia", kind="conversation").count() == 2


def test_agent_chat_reports_refusals(demo_world):
    out, err, failed = _chat("agent:nobody", "-m", "hi")
    assert failed is not None and "agent_not_found" in err


def test_agent_chat_survives_ctrl_c_and_resumes_the_run(server_env, agents_worker, sofia, llm_routes, scripted):
    import os
    import signal
    import subprocess
    import sys

    from apps.agents.models import Run
    from apps.agents.tests.conftest import wait_until

    words = "one two three four five six seven eight nine ten"
    model = llm_routes("cli-resume")
    scripted.script(model, [{"text": words, "word_delay": 0.25}])
    sofia(model)
    manage = [sys.executable, "manage.py", "agent_chat", "agent:sofia"]
    env = {**server_env, "PYTHONUNBUFFERED": "1"}
    # As from a terminal: SIGINT at its default (a test runner may ignore it, and children
    # would inherit that), so Python turns Ctrl-C into KeyboardInterrupt.
    chat = subprocess.Popen(
        [*manage, "-m", "count to ten"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=os.getcwd(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert chat.stdout is not None
    seen = ""
    while "Sofia-Prime> one" not in seen:
        line = chat.stdout.read(1)
        assert line, seen
        seen += line
    chat.send_signal(signal.SIGINT)
    rest, _ = chat.communicate(timeout=30)
    out = seen + rest
    assert chat.returncode != 0, out
    assert "goes on; see it with: manage.py agent_chat agent:sofia --resume run-" in out
    run_id = out.split("--resume ")[1].split(")")[0].strip()
    resumed = subprocess.run(
        [*manage, "--resume", run_id], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"Sofia-Prime> {words}" in resumed.stdout
    wait_until(lambda: Run.objects.get(pk=run_id).status == "succeeded", "the run to succeed")

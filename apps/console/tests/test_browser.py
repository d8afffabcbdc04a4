"""The console in a real browser: Playwright for Python driving Debian's chromium against the
app under uvicorn, a worker running agent turns. Screenshots of every page go to
screenshots/console/ (gitignored), for people to look at.

Skipped, with the reason in the summary, where /usr/bin/chromium (or CHROMIUM_PATH) is absent:
`apt-get install chromium` (`.ci/run` does it). Few tests, each walking several pages: a
browser is heavy on a small machine.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.testing import (
    ServerProcess,
    free_port,
    start_asgi_server,
    start_celery_worker,
)

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "screenshots" / "console"
ADMIN_PASSWORD = "console-browser-test-pw"

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - requirements-dev.txt pins it
    sync_playwright = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None, reason="browser tests skipped: playwright is not installed"),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK), reason=f"browser tests skipped: no chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def console_env(server_env, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment of the console's server, and the agents worker that shares it."""
    port = free_port()
    env = {
        **server_env,
        # The demo tool's target is this server; toolcore allows exactly its host.
        "DAARION_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # Its runs go to a worker of their own with this environment.
        "DAARION_AGENTS_RUN_QUEUE": "agents-console",
        "CONSOLE_PORT": str(port),
    }
    logs = tmp_path_factory.mktemp("console-worker")
    worker = start_celery_worker(env, logs, queues="agents-console", pool="threads", concurrency=4, name="agents-console")
    yield env
    worker.stop()


@pytest.fixture
def console_server(console_env, tmp_path_factory) -> Iterator[ServerProcess]:
    # A server per test: each test's database is flushed after it, content types included,
    # and a server that lived on would write admin log rows with the old content type ids.
    server = start_asgi_server(
        console_env, tmp_path_factory.mktemp("console-server"), port=int(console_env["CONSOLE_PORT"]), name="console"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # --no-sandbox: CI and this machine run as root, where chromium's sandbox cannot start.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, console_server, monkeypatch) -> Iterator[Page]:
    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the test
    # (seeding, checks) are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    context = browser.new_context(base_url=console_server.url, viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))  # type: ignore[attr-defined]
    # Which resource failed: the console message alone does not say.
    page.on("response", lambda r: r.status >= 400 and page.console_errors.append(f"{r.status} {r.url}"))  # type: ignore[attr-defined]
    # Requests cut short by leaving the page (a check in flight at Save) are not failures.
    page.on(
        "requestfailed",
        lambda r: (
            r.failure != "net::ERR_ABORTED"  # type: ignore[attr-defined]
            and page.console_errors.append(f"failed {r.url}: {r.failure}")
        ),
    )
    # Nothing may come from another host, with one known exception: Redoc's sidebar badge
    # always asks cdn.redoc.ly for its logo (and hides it when that fails). It is answered
    # here, so an offline machine and one online see the same page.
    page.external_requests = []  # type: ignore[attr-defined]

    def outside(route) -> None:
        page.external_requests.append(route.request.url)  # type: ignore[attr-defined]
        if route.request.url.startswith("https://cdn.redoc.ly/redoc/logo-mini.svg"):
            route.fulfill(status=200, content_type="image/svg+xml", body="<svg xmlns='http://www.w3.org/2000/svg'/>")
        else:
            route.abort()

    page.route(re.compile(r"^(?!http://127\.0\.0\.1[:/]).*"), outside)
    yield page
    context.close()


@pytest.fixture
def seeded(transactional_db, console_server) -> None:
    from django.contrib.auth import get_user_model

    from apps.demo import agents as agents_demo
    from apps.demo import registry as registry_demo
    from apps.demo import tools as tools_demo

    registry_demo.seed()
    agents_demo.seed()  # the agents before the tools that allow them, as seed_demo runs them
    tools_demo.seed(public_url=console_server.url)
    get_user_model().objects.create_superuser("admin", "admin@localhost", ADMIN_PASSWORD)


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _login(page: Page) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    _shot(page, "01-login")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()
    _shot(page, "02-admin-index")


def test_front_page_and_registry_docs_load_without_console_errors(page):
    page.goto("/")
    expect(page.locator("h1")).to_have_text("DAARION control plane")
    for href in ("/admin/", "/internal/docs", "/api/registry/docs/", "/health"):
        expect(page.locator(f'a[href="{href}"]').first).to_be_visible()
    _shot(page, "00-front-page")
    page.goto("/api/registry/docs/")
    # Redoc renders the operations once it has resolved every reference of the schema.
    expect(page.get_by_text("Invalid reference token")).to_have_count(0)
    expect(page.locator("h1", has_text="DAARION registry API").or_(page.locator("h1").first)).to_be_visible(timeout=30_000)
    expect(page.get_by_text("providers").first).to_be_visible(timeout=30_000)
    _shot(page, "00-registry-docs")
    assert page.console_errors == []
    assert {u for u in page.external_requests if not u.startswith("https://cdn.redoc.ly/redoc/logo-mini.svg")} == set()


def test_playground_streams_sofias_reply_with_her_tool_call(page, seeded):
    _login(page)
    page.goto("/admin/agents/agent/agent:sofia/change/")
    page.click("#chat-agent")
    expect(page.locator("#pg-agent")).to_have_value("agent:sofia")
    page.fill("#pg-message", "Which projects do we have?")
    page.click("#pg-send")
    turn = page.locator(".pg-turn").last
    expect(turn.locator(".pg-tool").first).to_contain_text("projects.list", timeout=60_000)
    expect(turn.locator(".pg-tool", has_text="← projects.list ok")).to_be_visible(timeout=60_000)
    expect(turn.locator(".pg-answer")).to_contain_text("DAARION Messenger", timeout=60_000)
    expect(turn.locator(".pg-summary", has_text="ms")).to_be_visible(timeout=60_000)
    assert re.search(r"\d+ prompt \+ \d+ completion tokens", turn.locator(".pg-summary").last.inner_text())
    _shot(page, "10-playground-agent")
    # A logical model, straight through the router.
    page.select_option("#pg-model", "dagi-stub")
    page.fill("#pg-message", "Hello model")
    page.click("#pg-send")
    answer = page.locator(".pg-turn").last
    expect(answer.locator(".pg-answer")).not_to_be_empty(timeout=30_000)
    expect(answer.locator(".pg-summary")).to_contain_text("dagi-stub", timeout=30_000)
    _shot(page, "11-playground-model")
    assert page.console_errors == []


def test_operator_pages_test_buttons_history_and_records(page, seeded):
    from apps.llm.models import Provider
    from apps.tools.models import Tool

    _login(page)
    # Provider: test connection.
    stub = Provider.objects.get(name="stub")
    page.goto(f"/admin/llm/provider/{stub.pk}/change/")
    page.click("#test-connection")
    page.click("#run-test")
    expect(page.locator("#test-results tr.check-ok")).to_have_count(2)
    _shot(page, "20-provider-test")

    # Tool: try with a generated form, first with a bad argument.
    tool = Tool.objects.get(tool_id="followups.create")
    page.goto(f"/admin/tools/tool/{tool.pk}/change/")
    page.click("#try-tool")
    page.fill("#id_arg_title", "Review grants")
    page.fill("#id_arg_due_date", "tomorrow")
    page.click("#call-tool")
    expect(page.locator("#id_arg_due_date_error")).to_contain_text("date")
    _shot(page, "21-tool-try-bad-argument")
    page.fill("#id_arg_due_date", "2026-12-24")
    page.click("#call-tool")
    expect(page.locator("#tool-outcome.outcome-ok")).to_be_visible()
    expect(page.locator("#tool-result")).to_contain_text("Review grants")
    expect(page.locator("#audit-link")).to_have_attribute("href", re.compile(r"/admin/tools/toolcall/\?q="))
    _shot(page, "22-tool-try-ok")

    # Edit the tool in admin, then its History shows the change record with the diff.
    page.goto(f"/admin/tools/tool/{tool.pk}/change/")
    page.fill("#id_description", "Creates a follow-up (edited in the browser test)")
    page.click("input[name=_save]")
    page.goto(f"/admin/tools/tool/{tool.pk}/history/")
    record = page.locator("#change-history tr.change-record").first
    expect(record).to_contain_text("user:admin")
    expect(record).to_contain_text("admin")
    expect(record).to_contain_text("edited in the browser test")
    _shot(page, "23-tool-history")

    # An agent's character in the JSON editor: an invalid value shows its error before Save.
    page.goto("/admin/agents/agent/agent:pm/change/")
    editor = page.locator('.json-editor[data-for="character"]')
    expect(editor.locator(".cm-content")).to_contain_text('"bio"')
    _shot(page, "25-agent-character-editor")
    editor.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text('{"bio": 42, "topics": ["planning"]}')
    problems = page.locator('ul.json-errors[data-for="character"] li')
    expect(problems.first).to_contain_text("$.bio", timeout=10_000)
    expect(editor).to_have_class(re.compile("json-invalid"))
    _shot(page, "26-agent-character-invalid")
    page.keyboard.press("Control+A")
    page.keyboard.insert_text('{"bio": ["Plans the work."], "topics": ["planning"]}')
    expect(problems).to_have_count(0, timeout=10_000)
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    from apps.agents.models import Agent

    assert Agent.objects.get(pk="agent:pm").character["bio"] == ["Plans the work."]

    # Usage records: no delete action, and the list fits 1440 px. The test calls above left
    # records in Redis; beat drains them in production, here the test does.
    from apps.llm import usage

    usage.drain_to_database()
    page.goto("/admin/llm/usagerecord/")
    expect(page.locator("#result_list tbody tr").first).to_be_visible()
    expect(page.locator('select[name=action] option[value="delete_selected"]')).to_have_count(0)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1440, f"the usage list is {width} px wide"
    _shot(page, "24-usage-list")
    assert page.console_errors == []

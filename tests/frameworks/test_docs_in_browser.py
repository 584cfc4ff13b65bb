"""The docs pages in a real headless Chromium: Swagger UI served from the app's own
assets renders the operations under the guard's docs Content-Security-Policy, and
"Authorize" with a key's token makes a call that answers 200, with no CSP violation.

Debian's ``chromium`` is driven by the ``playwright`` package with ``executable_path``
(playwright's own browser downloads are never used). Skipped locally when either is
missing; a failure in CI (``CI`` set), where scripts/test installs both.
"""

from __future__ import annotations

import contextlib
import os
import runpy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Blueprint, Flask, render_template_string, request
from flask_swagger_ui import get_swaggerui_blueprint

from guard import Guard
from guard.integrations.docs_pages import DOCS_CSP, pin_inline_scripts
from tests.conftest import LOCAL_CONFIG
from tests.frameworks.test_openapi import smorest_app
from tests.frameworks.test_readme_examples import readme_files
from tests.redis_server import require_binary
from tests.servers import served

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Response, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None

#: What Chromium needs here: run as root, no GPU, no network but loopback.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000  # a generous bound for a loaded machine, not a measurement


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_binary("chromium")
    if sync_playwright is None:
        message = "playwright is not installed (the test extra installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        # A fresh profile in a temporary user-data-dir, removed on close.
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """``serve(app)``: the app's base URL on werkzeug's threaded server on loopback."""
    with contextlib.ExitStack() as stack:

        def start(app: Flask) -> str:
            connection = stack.enter_context(served(app))
            return f"http://{connection.host}:{connection.port}"

        yield start


class Watched:
    """A page, with what went wrong on it: CSP violations, script errors and console
    errors (``problems``), and answers of 400 or more (``refused``, as "status path")."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.page: Page = browser.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.problems: list[str] = []
        self.refused: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"error: {error}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        self.page.on("response", self._response)
        # Chromium also logs violations to the console; the event names the directive.
        self.page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => console.error("
            "'CSP violation: ' + e.effectiveDirective + ' ' + e.blockedURI))"
        )
        self.base = base

    def _console(self, message: ConsoleMessage) -> None:
        # A refused answer is also logged as "Failed to load resource": kept in refused.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(message.text)

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.refused.append(f"{response.status} {response.url.removeprefix(self.base)}")


@pytest.fixture
def docs_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flask:
    """The README's APIFlask app with Swagger UI from flask-swagger-ui's files, as
    written (its settings from the environment, as the README's examples read them)."""
    monkeypatch.setenv("GUARD_SECRET_KEY", "browser-test-secret-key-0123456789abcdef")
    monkeypatch.setenv("GUARD_PEPPER", "browser-test-pepper-0123456789abcdef")
    monkeypatch.setenv("GUARD_STORE_URL", "memory://")
    monkeypatch.setenv("GUARD_FORCE_HTTPS", "false")
    monkeypatch.setenv("GUARD_ALLOW_PLAIN_HTTP", "true")
    path = tmp_path / "docs_app.py"
    path.write_text(readme_files("OpenAPI and docs pages")["docs_app.py"])
    app: Flask = runpy.run_path(str(path))["app"]
    return app


def test_swagger_ui_renders_and_authorize_calls_the_api_with_200(
    browser: Browser, serve: Callable[[Flask], str], docs_app: Flask, guard_token: Any
) -> None:
    base = serve(docs_app)
    token = guard_token(docs_app, "orders:read")
    watched = Watched(browser, base)
    page = watched.page
    page.goto(f"{base}/docs")

    operation = page.locator(".opblock-get", has_text="/orders/{order_id}")
    expect(operation).to_be_visible()

    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.get_by_label("auth-bearer-value").fill(token)
    dialog.get_by_role("button", name="Apply credentials").click()
    expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    dialog.get_by_role("button", name="Close").click()

    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("input[placeholder='order_id']").fill("7")
    with page.expect_response(f"{base}/orders/7") as answer:
        operation.get_by_role("button", name="Execute").click()
    assert answer.value.status == 200
    assert answer.value.request.headers["authorization"] == f"Bearer {token}"
    # What the page shows: the live response's status and body.
    live = operation.locator(".live-responses-table .response")
    expect(live.locator(".response-col_status")).to_have_text("200")
    expect(live.locator(".response-col_description")).to_contain_text('"id": 7')
    assert watched.problems == []
    assert watched.refused == []


def test_swagger_ui_call_without_authorizing_is_refused(
    browser: Browser, serve: Callable[[Flask], str], docs_app: Flask
) -> None:
    base = serve(docs_app)
    watched = Watched(browser, base)
    page = watched.page
    page.goto(f"{base}/docs")
    operation = page.locator(".opblock-get", has_text="/orders/{order_id}")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("input[placeholder='order_id']").fill("7")
    with page.expect_response(f"{base}/orders/7") as answer:
        operation.get_by_role("button", name="Execute").click()
    assert answer.value.status == 401
    live = operation.locator(".live-responses-table .response")
    expect(live.locator(".response-col_status")).to_have_text("401")
    assert watched.problems == []
    assert watched.refused == ["401 /orders/7"]


def test_flask_swagger_ui_own_page_runs_under_the_pinned_policy(
    browser: Browser, serve: Callable[[Flask], str], docs_app: Flask
) -> None:
    # The README's blueprint page: guard.headers(csp=DOCS_CSP) and pin_inline_scripts.
    base = serve(docs_app)
    watched = Watched(browser, base)
    watched.page.goto(f"{base}/swagger-ui/")
    expect(watched.page.locator(".opblock-get", has_text="/orders/{order_id}")).to_be_visible()
    assert watched.problems == []
    assert watched.refused == []


def test_smorest_swagger_ui_renders_its_operations(
    browser: Browser, serve: Callable[[Flask], str]
) -> None:
    app, _, guard = smorest_app()
    # flask-smorest's page loads its assets from OPENAPI_SWAGGER_UI_URL, /swagger-ui/.
    assets = get_swaggerui_blueprint("/swagger-ui", "/openapi.json")
    guard.exempt(assets)
    guard.headers(csp=DOCS_CSP)(assets)
    pin_inline_scripts(assets)
    app.register_blueprint(assets)
    base = serve(app)
    watched = Watched(browser, base)
    watched.page.goto(f"{base}/docs")
    for method, path in [("get", "/orders/"), ("post", "/orders/"), ("get", "/orders/health")]:
        expect(watched.page.locator(f".opblock-{method}", has_text=path).first).to_be_visible()
    assert watched.problems == []
    # flask-smorest's page names no icon, so Chromium may ask for /favicon.ico, which
    # the guard protects like any other path.
    assert set(watched.refused) <= {"401 /favicon.ico"}


#: A docs page whose template shows a note unescaped: an HTML injection.
INJECTABLE_PAGE = """<!doctype html><html><head><title>Help</title></head><body>
<p id="note">{{ note|safe }}</p>
<script>document.body.dataset.own = "ran";</script>
<script src="/help/app.js"></script>
</body></html>"""


def test_an_injected_inline_script_does_not_run_while_the_pages_own_do(
    browser: Browser, serve: Callable[[Flask], str]
) -> None:
    # Review round 3, item 13: the docs policy allowed every inline script on the page
    # when it was sent, so an injected one ran too.
    app = Flask("help")
    app.config.update(LOCAL_CONFIG)
    guard = Guard(app)
    pages = Blueprint("help", __name__, url_prefix="/help")

    @pages.get("/")
    def page() -> str:
        return render_template_string(INJECTABLE_PAGE, note=request.args.get("note", ""))

    @pages.get("/app.js")
    def script() -> tuple[str, int, dict[str, str]]:
        js = 'document.body.dataset.file = "ran";'
        return js, 200, {"Content-Type": "text/javascript"}

    guard.exempt(pages)
    guard.headers(csp=DOCS_CSP)(pages)
    pin_inline_scripts(pages)
    app.register_blueprint(pages)
    base = serve(app)
    injection = (
        '<script>document.body.dataset.injected = "script";</script>'
        '<img src="/help/missing.png" onerror="document.body.dataset.injected = \'handler\'">'
    )
    watched = Watched(browser, base)
    tab = watched.page
    tab.goto(f"{base}/help/?note={quote(injection)}")
    expect(tab.locator("body")).to_have_attribute("data-own", "ran")
    expect(tab.locator("body")).to_have_attribute("data-file", "ran")
    expect(tab.locator("#note img")).to_have_count(1)  # the injection is on the page
    tab.wait_for_load_state("load")
    assert tab.evaluate("document.body.dataset.injected") is None
    violations = [p for p in watched.problems if p.startswith("CSP violation: script-src")]
    assert len(violations) == 2, watched.problems  # the script and the handler, blocked

"""The docs pages' Content-Security-Policy, as sent: the framework's HTML pages run under
DOCS_CSP narrowed to the hashes of their own inline scripts; the OpenAPI document and
every API response keep ``default-src 'none'``. (In a browser: test_docs_in_browser.)"""

from __future__ import annotations

import base64
import hashlib

import pytest
from flask import Flask, Response

from guard import Guard
from guard.integrations.docs_pages import DOCS_CSP, pin_inline_scripts, pinned
from tests.conftest import LOCAL_CONFIG
from tests.frameworks.test_openapi import apiflask_app, smorest_app

API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: The other security headers, which every response keeps.
OTHERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}


def sha256(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def directives(csp: str) -> dict[str, str]:
    return {d.split()[0]: d.partition(" ")[2] for d in (p.strip() for p in csp.split(";")) if d}


def check_pinned(response: Response) -> None:
    """The page's policy is DOCS_CSP with scripts from the app or hashed, none inline."""
    assert response.status_code == 200
    sent = directives(response.headers["Content-Security-Policy"])
    expected = directives(DOCS_CSP)
    script_src = sent.pop("script-src").split()
    expected.pop("script-src")
    assert sent == expected
    assert script_src[0] == "'self'"
    assert script_src[1:], "the page's inline script is hashed"
    assert all(source.startswith("'sha256-") for source in script_src[1:])
    for name, value in OTHERS.items():
        assert response.headers[name] == value


def test_apiflask_docs_pages_run_under_the_docs_policy_and_the_api_keeps_none() -> None:
    client = apiflask_app()[0].test_client()
    check_pinned(client.get("/docs"))
    check_pinned(client.get("/docs/oauth2-redirect"))
    for path in ("/openapi.json", "/orders/1", "/health"):
        response = client.get(path)
        assert response.headers.get_all("Content-Security-Policy") == [API_CSP], path


def test_smorest_docs_pages_run_under_the_docs_policy_and_the_api_keeps_none() -> None:
    client = smorest_app()[0].test_client()
    check_pinned(client.get("/docs"))
    # ReDoc's page starts from a script file, so it has no inline script to allow.
    redoc = directives(client.get("/redoc").headers["Content-Security-Policy"])
    assert redoc["script-src"] == "'self'"
    assert redoc["worker-src"] == "blob:"
    for path in ("/openapi.json", "/orders/", "/orders/health"):
        response = client.get(path)
        assert response.headers.get_all("Content-Security-Policy") == [API_CSP], path


def test_docs_pages_kept_behind_a_key_still_get_the_docs_policy() -> None:
    app, guard = apiflask_app(exempt_docs=False)
    with app.app_context():
        token, _ = guard.keys.create("reader")
    page = app.test_client().get("/docs", headers={"Authorization": f"Bearer {token}"})
    check_pinned(page)


def test_pinned_allows_exactly_the_pages_own_inline_scripts() -> None:
    page = (
        "<html><head><script src='/ui.js'></script><script>start('a')</script></head>"
        "<body><script type='text/javascript'>\r\nstart('b')\r\n</script></body></html>"
    )
    script_src = directives(pinned(page))["script-src"].split()
    # Line breaks as the browser hashes them: after HTML's preprocessing, all LF.
    assert sorted(script_src) == sorted(["'self'", sha256("start('a')"), sha256("\nstart('b')\n")])


def test_a_page_without_inline_scripts_runs_only_the_apps_files() -> None:
    assert directives(pinned("<script src='/ui.js'></script>"))["script-src"] == "'self'"


def own_page_app() -> Flask:
    app = Flask("shop")
    app.config.update(LOCAL_CONFIG)
    guard = Guard(app)

    @app.get("/help")
    @guard.exempt
    @guard.headers(csp=DOCS_CSP)
    def help_page() -> str:
        return "<script>show()</script>"

    @app.get("/help.json")
    @guard.exempt
    @guard.headers(csp=DOCS_CSP)
    def help_json() -> dict[str, str]:
        return {"help": "<script>show()</script>"}

    app.after_request(pin_inline_scripts)
    return app


@pytest.mark.parametrize(
    ("path", "script_src"),
    [
        ("/help", f"'self' {sha256('show()')}"),
        ("/help.json", "'self' 'unsafe-inline'"),  # not HTML: as guard.headers gave it
    ],
)
def test_an_apps_own_page_is_pinned_as_an_after_request_function(
    path: str, script_src: str
) -> None:
    response = own_page_app().test_client().get(path)
    assert directives(response.headers["Content-Security-Policy"])["script-src"] == script_src

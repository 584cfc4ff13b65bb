"""The docs pages' Content-Security-Policy, as sent: the framework's HTML pages run under
DOCS_CSP with a nonce per request, which only the inline ``<script>`` tags their own
templates declare carry; the OpenAPI document and every API response keep
``default-src 'none'``. (In a browser: test_docs_in_browser.)"""

from __future__ import annotations

import re

import pytest
from flask import Blueprint, Flask, Response, render_template_string, request

from guard import Guard
from guard.integrations.docs_pages import DOCS_CSP, pin_inline_scripts
from tests.conftest import LOCAL_CONFIG
from tests.frameworks.test_openapi import apiflask_app, smorest_app

API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: The other security headers, which every response keeps.
OTHERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}
#: A script start tag, and the nonce it carries.
SCRIPT_TAG = re.compile(r"<script[^>]*>", re.IGNORECASE)
NONCE = re.compile(r'nonce="([^"]+)"')


def directives(csp: str) -> dict[str, str]:
    return {d.split()[0]: d.partition(" ")[2] for d in (p.strip() for p in csp.split(";")) if d}


def nonce_of(response: Response) -> str:
    """The page's policy is DOCS_CSP with a nonce for scripts, none inline; returns it."""
    assert response.status_code == 200
    sent = directives(response.headers["Content-Security-Policy"])
    expected = directives(DOCS_CSP)
    script_src = sent.pop("script-src").split()
    assert expected.pop("script-src") == "'self'"
    assert sent == expected
    [own, nonce] = script_src
    assert own == "'self'"
    assert re.fullmatch(r"'nonce-[A-Za-z0-9_-]{22,}'", nonce)
    for name, value in OTHERS.items():
        assert response.headers[name] == value
    return nonce[len("'nonce-") : -1]


def check_pinned(response: Response) -> None:
    """Every inline script of the page carries the nonce its policy allows."""
    nonce = nonce_of(response)
    tags = [t for t in SCRIPT_TAG.findall(response.get_data(as_text=True)) if "src=" not in t]
    assert tags, "the page starts its UI with an inline script"
    assert [NONCE.findall(tag) for tag in tags] == [[nonce]] * len(tags)


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
    # ReDoc's page starts from a script file: its nonce is given to no element.
    redoc = client.get("/redoc")
    nonce_of(redoc)
    assert NONCE.findall(redoc.get_data(as_text=True)) == []
    assert directives(redoc.headers["Content-Security-Policy"])["worker-src"] == "blob:"
    for path in ("/openapi.json", "/orders/", "/orders/health"):
        response = client.get(path)
        assert response.headers.get_all("Content-Security-Policy") == [API_CSP], path


def test_docs_pages_kept_behind_a_key_still_get_the_docs_policy() -> None:
    app, guard = apiflask_app(exempt_docs=False)
    with app.app_context():
        token, _ = guard.keys.create("reader")
    page = app.test_client().get("/docs", headers={"Authorization": f"Bearer {token}"})
    check_pinned(page)


def test_each_request_is_issued_its_own_nonce() -> None:
    client = apiflask_app()[0].test_client()
    assert nonce_of(client.get("/docs")) != nonce_of(client.get("/docs"))


PAGE = """<html><head><script src="/ui.js"></script>
<script>start({{ url|tojson }})</script></head>
<body><p>{{ note|safe }}</p><SCRIPT type="text/javascript">
finish()
</SCRIPT>{% if late %}<script>late()</script>{% endif %}
<script {{ attributes }}>unsure()</script></body></html>"""


def own_pages() -> tuple[Flask, Blueprint]:
    """An app's own help pages, from a template that shows a note unescaped (an HTML
    injection), pinned on their blueprint; and a JSON view beside them."""
    app = Flask("shop")
    app.config.update(LOCAL_CONFIG)
    guard = Guard(app)
    pages = Blueprint("help", __name__)

    @pages.get("/help")
    def help_page() -> str:
        return render_template_string(
            PAGE,
            url="/openapi.json",
            note=request.args.get("note", ""),
            late=True,
            attributes=request.args.get("attributes", ""),
        )

    @pages.get("/help.json")
    def help_json() -> dict[str, str]:
        return {"help": "<script>show()</script>"}

    guard.exempt(pages)
    guard.headers(csp=DOCS_CSP)(pages)
    pin_inline_scripts(pages)
    app.register_blueprint(pages)
    return app, pages


def test_only_the_scripts_the_pages_template_declares_get_the_nonce() -> None:
    # Review round 3, item 13: the policy allowed every inline script the page held
    # when sent, those an HTML injection put there included.
    client = own_pages()[0].test_client()
    injected = "<script>steal()</script><img src=x onerror=steal()>"
    page = client.get("/help", query_string={"note": injected, "attributes": "src=/x.js"})
    nonce = nonce_of(page)
    html = page.get_data(as_text=True)
    assert "<p><script>steal()</script>" in html  # the injection is there, without nonce
    declared = [NONCE.findall(tag) == [nonce] for tag in SCRIPT_TAG.findall(html)]
    # The file and the tag with a rendered attribute get none; the three written whole do.
    assert declared == [False, True, False, True, True, False]


def test_a_pinned_blueprints_json_keeps_the_policy_it_was_given() -> None:
    response = own_pages()[0].test_client().get("/help.json")
    assert response.headers.get_all("Content-Security-Policy") == [DOCS_CSP]
    assert directives(DOCS_CSP)["script-src"] == "'self'"  # alone, no inline script runs


def test_pages_rendered_outside_pinned_views_are_left_as_written() -> None:
    app, _ = own_pages()

    @app.get("/other")
    def other() -> str:
        return render_template_string("<script>plain()</script>")

    with app.test_request_context():
        assert render_template_string("<script>x()</script>") == "<script>x()</script>"
    token_free = app.test_client().get("/other", headers={"Authorization": "Bearer x"})
    assert token_free.status_code == 401  # the app's other views stay protected
    with app.app_context():
        assert render_template_string("<script>y()</script>") == "<script>y()</script>"


def test_pin_inline_scripts_registered_as_an_after_request_function_fails_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As earlier versions were used: too late to give the templates a nonce.
    app = Flask("shop")
    app.config.update(LOCAL_CONFIG)
    guard = Guard(app)

    @app.get("/help")
    @guard.exempt
    @guard.headers(csp=DOCS_CSP)
    def help_page() -> str:
        return render_template_string("<script>show()</script>")

    app.after_request(pin_inline_scripts)  # type: ignore[type-var]
    response = app.test_client().get("/help")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == DOCS_CSP
    assert any("pin_inline_scripts(blueprint)" in r.getMessage() for r in caplog.records)

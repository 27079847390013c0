"""The interactive API page at /docs is drawn from the same document as /openapi.json."""

from __future__ import annotations

import re


def test_docs_page_loads_swagger_ui_from_openapi_json(system):
    page = system.client.get("/docs")
    assert page.status_code == 200
    assert page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert "swagger-ui" in html
    assert re.findall(r'url: "([^"]+)"', html) == ["/openapi.json"]


def test_the_document_behind_the_docs_describes_every_endpoint(system):
    document = system.client.get("/openapi.json")
    assert document.status_code == 200
    assert document.json["openapi"].startswith("3.")
    assert {
        "/auth/register",
        "/auth/confirm",
        "/auth/resend-code",
        "/auth/login",
        "/auth/me",
        "/healthz",
        "/readyz",
    } <= set(document.json["paths"])

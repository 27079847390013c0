"""The interactive API page at /docs is drawn from the same document as /openapi.json."""

from __future__ import annotations

import re
from pathlib import Path

from auth_service.domain import errors as domain_errors
from auth_service.domain.errors import AuthError


def test_docs_page_loads_swagger_ui_from_openapi_json(system):
    page = system.client.get("/docs")
    assert page.status_code == 200
    assert page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert "swagger-ui" in html
    assert re.findall(r'data-spec-url="([^"]+)"', html) == ["/openapi.json"]
    bundle, initializer = re.findall(r'<script src="(/[^"]+)"', html)
    script = system.client.get(initializer)
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.get_data(as_text=True) and "specUrl" in script.get_data(as_text=True)
    [stylesheet] = re.findall(r'<link href="(/[^"]+)"', html)
    for asset in (bundle, stylesheet):
        served = system.client.get(asset)
        assert served.status_code == 200 and len(served.data) > 1000, asset


def test_only_swagger_ui_files_the_page_loads_are_served(system):
    assert system.client.get("/docs/swagger-ui/swagger-ui-bundle.js").status_code == 200
    for path in ("/docs/swagger-ui/index.html", "/docs/swagger-ui/../__init__.py", "/docs/swagger-ui/nothing.js"):
        answer = system.client.get(path)
        assert answer.status_code == 404 and answer.json["error"] == "not_found", path


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


def test_the_docs_page_has_a_policy_of_its_own_and_every_other_answer_the_strict_one(system):
    docs = system.client.get("/docs")
    docs_policy = docs.headers["Content-Security-Policy"]
    assert "script-src 'self';" in docs_policy
    assert "http" not in docs_policy, "the page loads nothing from another origin"
    assert "frame-ancestors 'none'" in docs_policy
    for response in (
        system.client.get("/openapi.json"),
        system.client.get("/healthz"),
        system.client.post("/auth/login", json={"email": "a@example.com", "password": "x"}),
        system.client.get("/nowhere"),
    ):
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none';")
    for response in (docs, system.client.get("/healthz")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_api_reference_has_a_section_for_every_operation_and_explains_every_error(system):
    """docs/api.md, for app developers: a new endpoint or error code needs its place there."""
    reference = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    headings = [line for line in reference.splitlines() if line.startswith("### ")]
    document = system.client.get("/openapi.json").json
    missing = [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
        if method != "parameters"  # a path's own parameters ({session_id}), not an operation
        and not any(method.upper() in heading and path in heading.split() for heading in headings)
    ]
    assert missing == [], "docs/api.md has no section for these"
    codes = {cls.code for cls in vars(domain_errors).values() if isinstance(cls, type) and issubclass(cls, AuthError)}
    codes |= {"bad_request", "payload_too_large"}
    table = reference[reference.index("## Errors: what to show the user") :]
    assert sorted(code for code in codes - {"error"} if f" {code}`" not in table) == []

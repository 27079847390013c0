"""Headers that keep a browser from doing anything with the API's answers but read them.

Every answer is JSON except the ``/docs`` page, so the policy everywhere
loads nothing, runs nothing and may not be framed (OWASP REST Security Cheat
Sheet). ``/docs`` gets the least Swagger UI needs: its script and stylesheet
(served by this service, docs_assets.py), our own initializer script (no inline script, so no
``'unsafe-inline'`` for scripts), inline styles and ``data:`` images (Swagger
UI sets styles and draws icons that way), and fetches to this origin only.
The admin console's pages (admin/console.py) get less still: their one
stylesheet from this origin, their forms posting back, and nothing else.
"""

from __future__ import annotations

from flask import Flask, request

DOCS_ENDPOINT = "api-docs.openapi_swagger_ui"
CONSOLE_BLUEPRINT = "admin_console"

BASELINE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
# What waitress answers by itself (a body over the cap, say) carries the same headers.
API_HEADERS = {**BASELINE, "Content-Security-Policy": API_POLICY}


def docs_policy() -> str:
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


CONSOLE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def install(app: Flask) -> None:
    docs_headers = {**BASELINE, "Content-Security-Policy": docs_policy()}
    console_headers = {**BASELINE, "Content-Security-Policy": CONSOLE_POLICY}

    @app.after_request
    def add_security_headers(response):
        if request.endpoint == DOCS_ENDPOINT:
            response.headers.update(docs_headers)
        elif request.blueprint == CONSOLE_BLUEPRINT:
            response.headers.update(console_headers)
        else:
            response.headers.update(API_HEADERS)
        return response

"""Swagger UI's files for ``/docs``, served from the ``swagger-ui-bundle`` package.

The page then needs nothing outside this service: it renders on a closed
network, and its Content-Security-Policy names no other origin. The files are
Swagger UI's own release (Apache-2.0, licence in the package's metadata).
"""

from __future__ import annotations

from flask import Flask, abort, send_from_directory
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/docs/swagger-ui/"
# Only what the page loads: the bundle, its stylesheet, their source maps and the icon.
SERVED = frozenset(
    {"swagger-ui-bundle.js", "swagger-ui-bundle.js.map", "swagger-ui.css", "swagger-ui.css.map", "favicon-32x32.png"}
)


def install(app: Flask) -> None:
    def asset(filename: str):
        if filename not in SERVED:
            abort(404)
        # A release's files never change under their URL; the package's version pins them.
        return send_from_directory(str(swagger_ui_path), filename, max_age=86400)

    app.add_url_rule(ASSETS_URL + "<path:filename>", "docs_asset", asset, methods=["GET"])

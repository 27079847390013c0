"""``GET /.well-known/jwks.json``: the public keys access tokens are verified with.

Served from the key ring in memory (no database read per request), with the
cache time other services and gateways may keep it: a new key is published at
least that long before it signs (docs/security.md, "Signing keys").
"""

from __future__ import annotations

import hashlib

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import fields

from auth_service.entrypoints.http.schemas import Schema

well_known = Blueprint("well_known", __name__, url_prefix="/.well-known", description="Keys to verify tokens with")


class PublicKey(Schema):
    kid = fields.String(required=True)
    kty = fields.String(required=True, metadata={"description": "EC, OKP or RSA"})
    alg = fields.String(
        required=True, metadata={"description": "ES256, EdDSA or RS256: the only one this key verifies"}
    )
    use = fields.String(required=True, metadata={"example": "sig"})
    crv = fields.String(metadata={"description": "P-256 (EC) or Ed25519 (OKP)"})
    x = fields.String()
    y = fields.String()
    n = fields.String()
    e = fields.String()


class KeySetResponse(Schema):
    keys = fields.List(fields.Nested(PublicKey), required=True)


class Jwks(MethodView):
    @well_known.response(200, KeySetResponse)
    def get(self):
        """The JWK Set of the keys that sign access tokens (public halves only). Empty with JWT_ALGORITHM=HS256."""
        document = current_app.extensions["auth_service"].keys.current().jwks
        etag = '"' + hashlib.sha256(document).hexdigest()[:32] + '"'
        max_age = current_app.config["JWKS_MAX_AGE_SECONDS"]
        headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": etag}
        if etag in request.headers.get("If-None-Match", ""):
            return Response(status=304, headers=headers)
        return Response(document, status=200, mimetype="application/json", headers=headers)


well_known.add_url_rule("/jwks.json", endpoint="jwks", view_func=Jwks)

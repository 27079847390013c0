"""The private half of a stored signing key (and a webhook's secret), sealed with AES-256-GCM. Pure Python, no I/O.

The sealing key is derived from JWT_SECRET with HKDF-SHA256 under a label of
its own, so it is never the secret itself and no other use of the secret can
produce it. The key's ``kid`` is the associated data: a sealed private part
copied onto another key's record does not open.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HKDF_INFO = b"auth-service signing keys v1"
# Webhook secrets are sealed the same way, under a key of their own.
WEBHOOK_SECRETS_INFO = b"auth-service webhook secrets v1"
HKDF_SALT = b"auth-service signing key sealing"
NONCE_BYTES = 12
FORMAT = "v1"


class UnsealError(Exception):
    """A sealed key that does not open: another JWT_SECRET sealed it, or it was altered."""


class KeySealer:
    def __init__(self, secret: str, info: bytes = HKDF_INFO):
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=info).derive(secret.encode())
        self._aead = AESGCM(derived)

    def seal(self, kid: str, private_jwk: Mapping[str, Any]) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(dict(private_jwk)).encode(), kid.encode())
        return f"{FORMAT}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, kid: str, sealed: str) -> dict[str, Any]:
        version, _, payload = sealed.partition(".")
        if version != FORMAT:
            raise UnsealError(f"unknown sealing format {version!r}")
        try:
            raw = base64.urlsafe_b64decode(payload)
            opened = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], kid.encode())
        except (InvalidTag, ValueError):
            raise UnsealError("the key does not open with this JWT_SECRET") from None
        jwk = json.loads(opened)
        if not isinstance(jwk, dict):
            raise UnsealError("the sealed key is not a JWK")
        return jwk

"""DKIM signatures (RFC 6376) for the mails the worker sends over SMTP, made with dkimpy.

relaxed/relaxed canonicalization, which survives the header folding and
whitespace changes relays make; the key is RSA (2048 bits or more,
``rsa-sha256``) or Ed25519 (``ed25519-sha256``, RFC 8463), read once from a
PEM file. The provider roads (SES, Postmark) sign with the provider's key
for the domain instead (docs/mail.md).
"""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

# The headers a signature covers: the ones a reader trusts, and those a replay would change.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"auto-submitted",
)
MINIMUM_RSA_BITS = 2048


class DkimSigner:
    def __init__(self, domain: str, selector: str, private_key_pem: bytes):
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < MINIMUM_RSA_BITS:
                raise ValueError(f"a DKIM RSA key needs at least {MINIMUM_RSA_BITS} bits")
            self._key = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
            self._algorithm = b"rsa-sha256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            # dkimpy takes an Ed25519 key as its 32 raw bytes, base64-encoded.
            raw = key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            self._key = base64.b64encode(raw)
            self._algorithm = b"ed25519-sha256"
        else:
            raise ValueError("a DKIM key is RSA or Ed25519")
        self._domain = domain.encode()
        self._selector = selector.encode()

    @classmethod
    def from_file(cls, domain: str, selector: str, path: Path) -> DkimSigner:
        return cls(domain, selector, path.read_bytes())

    def __call__(self, message: bytes) -> bytes:
        """``message`` with its DKIM-Signature header in front."""
        signature = dkim.sign(
            message,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
            signature_algorithm=self._algorithm,
            linesep=b"\r\n",
        )
        return signature + message


def dns_record(private_key_pem: bytes) -> str:
    """The TXT record to publish at ``<selector>._domainkey.<domain>`` for this key."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    raise ValueError("a DKIM key is RSA or Ed25519")

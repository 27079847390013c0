"""Token signing keys and their schedule. Pure Python, no I/O.

A key is a private JWK with a ``kid`` and the one algorithm it signs with;
what the JWKS publishes is its public half. Keys kept by the service itself
follow a schedule decided by their timestamps alone, so that every replica
reading the same keys reaches the same verdict at the same moment:

    published_at          signs_from               next.signs_from       removable
        |--- publish lead ---|------- signs ------------|--- token life ---|
        (in the JWKS, idle)  (signs every new token)      (still published)

- a key is published ``publish_lead`` (JWKS_MAX_AGE_SECONDS) before it signs,
  so a verifier that cached the JWKS just before has it by then;
- the newest key whose ``signs_from`` has passed signs; the one before it
  retires at that moment;
- a retired key stays published until every token it signed has expired
  (``token_life``: the access-token lifetime plus leeway and the time a
  replica may take to notice the successor), then it may be removed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ES256 = "ES256"
EDDSA = "EdDSA"
RS256 = "RS256"
HS256 = "HS256"
ASYMMETRIC_ALGORITHMS = (ES256, EDDSA, RS256)
ALGORITHMS = (*ASYMMETRIC_ALGORITHMS, HS256)
RSA_KEY_BITS = 3072

# The members of a JWK that hold private material; the public half is the key without them.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_TYPES = {ES256: ("EC", "P-256"), EDDSA: ("OKP", "Ed25519"), RS256: ("RSA", None)}


class BadSigningKey(ValueError):
    """A JWK that cannot be a signing key of ours (no kid, no private part, an algorithm it does not fit)."""


@dataclass(frozen=True)
class SigningKey:
    """One key: ``kid``, its algorithm, the private JWK, and the key objects PyJWT signs and verifies with."""

    kid: str
    alg: str
    private_jwk: Mapping[str, Any] = field(repr=False)
    signer: Any = field(repr=False, compare=False)
    verifier: Any = field(repr=False, compare=False)

    @property
    def public_jwk(self) -> dict[str, Any]:
        public = {name: value for name, value in self.private_jwk.items() if name not in PRIVATE_MEMBERS}
        public.update(kid=self.kid, alg=self.alg, use="sig")
        public.pop("key_ops", None)
        return public


def new_kid() -> str:
    return secrets.token_urlsafe(12)


def generate_key(alg: str, kid: str | None = None) -> SigningKey:
    """A fresh private key for ``alg`` (one of ASYMMETRIC_ALGORITHMS)."""
    if alg == ES256:
        private: Any = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private, as_dict=True)
    elif alg == EDDSA:
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private, as_dict=True)
    elif alg == RS256:
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        jwk = RSAAlgorithm.to_jwk(private, as_dict=True)
    else:
        raise BadSigningKey(f"cannot generate a key for {alg!r}: one of {', '.join(ASYMMETRIC_ALGORITHMS)}")
    return key_from_jwk({**jwk, "kid": kid or new_kid(), "alg": alg, "use": "sig"})


def key_from_jwk(jwk: Mapping[str, Any]) -> SigningKey:
    """The signing key a private JWK describes; its ``alg`` is the one it fits (EC P-256: ES256,
    OKP Ed25519: EdDSA, RSA: RS256) and must agree with the JWK's own ``alg`` if it names one."""
    if not isinstance(jwk, Mapping):
        raise BadSigningKey("a key must be a JSON object (a JWK)")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 200:
        raise BadSigningKey("every key needs a 'kid' (a non-empty string)")
    fitting = [alg for alg, (kty, crv) in _KEY_TYPES.items() if jwk.get("kty") == kty and jwk.get("crv") == crv]
    if not fitting:
        raise BadSigningKey(f"key {kid!r}: kty/crv must be EC P-256, OKP Ed25519 or RSA")
    alg = fitting[0]
    if jwk.get("alg", alg) != alg:
        raise BadSigningKey(f"key {kid!r}: alg {jwk.get('alg')!r} does not fit its key type (expected {alg})")
    if jwk.get("use", "sig") != "sig":
        raise BadSigningKey(f"key {kid!r}: use must be 'sig'")
    if "d" not in jwk:
        raise BadSigningKey(f"key {kid!r} has no private part ('d'): the service signs with it")
    if alg == RS256 and len(jwt.utils.base64url_decode(str(jwk.get("n", "")))) * 8 < 2048:
        raise BadSigningKey(f"key {kid!r}: an RSA key must have at least 2048 bits")
    try:
        signer = jwt.PyJWK(dict(jwk), algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as error:
        raise BadSigningKey(f"key {kid!r} cannot be read: {error}") from None
    return SigningKey(kid=kid, alg=alg, private_jwk=dict(jwk), signer=signer, verifier=signer.public_key())


def shared_secret_key(secret: str) -> SigningKey:
    """HS256 under JWT_SECRET: signer and verifier are the secret, nothing is published. The ``kid``
    names the secret without revealing it, so that a changed secret is a different key."""
    kid = "hs-" + hashlib.sha256(b"auth-service token key id\x00" + secret.encode()).hexdigest()[:16]
    return SigningKey(kid=kid, alg=HS256, private_jwk={}, signer=secret.encode(), verifier=secret.encode())


@dataclass(frozen=True)
class KeySet:
    """What signs now, what verifies, and the JWKS document (precomputed: it is served from memory)."""

    signing: SigningKey
    verifying: Mapping[str, SigningKey]
    jwks: bytes

    @classmethod
    def of(cls, signing: SigningKey, published: Sequence[SigningKey]) -> KeySet:
        verifying = {key.kid: key for key in published}
        verifying[signing.kid] = signing
        public = [key.public_jwk for key in published if key.alg in ASYMMETRIC_ALGORITHMS]
        return cls(signing, verifying, json.dumps({"keys": public}, separators=(",", ":")).encode())


@dataclass(frozen=True)
class KeyRecord:
    """A key the service keeps itself, with its place in the schedule (``generation`` counts up by one)."""

    key: SigningKey
    generation: int
    published_at: datetime
    signs_from: datetime


@dataclass(frozen=True)
class KeySchedule:
    rotation: timedelta  # JWT_KEY_ROTATION_DAYS: from one key's first signature to the next's
    publish_lead: timedelta  # JWKS_MAX_AGE_SECONDS: published this long before it signs
    token_life: timedelta  # how long after a key retires a token it signed may still be presented

    def signing(self, records: Iterable[KeyRecord], now: datetime) -> KeyRecord | None:
        started = [record for record in records if record.signs_from <= now]
        return max(started, key=lambda record: record.generation, default=None)

    def retired_at(self, record: KeyRecord, records: Iterable[KeyRecord]) -> datetime | None:
        """When ``record`` stops signing: its successor's ``signs_from``, if it has one."""
        later = [other.signs_from for other in records if other.generation > record.generation]
        return min(later, default=None)

    def removable(self, records: Sequence[KeyRecord], now: datetime) -> list[KeyRecord]:
        """Retired keys whose last token has expired."""
        gone = []
        for record in records:
            retired = self.retired_at(record, records)
            if retired is not None and retired <= now and now >= retired + self.token_life:
                gone.append(record)
        return gone

    def rotation_due(self, records: Sequence[KeyRecord], now: datetime, alg: str) -> bool:
        """No key yet, the newest has signed for a period less the lead, or it is of another algorithm
        than the configured one (JWT_ALGORITHM changed: the next key is of the new one)."""
        if not records:
            return True
        newest = max(records, key=lambda record: record.generation)
        if newest.key.alg != alg:
            return True
        return now >= newest.signs_from + self.rotation - self.publish_lead

    def successor(self, records: Sequence[KeyRecord], key: SigningKey, now: datetime) -> KeyRecord:
        """The next key: published now, signing after the lead; the very first signs at once
        (no verifier can have cached a JWKS without it: there was none)."""
        if not records:
            return KeyRecord(key, 1, now, now)
        generation = max(record.generation for record in records) + 1
        return KeyRecord(key, generation, now, now + self.publish_lead)

    def key_set(self, records: Sequence[KeyRecord], now: datetime) -> KeySet | None:
        signing = self.signing(records, now)
        if signing is None:
            return None
        removable = {record.key.kid for record in self.removable(records, now)}
        published = [
            record.key for record in sorted(records, key=lambda r: -r.generation) if record.key.kid not in removable
        ]
        return KeySet.of(signing.key, published)

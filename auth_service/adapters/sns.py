"""Checking that an SNS message comes from Amazon SNS, and confirming a subscription.

Each message names the certificate that signed it (``SigningCertURL``); it is
fetched only from ``https://sns.<region>.amazonaws.com/...pem`` (never from a
URL a forger chose), once per URL, and kept. The signature (SHA1withRSA for
``SignatureVersion`` 1, SHA256withRSA for 2) must verify over the message's
fields in the documented order. A signature proves SNS sent it, not that the
topic is ours: the topics are checked against ``SES_SNS_TOPIC_ARNS`` first.
Tests trust a certificate of their own (``SNS_TRUSTED_CERTIFICATE_FILE``):
it then stands for every allowed URL, and nothing is fetched.
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from auth_service.domain.mail_reports import UnreadableReport, sns_string_to_sign

SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com")
FETCH_TIMEOUT_SECONDS = 5.0
MAX_CERTIFICATE_BYTES = 64 * 1024
MAX_CACHED = 32


class SnsRefused(Exception):
    """Not a message SNS signed for one of our topics."""


def sns_url(url: object, suffix: str = "") -> str:
    """``url`` if it is an https URL on an SNS host (ending with ``suffix``), else ``SnsRefused``."""
    if not isinstance(url, str):
        raise SnsRefused("no URL")
    parts = urllib.parse.urlsplit(url)
    if (
        parts.scheme != "https"
        or parts.hostname is None
        or not SNS_HOST.fullmatch(parts.hostname)
        or parts.port not in (None, 443)
        or parts.username is not None
        or not parts.path.endswith(suffix)
    ):
        raise SnsRefused("URL not on an SNS host")
    return url


def fetch_https(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as answer:  # noqa: S310 (https, SNS host checked)
        return answer.read(MAX_CERTIFICATE_BYTES)


class SnsVerifier:
    def __init__(
        self,
        topic_arns: frozenset[str],
        trusted_certificate: bytes | None = None,
        fetch: Callable[[str], bytes] = fetch_https,
    ):
        self._topics = topic_arns
        self._fetch = fetch
        self._trusted = _public_key(trusted_certificate) if trusted_certificate is not None else None
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def verify(self, message: dict[str, Any]) -> None:
        if message.get("TopicArn") not in self._topics:
            raise SnsRefused("topic not allowed")
        try:
            signed = sns_string_to_sign(message)
        except UnreadableReport as error:
            raise SnsRefused(str(error)) from None
        version = message.get("SignatureVersion")
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()  # noqa: S303 (SNS's SignatureVersion 1 is SHA1withRSA)
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise SnsRefused("unknown SignatureVersion")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except ValueError:
            raise SnsRefused("Signature is not base64") from None
        key = self._key(sns_url(message.get("SigningCertURL"), suffix=".pem"))
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SnsRefused("bad signature") from None

    def _key(self, url: str) -> rsa.RSAPublicKey:
        if self._trusted is not None:
            return self._trusted
        with self._lock:
            key = self._keys.get(url)
        if key is None:
            try:
                key = _public_key(self._fetch(url))
            except (OSError, ValueError) as error:
                raise SnsRefused(f"signing certificate not available: {type(error).__name__}") from None
            with self._lock:
                if len(self._keys) >= MAX_CACHED:
                    self._keys.clear()
                self._keys[url] = key
        return key

    def confirm_subscription(self, message: dict[str, Any], get: Callable[[str], bytes] = fetch_https) -> None:
        """Visit the SubscribeURL of a (verified) SubscriptionConfirmation: the subscription starts."""
        get(sns_url(message.get("SubscribeURL")))


def _public_key(pem: bytes) -> rsa.RSAPublicKey:
    key = x509.load_pem_x509_certificate(pem).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("an SNS signing certificate holds an RSA key")
    return key

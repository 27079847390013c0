"""Postmark as a road out: its HTTP API (``POST /email``) over one kept HTTPS connection per thread.

Postmark takes the mail as fields, not as MIME: the subject, both parts, and
our Message-ID and Auto-Submitted headers. Open and link tracking are turned
off on every mail (no pixel, no rewritten link). Failures follow Postmark's
documented API error codes: 406 (inactive recipient: it bounced hard or
complained before) refuses the address; 300 (invalid request) the message;
a bad token, an unconfirmed sender or a paused account is ours to fix and
another road may take the mail meanwhile, as may a 429 or a 5xx.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

from email_service.ports import OutgoingMail, PermanentMailError, RecipientRefused, TransientMailError

INACTIVE_RECIPIENT = 406
# Sender signature not found or not confirmed, bad token, not allowed to send, account pending
# approval, inactive message stream: about our account, not this mail.
ACCOUNT_ERROR_CODES = frozenset({10, 400, 401, 405, 412, 1235})
# Kept connections unused this long are closed and opened again (servers close idle ones).
IDLE_SECONDS = 30.0


@dataclass
class _Kept:
    connection: http.client.HTTPConnection
    used_at: float


class PostmarkTransport:
    name = "postmark"

    def __init__(self, api_url: str, server_token: str, timeout_seconds: float = 10.0, stream: str = "outbound"):
        parsed = urllib.parse.urlsplit(api_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("POSTMARK_API_URL must be an http(s) URL")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port
        self._path = (parsed.path.rstrip("/") or "") + "/email"
        self._token = server_token
        self._timeout = timeout_seconds
        self._stream = stream
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[http.client.HTTPConnection] = set()

    def deliver(self, mail: OutgoingMail) -> None:
        body = json.dumps(
            {
                "From": mail.sender,
                "To": ", ".join(mail.recipients),
                "Subject": mail.subject,
                "TextBody": mail.body,
                "HtmlBody": mail.html,
                "Headers": [
                    {"Name": "Message-ID", "Value": mail.message_id_header},
                    {"Name": "Auto-Submitted", "Value": "auto-generated"},
                ],
                "MessageStream": self._stream,
                "TrackOpens": False,
                "TrackLinks": "None",
            }
        ).encode()
        status, answer = self._post(body)
        if status == 200:
            return
        raise classify(status, answer)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Postmark-Server-Token": self._token,
        }
        kept: _Kept | None = getattr(self._local, "kept", None)
        if kept is not None and time.monotonic() - kept.used_at >= IDLE_SECONDS:
            self._drop()
            kept = None
        reused = kept is not None
        for attempt in (1, 2):
            if kept is None:
                kept = self._open()
            try:
                kept.connection.request("POST", self._path, body=body, headers=headers)
                response = kept.connection.getresponse()
                answer = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                self._drop()
                kept = None
                # A kept connection the server had closed: the request never reached it; once more.
                if reused and attempt == 1:
                    continue
                raise TransientMailError(f"postmark: {type(error).__name__}") from None
            except (OSError, http.client.HTTPException) as error:
                self._drop()
                raise TransientMailError(f"postmark: {type(error).__name__}") from None
            kept.used_at = time.monotonic()
            if response.will_close:
                self._drop()
            return response.status, answer
        raise AssertionError("unreachable")

    def _open(self) -> _Kept:
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        with self._lock:
            self._all.add(connection)
        kept = _Kept(connection, time.monotonic())
        self._local.kept = kept
        return kept

    def _drop(self) -> None:
        kept: _Kept | None = getattr(self._local, "kept", None)
        self._local.kept = None
        if kept is not None:
            with self._lock:
                self._all.discard(kept.connection)
            kept.connection.close()

    def close(self) -> None:
        with self._lock:
            connections, self._all = list(self._all), set()
        for connection in connections:
            connection.close()


def classify(status: int, answer: bytes) -> Exception:
    """The worker's kind of failure for a Postmark answer other than 200."""
    try:
        parsed = json.loads(answer or b"{}")
        code = int(parsed.get("ErrorCode", -1)) if isinstance(parsed, dict) else -1
    except (ValueError, TypeError):
        code = -1
    if status == 429 or status >= 500:
        return TransientMailError(f"postmark: HTTP {status}")
    if status == 401 or code in ACCOUNT_ERROR_CODES:
        return TransientMailError(f"postmark: HTTP {status} error {code}")
    if code == INACTIVE_RECIPIENT:
        return RecipientRefused(f"postmark: error {code} (inactive recipient)", transport="postmark")
    return PermanentMailError(f"postmark: HTTP {status} error {code}")

"""Local stand-ins for the mail providers, for tests and the bench: nothing leaves the machine.

``FakePostmark`` answers Postmark's ``POST /email`` as its API documents it
(the server token header, the JSON fields, error code 406 for an inactive
recipient, 300 for an invalid request, 10 for a bad token) over HTTP/1.1
keep-alive, and keeps what it accepted; it can be made to fail (a status such
as 503) for a while. ``SesStandIn`` is moto's server (a dev dependency) on
loopback, with the sender's identity verified; the mails SES accepted are
read from moto's own store in this process.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import logging
import socket
import threading
import time
import uuid
from typing import Any

from devtools.mailsink import ReceivedMail, free_port

TOKEN_HEADER = "X-Postmark-Server-Token"
MOTO_ACCOUNT = "123456789012"


class FakePostmark:
    def __init__(self, token: str = "postmark-test-token"):  # noqa: S107 (the stand-in's own)
        self.token = token
        self.accepted: list[ReceivedMail] = []
        self.inactive: set[str] = set()
        # A status to answer every request with while set (503: an outage, 429: rate limited).
        self.failing_status: int | None = None
        self.requests = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-postmark", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakePostmark:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def mails_to(self, recipient: str) -> list[ReceivedMail]:
        with self._lock:
            return [mail for mail in self.accepted if mail.recipient == recipient.lower()]

    def all(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self.accepted)

    def _answer(self, headers, body: bytes) -> tuple[int, dict]:
        with self._lock:
            self.requests += 1
        if self.failing_status is not None:
            return self.failing_status, {"ErrorCode": 0, "Message": "Service unavailable"}
        if headers.get(TOKEN_HEADER) != self.token:
            return 401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}
        if "application/json" not in (headers.get("Content-Type") or "") or "application/json" not in (
            headers.get("Accept") or ""
        ):
            return 415, {"ErrorCode": 0, "Message": "Accept and Content-Type must be application/json."}
        try:
            message = json.loads(body)
        except ValueError:
            return 422, {"ErrorCode": 402, "Message": "Invalid JSON"}
        fields = ("From", "To", "Subject")
        if not isinstance(message, dict) or any(not message.get(name) for name in fields):
            return 422, {"ErrorCode": 300, "Message": "Invalid email request: From, To and Subject are required."}
        if not (message.get("TextBody") or message.get("HtmlBody")):
            return 422, {"ErrorCode": 300, "Message": "Provide either email TextBody or HtmlBody or both."}
        recipients = [address.strip().lower() for address in str(message["To"]).split(",")]
        if any(recipient in self.inactive for recipient in recipients):
            return 422, {
                "ErrorCode": 406,
                "Message": "You tried to send to recipient(s) that have been marked as inactive.",
            }
        message_id = str(uuid.uuid4())
        with self._lock:
            for recipient in recipients:
                self.accepted.append(
                    ReceivedMail(
                        recipient=recipient,
                        subject=str(message["Subject"]),
                        text=str(message.get("TextBody") or ""),
                        html=str(message.get("HtmlBody") or ""),
                        received_at=time.time(),
                        raw=body,
                    )
                )
        return 200, {
            "To": message["To"],
            "SubmittedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "MessageID": message_id,
            "ErrorCode": 0,
            "Message": "OK",
        }

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body leave in two writes: without this, Nagle and the client's delayed
                # ACK hold every answer for tens of milliseconds, and the stand-in measures that.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with fake._lock:
                    fake.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/email":
                    status, answer = 404, {"ErrorCode": 0, "Message": "Not found"}
                else:
                    status, answer = fake._answer(self.headers, body)
                encoded = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class SesStandIn:
    """moto's server mode on a loopback port: SES v2 as boto3 reaches it at ``SES_ENDPOINT_URL``."""

    def __init__(self, sender: str, region: str = "us-east-1"):
        self.sender = sender
        self.region = region
        self.port = free_port()
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def environment(self) -> dict[str, str]:
        """What a worker needs to reach it (credentials moto accepts; nothing real)."""
        return {
            "SES_ENDPOINT_URL": self.url,
            "SES_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> SesStandIn:
        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        client = boto3.client(
            "ses",
            region_name=self.region,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 (moto's)
        )
        client.verify_email_identity(EmailAddress=self.sender)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def all(self) -> list[ReceivedMail]:
        """Every mail SES accepted, parsed from the raw bytes it was handed."""
        from moto.ses.models import ses_backends

        mails = []
        for sent in list(ses_backends[MOTO_ACCOUNT][self.region].sent_messages):
            raw = sent.raw_data.encode() if isinstance(sent.raw_data, str) else sent.raw_data
            message = email.message_from_bytes(raw, policy=email.policy.default)
            text = message.get_body(preferencelist=("plain",))
            html = message.get_body(preferencelist=("html",))
            # moto lists a recipient once from the raw To header and once from Destination.
            for recipient in dict.fromkeys(destination.lower() for destination in sent.destinations):
                mails.append(
                    ReceivedMail(
                        recipient=recipient.lower(),
                        subject=str(message["subject"]),
                        text=text.get_content() if text else "",
                        html=html.get_content() if html else "",
                        received_at=0.0,
                        raw=raw,
                    )
                )
        return mails

    def mails_to(self, recipient: str) -> list[ReceivedMail]:
        return [mail for mail in self.all() if mail.recipient == recipient.lower()]

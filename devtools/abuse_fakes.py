"""Local stand-ins, on loopback, for the outside APIs of the sign-up abuse checks: a Pwned Passwords range
API and the siteverify endpoints of Turnstile and hCaptcha. Tests and bench/abuse_latency.py point
PWNED_PASSWORDS_URL and CAPTCHA_VERIFY_URL at them; each records what it was sent.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The real API pads every answer to between 800 and 1,000 lines.
PADDING_LINES = 900


def sha1_hex(password: str) -> str:
    return hashlib.sha1(password.encode()).hexdigest().upper()  # noqa: S324 (the range API's index)


class _LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 that can be taken down and brought back on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.mode = "ok"  # "ok", "slow" (answers after ``delay`` seconds) or "error" (HTTP 500)
        self.delay = 5.0
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self):
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler())
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until ``start`` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _misbehave(self, handler: BaseHTTPRequestHandler) -> bool:
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "error":
            handler.send_response(500)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True
        return False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class RangeRequest:
    path: str
    prefix: str
    add_padding: str | None


class PwnedPasswordsFake(_LoopbackServer):
    """``GET /range/{prefix}``: the suffixes of the breached passwords under that prefix with their counts,
    padded (with ``Add-Padding: true``) with made-up suffixes of count 0, as the real API does."""

    def __init__(self, breached: dict[str, int] | None = None, padding_lines: int = PADDING_LINES):
        super().__init__()
        self.padding_lines = padding_lines
        self._ranges: dict[str, dict[str, int]] = {}
        self.requests: list[RangeRequest] = []
        for password, count in (breached or {}).items():
            self.add_breached(password, count)

    def add_breached(self, password: str, count: int = 1) -> None:
        digest = sha1_hex(password)
        self._ranges.setdefault(digest[:5], {})[digest[5:]] = count

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                prefix = self.path.removeprefix("/range/")
                with fake._lock:
                    fake.requests.append(RangeRequest(self.path, prefix, self.headers.get("Add-Padding")))
                if fake._misbehave(self):
                    return
                if not self.path.startswith("/range/") or len(prefix) != 5:
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                lines = [f"{suffix}:{count}" for suffix, count in fake._ranges.get(prefix.upper(), {}).items()]
                if self.headers.get("Add-Padding") == "true":
                    lines += [f"{secrets.token_hex(18)[:35].upper()}:0" for _ in range(fake.padding_lines)]
                body = "\r\n".join(lines).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


@dataclass
class Verification:
    secret: str | None
    response: str | None
    remoteip: str | None


class CaptchaFake(_LoopbackServer):
    """``POST /siteverify`` as Turnstile and hCaptcha answer it: ``{"success": ..., "error-codes": [...]}``.
    A token from ``new_token`` passes once; the provider spends it, as the real ones do."""

    def __init__(self, secret: str = "fake-captcha-secret"):  # noqa: S107 (a test provider's)
        super().__init__()
        self.secret = secret
        self.good_tokens: set[str] = set()
        self.verifications: list[Verification] = []

    def new_token(self) -> str:
        token = "pass-" + secrets.token_urlsafe(24)
        with self._lock:
            self.good_tokens.add(token)
        return token

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())

                def one(name: str) -> str | None:
                    return form.get(name, [None])[0]

                with fake._lock:
                    fake.verifications.append(Verification(one("secret"), one("response"), one("remoteip")))
                if fake._misbehave(self):
                    return
                token = one("response")
                with fake._lock:
                    if one("secret") != fake.secret:
                        answer = {"success": False, "error-codes": ["invalid-input-secret"]}
                    elif token in fake.good_tokens:
                        fake.good_tokens.discard(token)
                        answer = {"success": True, "error-codes": []}
                    else:
                        answer = {"success": False, "error-codes": ["invalid-input-response"]}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

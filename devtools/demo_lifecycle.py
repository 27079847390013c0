"""``make demo-lifecycle``: one account's whole life on the system running on this machine.

register -> confirm -> login -> refresh -> forgot / reset -> login -> password
change -> sign in without the password (an emailed code) -> email change ->
confirm -> login with the new address -> the emailed second factor on -> login
from a new device (a challenge and a code) -> that device trusted -> the
factor off -> logout, printing each request, its answer and every email, then
stopping what it started. The codes are printed (it is a demo); the tokens are
shortened.
"""

from __future__ import annotations

import sys
import time
import uuid

from devtools.demo import RULE, DemoStack, shortened, show
from devtools.mailsink import ReceivedMail
from devtools.stack import LocalStack

MAIL_WAIT_SECONDS = 15
PASSWORDS = ("correct horse battery staple", "a reset passphrase for ada", "the third password of ada")


class Walk:
    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.step = 0
        self.access_token = ""
        self.failures: list[str] = []
        self.seen: list[ReceivedMail] = []

    def call(
        self,
        title: str,
        method: str,
        path: str,
        body: dict | None,
        expect: int,
        bearer: bool = False,
        device: str | None = None,
    ):
        self.step += 1
        headers = {"Authorization": f"Bearer {self.access_token}"} if bearer else {}
        if device is not None:
            headers["X-Device-Id"] = device
        status, response_headers, answer = self.stack.call(method, path, body, headers)
        shown_body = {k: "***" if "password" in k else v for k, v in body.items()} if body else None
        show(
            f"{self.step}. {title}",
            method,
            path + ("  (Bearer)" if bearer else "") + (f"  (X-Device-Id: {device})" if device else ""),
            shown_body,
            (status, response_headers, shortened(answer)),
        )
        if status != expect:
            self.failures.append(f"step {self.step}: {method} {path} answered {status}, expected {expect}")
        return answer if isinstance(answer, dict) else {}

    def mail(self, to: str, subject_part: str) -> ReceivedMail | None:
        self.step += 1
        deadline = time.monotonic() + MAIL_WAIT_SECONDS
        while True:
            fresh = [m for m in self.stack.sink.mails_to(to) if m not in self.seen and subject_part in m.subject]
            if fresh or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not fresh:
            self.failures.append(f"step {self.step}: no email '{subject_part}' to {to}")
            print(f"\n{RULE}\n{self.step}. No email '{subject_part}' arrived for {to}")
            return None
        mail = fresh[0]
        self.seen.append(mail)
        print(f"\n{RULE}\n{self.step}. The email to {mail.recipient} (subject: {mail.subject})\n")
        print("   " + mail.text.strip().replace("\n", "\n   "))
        return mail

    def use(self, pair: dict) -> None:
        self.access_token = pair.get("access_token", "")


def walk(stack: LocalStack) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    email, new_email = f"ada-{tag}@example.com", f"ada.lovelace-{tag}@example.com"
    first, reset_to, changed_to = PASSWORDS
    w = Walk(stack)

    w.call("Register", "POST", "/auth/register", {"email": email, "password": first, "name": "Ada"}, 201)
    mail = w.mail(email, "Confirm your email")
    w.call("Confirm with the emailed code", "POST", "/auth/confirm", {"email": email, "code": mail and mail.code}, 200)
    pair = w.call("Log in", "POST", "/auth/login", {"email": email, "password": first}, 200)
    refreshed = w.call(
        "Refresh the pair", "POST", "/auth/token/refresh", {"refresh_token": pair.get("refresh_token")}, 200
    )

    w.call("Forgot the password", "POST", "/auth/password/forgot", {"email": email}, 202)
    mail = w.mail(email, "Reset")
    body = {"email": email, "code": mail and mail.code, "new_password": reset_to}
    w.call("Reset it with the emailed code", "POST", "/auth/password/reset", body, 200)
    w.use(refreshed)
    w.call("The token from before the reset is refused", "GET", "/auth/me", None, 401, bearer=True)
    w.use(w.call("Log in with the new password", "POST", "/auth/login", {"email": email, "password": reset_to}, 200))

    body = {"current_password": reset_to, "new_password": changed_to}
    w.use(w.call("Change the password", "POST", "/auth/password/change", body, 200, bearer=True))

    w.call("Sign in without the password: ask for a code", "POST", "/auth/login/code", {"email": email}, 202)
    mail = w.mail(email, "sign-in code")
    body = {"email": email, "code": mail and mail.code}
    w.use(w.call("Sign in with the emailed code", "POST", "/auth/login/code/verify", body, 200))

    body = {"new_email": new_email, "password": changed_to}
    w.call("Change the email address", "POST", "/auth/email/change", body, 202, bearer=True)
    w.mail(email, "asked for")
    mail = w.mail(new_email, "new email")
    w.call("Confirm the new address", "POST", "/auth/email/confirm", {"code": mail and mail.code}, 200, bearer=True)
    w.mail(email, "email address was changed")

    w.call("Log in with the old address", "POST", "/auth/login", {"email": email, "password": changed_to}, 401)
    pair = w.call(
        "Log in with the new address", "POST", "/auth/login", {"email": new_email, "password": changed_to}, 200
    )
    w.use(pair)
    w.call("Who am I?", "GET", "/auth/me", None, 200, bearer=True)

    switch: dict = {"enabled": True, "password": changed_to}
    w.call("Turn the emailed second factor on", "POST", "/auth/mfa", switch, 200, bearer=True)
    w.mail(new_email, "turned on")
    body = {"email": new_email, "password": changed_to}
    challenge = w.call("Log in from a new phone", "POST", "/auth/login", body, 202, device="ada-phone")
    mail = w.mail(new_email, "sign-in code")
    body = {"challenge": challenge.get("challenge"), "code": mail and mail.code}
    title = "Finish the login with the challenge and the code"
    w.call(title, "POST", "/auth/login/verify", body, 200, device="ada-phone")
    body = {"email": new_email, "password": changed_to}
    w.call("Log in from the phone again: trusted, no code", "POST", "/auth/login", body, 200, device="ada-phone")
    switch = {"enabled": False, "password": changed_to}
    w.call("Turn the second factor off", "POST", "/auth/mfa", switch, 200, bearer=True)
    w.mail(new_email, "turned off")
    w.call("Log out", "POST", "/auth/logout", {"refresh_token": pair.get("refresh_token")}, 204)
    w.call("Refresh after logout", "POST", "/auth/token/refresh", {"refresh_token": pair.get("refresh_token")}, 401)
    return w.failures


def main() -> int:
    demo = DemoStack("demo-lifecycle")
    failures = ["the system did not start"]
    try:
        stack = demo.start()
        if stack is not None:
            failures = walk(stack)
    finally:
        demo.stop()
    for failure in failures:
        print(f"  - {failure}")
    return demo.report(not failures, "The account's whole life worked.")


if __name__ == "__main__":
    sys.exit(main())

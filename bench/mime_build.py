"""What building one email's MIME bytes costs: the worker's hand-joined bytes against ``email.message``.

The worker renders a mail's two parts from its templates, then joins the MIME bytes itself
(``email_service/adapters/mailer.py`` ``Mail.as_bytes``) instead of building an
``email.message.EmailMessage`` tree and serializing it. This measures both on the same rendered
mail (the verification email, in English and in Brazilian Portuguese, whose accents take the
quoted-printable path), in one process, and prints one JSON line: microseconds of CPU per mail,
the median of ``--reps`` rounds. docs/decisions/hand-built-mime.md reads the figures.

    python -m bench.mime_build
    python -m bench.mime_build --mails 2000 --reps 7
"""

from __future__ import annotations

import argparse
import email.policy
import json
import statistics
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage

from email_service.adapters.mailer import Mail, SmtpMailer

CONTEXT = {"code": "123456", "link_token": "t" * 43, "validity_seconds": 600, "name": "Ada", "registered_at": 0.0}


def rendered(locale: str) -> Mail:
    """The verification email as the worker renders it, before any MIME is built."""

    class Nowhere:
        def deliver(self, mail: Mail) -> None:
            raise AssertionError("rendered only")

        def close(self) -> None:
            pass

    mailer = SmtpMailer("noreply@example.com", Nowhere())
    return mailer.render("verify_email", "ada@example.com", {**CONTEXT, "locale": locale})


def by_email_message(mail: Mail) -> bytes:
    """The same mail through the standard library's message tree, as a mailer built on it would send it."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = mail.subject
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.recipients)
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{mail.message_id}@example.com>"
    message.set_content(mail.body)
    message.add_alternative(mail.html, subtype="html")
    return message.as_bytes()


def cpu_microseconds_per_mail(build: Callable[[Mail], bytes], mail: Mail, mails: int) -> float:
    started = time.process_time()
    for _ in range(mails):
        build(mail)
    return (time.process_time() - started) / mails * 1e6


def measure(mails: int, reps: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for locale in ("en", "pt-BR"):
        mail = rendered(locale)
        for name, build in (("hand_built", Mail.as_bytes), ("email_message", by_email_message)):
            rounds = [cpu_microseconds_per_mail(build, mail, mails) for _ in range(reps)]
            figures[f"{name}_{locale}_us"] = round(statistics.median(rounds), 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps({"benchmark": "mime_build", **vars(args), **measure(args.mails, args.reps)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

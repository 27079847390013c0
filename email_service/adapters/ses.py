"""Amazon SES (API v2) as a road out: ``SendEmail`` with the mail's raw MIME bytes.

The bytes are the ones SMTP would carry (same Message-ID, same parts), so a
mail reads the same whichever road it took. SES signs with the domain's
Easy DKIM key; the worker's own DKIM signature is for SMTP only.

The client is made at the first mail, not at start (no connection at import
or wiring time), and shared by the worker's threads (botocore clients are
thread-safe, with a pool of kept HTTPS connections). botocore's own retries
are turned off: a throttled or unavailable SES moves the mail to the next
transport at once, and the retry ladder covers the rest.
"""

from __future__ import annotations

import threading
from typing import Any

from email_service.ports import OutgoingMail, PermanentMailError, TransientMailError

# SES v2 SendEmail errors (API reference), and SES v1 names that the v2 endpoint still answers with.
# Ours to fix or to wait for (account, quota, configuration): another road may take the mail now.
TRANSIENT_CODES = frozenset(
    {
        "TooManyRequestsException",
        "Throttling",
        "ThrottlingException",
        "LimitExceededException",
        "AccountSuspendedException",
        "SendingPausedException",
        "AccountSendingPausedException",
        "ConfigurationSetSendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        # Credentials that do not work are a configuration problem, not one of the message.
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDeniedException",
        "ExpiredTokenException",
    }
)
# About the message itself: no road will do better. SES answers a dead address later, by a bounce
# notification (the SNS webhook), never here.
PERMANENT_CODES = frozenset({"MessageRejected", "BadRequestException"})


class SesTransport:
    name = "ses"

    def __init__(
        self,
        region: str,
        endpoint_url: str | None = None,
        timeout_seconds: float = 10.0,
        pool_size: int = 16,
    ):
        self._region = region
        self._endpoint_url = endpoint_url
        self._timeout = timeout_seconds
        self._pool_size = pool_size
        self._client: Any = None
        self._lock = threading.Lock()

    def _ses(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.session.Session().client(
                        "sesv2",
                        region_name=self._region,
                        endpoint_url=self._endpoint_url,
                        config=Config(
                            connect_timeout=self._timeout,
                            read_timeout=self._timeout,
                            retries={"total_max_attempts": 1, "mode": "standard"},
                            max_pool_connections=self._pool_size,
                        ),
                    )
                client = self._client
        return client

    def deliver(self, mail: OutgoingMail) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._ses().send_email(
                FromEmailAddress=mail.sender,
                Destination={"ToAddresses": list(mail.recipients)},
                Content={"Raw": {"Data": mail.data}},
            )
        except ClientError as error:
            raise classify(error.response) from None
        except BotoCoreError as error:
            # No credentials, a refused connection, a timeout: nothing reached SES, or it did not answer.
            raise TransientMailError(f"ses: {type(error).__name__}") from None

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def classify(response: dict[str, Any]) -> Exception:
    """The worker's kind of failure for an SES error answer."""
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return TransientMailError(f"ses: {code or status}")
    if code in PERMANENT_CODES or 400 <= status < 500:
        return PermanentMailError(f"ses: {code or status}")
    return TransientMailError(f"ses: {code or status}")

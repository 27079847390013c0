"""Who may configure, write and read what on the broker, and the RabbitMQ definitions that say so.

Each service has a broker account of its own, limited to what it must do
(docs/security.md, "Broker trust"):

- auth writes only to ``verification.to_worker`` (code requests and code
  submissions) and to the account-events exchange, reads only its own
  ACCOUNT_CONFIRMED_QUEUE and its reply queues;
- the worker writes only to ``verification.to_auth`` (confirmations) and
  ``verification.replies`` (verdicts), reads only ACCOUNT_CREATION_QUEUE and
  CONFIRM_EMAIL_CODE_QUEUE;
- each writes and reads its own retry exchange, and configures the
  exchanges, and the queues it consumes with their retry and dead-letter
  queues (common.messaging.topology);
- an operator account (tag ``administrator``) may do anything: the
  management UI and ``python -m email_service dlq``.

The permissions are derived from the same topology and queue-name settings
the services use, so they follow a renamed queue. ``python -m
common.messaging.access PATH`` writes them, with the accounts from the
environment, as a RabbitMQ definitions file: users carry a salted SHA-256
hash of their password (``rabbit_password_hashing_sha256``), never the
password. compose renders it at every start for the broker to load
(docker/rabbitmq/rabbitmq.conf).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from common.messaging.topology import (
    DEFAULT_EVENTS_EXCHANGE,
    REPLIES_EXCHANGE,
    REPLY_QUEUE_PREFIX,
    SESSION_ENDS_QUEUE_PREFIX,
    SHARED_EXCHANGES,
    TO_AUTH_EXCHANGE,
    TO_WORKER_EXCHANGE,
    Inbox,
    Topology,
    WorkQueue,
)
from common.settings import Check, SecretStr, ServiceSettings, SettingsError, cross_check, setting

VHOST = "/"
HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
ADMINISTRATOR_TAG = "administrator"
# The contract's account events are all "user.<event>"; auth may publish no other routing key there.
EVENT_ROUTING_KEYS = r"^user\.[a-z_]+$"
# Binding its session-end queue (that one event) and its webhooks queue (every event).
EVENTS_AUTH_BINDS = r"^(?:user\.sessions_revoked|user\.#)$"
EVERYTHING = ".*"
MINIMUM_PASSWORD_CHARACTERS = 16
# Account names and passwords become part of RABBITMQ_URL.
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
RETRY_SUFFIX = r"\.retry\.[0-9]+s"
DEAD_SUFFIX = r"\.dead"
DELAY_SUFFIX = r"\.delayed(?:\.long)?"
REPLY_QUEUES = re.escape(REPLY_QUEUE_PREFIX) + "[0-9a-f]{32}"
SESSION_ENDS_QUEUES = re.escape(SESSION_ENDS_QUEUE_PREFIX) + "[0-9a-f]{32}"


@dataclass(frozen=True)
class Permissions:
    """Regular expressions over resource names (exchanges and queues alike), as RabbitMQ reads them."""

    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class Account:
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class BrokerAccounts:
    admin: Account
    auth: Account
    worker: Account

    def by_role(self) -> dict[str, Account]:
        return {"admin": self.admin, "auth": self.auth, "worker": self.worker}


def _broker_password(value: SecretStr) -> SecretStr:
    password = value.get_secret_value()
    if len(password) < MINIMUM_PASSWORD_CHARACTERS or not URL_SAFE.fullmatch(password):
        raise ValueError(f"must be at least {MINIMUM_PASSWORD_CHARACTERS} characters of A-Z a-z 0-9 . _ ~ -")
    return value


BrokerUser = Annotated[str, setting(pattern=f"^{URL_SAFE.pattern}$")]
# Required: no default account may reach a broker.
BrokerPassword = Annotated[SecretStr, Check(_broker_password)]


class BrokerSettings(ServiceSettings):
    """What the definitions are rendered from: the queues as the services read them, the events exchange,
    and the three accounts (compose only: each service container gets its own password alone)."""

    rabbitmq_admin_user: BrokerUser = "admin"
    rabbitmq_admin_password: BrokerPassword
    rabbitmq_auth_user: BrokerUser = "auth-service"
    rabbitmq_auth_password: BrokerPassword
    rabbitmq_worker_user: BrokerUser = "email-worker"
    rabbitmq_worker_password: BrokerPassword

    @cross_check
    def _three_accounts(self) -> None:
        users = [self.rabbitmq_admin_user, self.rabbitmq_auth_user, self.rabbitmq_worker_user]
        if len(set(users)) != len(users):
            raise ValueError("RABBITMQ_ADMIN_USER, RABBITMQ_AUTH_USER and RABBITMQ_WORKER_USER must differ")

    @property
    def accounts(self) -> BrokerAccounts:
        return BrokerAccounts(
            admin=Account(self.rabbitmq_admin_user, self.rabbitmq_admin_password.get_secret_value()),
            auth=Account(self.rabbitmq_auth_user, self.rabbitmq_auth_password.get_secret_value()),
            worker=Account(self.rabbitmq_worker_user, self.rabbitmq_worker_password.get_secret_value()),
        )


def _anchored(*alternatives: str) -> str:
    return "^(?:" + "|".join(alternatives) + ")$"


def _named(*names: str) -> list[str]:
    return [re.escape(name) for name in names]


def _with_ladder(queue: WorkQueue) -> str:
    """The work queue, its retry queues (whatever RETRY_DELAYS_SECONDS), its dead-letter queue and,
    if it has one, its delay queue."""
    delayed = f"|{DELAY_SUFFIX}" if queue.delayed else ""
    return re.escape(queue.name) + f"(?:{RETRY_SUFFIX}|{DEAD_SUFFIX}{delayed})?"


def _consumable(queue: WorkQueue) -> str:
    # Creating a queue with a dead-letter exchange takes read permission on it: the work queue,
    # its retry queues and its delay queue. The dead-letter queue is the operator's to read.
    delayed = f"|{DELAY_SUFFIX}" if queue.delayed else ""
    return re.escape(queue.name) + f"(?:{RETRY_SUFFIX}{delayed})?"


def _consumer_of(inbox: Inbox) -> tuple[list[str], list[str], list[str]]:
    """What consuming an inbox takes: declare the exchanges and its queues, park retries and bind
    (write), bind from the producer's exchange and consume (read)."""
    ladders = [_with_ladder(queue) for queue in inbox.queues]
    # Binding a queue to the events exchange takes read permission on the exchange.
    subscribed = _named(inbox.events_exchange) if any(queue.topics for queue in inbox.queues) else []
    configure = [*_named(*SHARED_EXCHANGES, inbox.retries_exchange, inbox.events_exchange), *ladders]
    write = [*_named(inbox.retries_exchange), *ladders]
    read = [
        *_named(inbox.exchange, inbox.retries_exchange),
        *subscribed,
        *(_consumable(queue) for queue in inbox.queues),
    ]
    return configure, write, read


def service_permissions(topology: Topology, events_exchange: str = DEFAULT_EVENTS_EXCHANGE) -> dict[str, Permissions]:
    """Each role's permissions on the vhost."""
    auth_configure, auth_write, auth_read = _consumer_of(topology.auth)
    webhooks = topology.webhook_inbox
    if webhooks is not None:
        # The dispatcher's queue, its retry queues (WEBHOOK_RETRY_SCHEDULE's) and its dead letters.
        webhook_configure, webhook_write, webhook_read = _consumer_of(webhooks)
        auth_configure, auth_write, auth_read = (
            [*auth_configure, *webhook_configure],
            [*auth_write, *webhook_write],
            [*auth_read, *webhook_read],
        )
    worker_configure, worker_write, worker_read = _consumer_of(topology.worker)
    return {
        "admin": Permissions(EVERYTHING, EVERYTHING, EVERYTHING),
        # Its session-end queue: declared and bound by auth (configure, write), fed from the events exchange (read).
        "auth": Permissions(
            configure=_anchored(*auth_configure, REPLY_QUEUES, SESSION_ENDS_QUEUES),
            write=_anchored(
                *_named(TO_WORKER_EXCHANGE, events_exchange), *auth_write, REPLY_QUEUES, SESSION_ENDS_QUEUES
            ),
            read=_anchored(*_named(REPLIES_EXCHANGE, events_exchange), *auth_read, REPLY_QUEUES, SESSION_ENDS_QUEUES),
        ),
        "worker": Permissions(
            configure=_anchored(*worker_configure),
            write=_anchored(*_named(TO_AUTH_EXCHANGE, REPLIES_EXCHANGE), *worker_write),
            read=_anchored(*worker_read),
        ),
    }


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + SHA-256(salt + password))."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(
    topology: Topology,
    accounts: BrokerAccounts,
    events_exchange: str = DEFAULT_EVENTS_EXCHANGE,
    salt: Callable[[], bytes] = lambda: os.urandom(4),
) -> dict:
    """The definitions document: vhost, users, their permissions and topic permissions."""
    grants = service_permissions(topology, events_exchange)
    users, permissions = [], []
    for role, account in accounts.by_role().items():
        users.append(
            {
                "name": account.user,
                "password_hash": password_hash(account.password, salt()),
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": [ADMINISTRATOR_TAG] if role == "admin" else [],
            }
        )
        granted = grants[role]
        permissions.append(
            {
                "user": account.user,
                "vhost": VHOST,
                "configure": granted.configure,
                "write": granted.write,
                "read": granted.read,
            }
        )
    return {
        "vhosts": [{"name": VHOST}],
        "users": users,
        "permissions": permissions,
        "topic_permissions": [
            {
                "user": accounts.auth.user,
                "vhost": VHOST,
                "exchange": events_exchange,
                "write": EVENT_ROUTING_KEYS,
                "read": EVENTS_AUTH_BINDS,
            }
        ],
    }


def write_definitions(path: Path, document: dict) -> None:
    """Replace ``path`` in one step, readable by the broker's own user (it holds hashes, no password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as file:
        json.dump(document, file, indent=2)
        temporary = Path(file.name)
    temporary.chmod(0o644)
    os.replace(temporary, path)


def render(path: Path, env: Mapping[str, str] | None = None) -> BrokerAccounts:
    settings = BrokerSettings.from_env(env)
    accounts = settings.accounts
    write_definitions(path, definitions(settings.topology, accounts, settings.account_events_exchange))
    return accounts


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m common.messaging.access DEFINITIONS_PATH", file=sys.stderr)
        return 2
    try:
        accounts = render(Path(argv[0]))
    except SettingsError as error:
        print(f"broker definitions: {error}", file=sys.stderr)
        return 2
    users = ", ".join(account.user for account in accounts.by_role().values())
    print(f"broker definitions written to {argv[0]} (users: {users})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

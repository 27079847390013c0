"""``python -m email_service suppressions list|lift EMAIL``: the operator's view of the suppression list.

``lift`` is the only way to lift an address until the admin API serves
``DELETE /admin/suppressions/{email}`` (it will call the same function,
email_service/suppressions.py). It writes Redis and publishes to auth on the
worker's own broker account.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import pika

from common.messaging.connection import close_quietly, parameters
from common.messaging.consumer import publish as publish_to
from common.messaging.envelope import Outgoing
from email_service.adapters.suppressions import RedisSuppressions
from email_service.bootstrap import redis_client
from email_service.config import Settings
from email_service.suppressions import lift_suppression


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every suppressed address, why, from where, since when (JSON lines)")
    lift = actions.add_parser("lift", help="take an address off the list: mail goes to it again")
    lift.add_argument("email")


def run(args: argparse.Namespace, settings: Settings, out: Callable[[str], None] = print) -> int:
    client = redis_client(settings)
    try:
        suppressions = RedisSuppressions(client, settings.redis_key_prefix)
        if args.action == "list":
            for email, entry in sorted(suppressions.entries().items()):
                out(json.dumps({"email": email, **entry}))
            return 0
        connection = pika.BlockingConnection(parameters(settings.rabbitmq_url, "email_service suppressions"))
        try:
            channel = connection.channel()
            channel.confirm_delivery()

            def publish(queue: str, message: Outgoing) -> None:
                publish_to(channel, settings.topology, queue, message)

            lifted = lift_suppression(suppressions, publish, settings.account_confirmed_queue, args.email)
        finally:
            close_quietly(connection)
        out("lifted" if lifted else "not on the list (auth told all the same)")
        return 0
    finally:
        client.close()

"""Entry point of the email worker (``python -m email_service``).

Without arguments it runs the worker; ``python -m email_service dlq ...`` is
the operator's command for dead-lettered messages, ``python -m
email_service migrate-queues`` brings an earlier version's queues to the
current topology, ``templates check|preview`` renders every email (overrides
included), and ``suppressions list|lift`` shows and lifts suppressed addresses.
"""

from __future__ import annotations

import argparse
import sys

from common.logs import configure_logging
from common.settings import SettingsError
from common.tracing import configure as configure_tracing
from email_service.config import Settings
from email_service.entrypoints import dlq, migrate, supervisor, suppressions, templates, worker


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m email_service", description="The email worker.")
    commands = parser.add_subparsers(dest="command")
    worker_command = commands.add_parser("worker", help="consume the queues until SIGTERM/SIGINT (the default)")
    # Set by the supervisor for each of its WORKER_PROCESSES children.
    worker_command.add_argument("--process-index", type=int, default=None, help=argparse.SUPPRESS)
    worker_command.add_argument("--supervisor-pid", type=int, default=None, help=argparse.SUPPRESS)
    dlq.add_arguments(commands.add_parser("dlq", help="list, show, replay or purge dead-lettered messages"))
    commands.add_parser(
        "migrate-queues", help="once, services stopped: move queues of an earlier version to the current topology"
    )
    templates.add_arguments(commands.add_parser("templates", help="check or preview every email in every language"))
    suppressions.add_arguments(commands.add_parser("suppressions", help="list or lift suppressed addresses"))
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"email_service: {error}", file=sys.stderr)
        return 2
    if args.command == "dlq":
        configure_logging("email_service", "WARNING")
        return dlq.run(args, settings.rabbitmq_url, settings.topology)
    if args.command == "templates":
        configure_logging("email_service", "WARNING")
        return templates.run(args, settings)
    if args.command == "suppressions":
        configure_logging("email_service", "WARNING")
        return suppressions.run(args, settings)
    if args.command == "migrate-queues":
        configure_logging("email_service", "WARNING")
        return migrate.run(settings.rabbitmq_url, settings.topology)
    configure_logging("email_service", settings.log_level)
    index = getattr(args, "process_index", None)
    if index is None and settings.worker_processes > 1:
        return supervisor.run(settings)
    # Each worker process exports its own spans; the supervisor handles no message.
    configure_tracing("email_service", settings.otel_exporter_otlp_endpoint)
    if index is None:
        return worker.run(settings)
    if args.supervisor_pid is not None:
        supervisor.die_with_parent(args.supervisor_pid)
    return worker.run(settings.for_process(index))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m auth_service admin-keys create|list|revoke``: the operator's hands on ADMIN_KEYS_FILE.

``create`` prints the new key once and keeps only its hash; ``revoke`` removes
its line (the service reads the file again at its next admin request: no
restart); ``list`` shows each key's name, scopes, creation and last use, read
from the running service's metrics (``admin_key_last_used_timestamp_seconds``
at ``--metrics-url``, by default AUTH_HOST:AUTH_PORT's ``/metrics``).
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime

from auth_service.adapters.admin_keys_file import AdminKeysFile, AdminKeysFileError
from auth_service.config import Settings
from auth_service.domain.admin_keys import SCOPES, new_key
from common.settings import SettingsError

LAST_USED_METRIC = "admin_key_last_used_timestamp_seconds"
METRICS_TIMEOUT_SECONDS = 3.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth_service admin-keys", description="Manage the admin API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key, print it once, keep its hash in ADMIN_KEYS_FILE")
    create.add_argument("--name", required=True, help="who or what holds it (unique): support-ada, billing-service")
    create.add_argument("--scopes", required=True, help=f"comma-separated, of: {','.join(SCOPES)}")
    listing = commands.add_parser("list", help="name, scopes, created, last use (never a key)")
    listing.add_argument("--metrics-url", help="the service's /metrics (default: AUTH_HOST:AUTH_PORT/metrics)")
    revoke = commands.add_parser("revoke", help="remove a key: refused from the service's next request")
    revoke.add_argument("name")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"auth_service admin-keys: {error}", file=sys.stderr)
        return 2
    if settings.admin_keys_file is None:
        print("auth_service admin-keys: set ADMIN_KEYS_FILE, the file the service reads its keys from", file=sys.stderr)
        return 2
    keys_file = AdminKeysFile(settings.admin_keys_file)
    try:
        keys = keys_file.read()
        if args.command == "create":
            if any(key.name == args.name for key in keys):
                print(f"auth_service admin-keys: a key named {args.name} exists; revoke it first", file=sys.stderr)
                return 1
            try:
                made = new_key(args.name, args.scopes.split(","), datetime.now(UTC))
            except ValueError as error:
                print(f"auth_service admin-keys: {error}", file=sys.stderr)
                return 2
            keys_file.write([*keys, made.record])
            print(made.key)
            print(
                f"added {args.name} ({','.join(sorted(made.record.scopes))}) to {keys_file.path}; "
                "the key is shown this once",
                file=sys.stderr,
            )
            return 0
        if args.command == "revoke":
            kept = [key for key in keys if key.name != args.name]
            if len(kept) == len(keys):
                print(f"auth_service admin-keys: no key named {args.name}", file=sys.stderr)
                return 1
            keys_file.write(kept)
            print(f"revoked {args.name}: refused from the service's next admin request", file=sys.stderr)
            return 0
    except AdminKeysFileError as error:
        print(f"auth_service admin-keys: {error}", file=sys.stderr)
        return 1
    url = args.metrics_url or f"http://{settings.auth_host}:{settings.auth_port}/metrics"
    last_used = read_last_use(url)
    if last_used is None:
        print(f"auth_service admin-keys: last use unknown, {url} did not answer", file=sys.stderr)
    print("name\tscopes\tcreated\tlast_used")
    for key in keys:
        used = (last_used or {}).get(key.name)
        print(
            "\t".join(
                [
                    key.name,
                    ",".join(scope for scope in SCOPES if scope in key.scopes),
                    _moment(key.created_at.timestamp()),
                    _moment(used) if used else "-",
                ]
            )
        )
    return 0


def read_last_use(url: str) -> dict[str, float] | None:
    """Key name -> Unix time of its last request, from a Prometheus exposition; None if it cannot be read."""
    try:
        with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT_SECONDS) as response:  # noqa: S310 (the operator's URL)
            text = response.read(4 * 1024 * 1024).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return parse_last_use(text)


def parse_last_use(exposition: str) -> dict[str, float]:
    pattern = re.compile(rf'^{LAST_USED_METRIC}\{{key="((?:[^"\\]|\\.)*)"\}} (\S+)$', re.MULTILINE)
    found = {}
    for name, value in pattern.findall(exposition):
        try:
            found[name] = float(value)
        except ValueError:
            continue
    return found


def _moment(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

"""Entry point of the auth service (``python -m auth_service``)."""

from __future__ import annotations

import sys

from auth_service.adapters.keys_file import KeysFileError
from auth_service.config import Settings
from auth_service.domain.sealed_keys import UnsealError
from auth_service.entrypoints import admin_keys_cli, keys_cli, migrate, server
from common.logs import configure_logging
from common.settings import SettingsError
from common.tracing import configure as configure_tracing


def main() -> int:
    if sys.argv[1:2] == ["keys"]:
        return keys_cli.main(sys.argv[2:])
    if sys.argv[1:2] == ["admin-keys"]:
        return admin_keys_cli.main(sys.argv[2:])
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"auth_service: {error}", file=sys.stderr)
        return 2
    configure_logging("auth_service", settings.log_level)
    if sys.argv[1:2] == ["migrate"]:
        return migrate.run(settings)
    configure_tracing("auth_service", settings.otel_exporter_otlp_endpoint)
    try:
        return server.run(settings)
    except (KeysFileError, UnsealError) as error:  # no key to sign with: nothing may start
        print(f"auth_service: signing keys: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

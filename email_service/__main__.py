"""Entry point of the email worker (``python -m email_service``)."""

from __future__ import annotations

import sys

from common.logs import configure_logging
from common.settings import SettingsError
from email_service.config import Settings
from email_service.entrypoints import worker


def main(argv: list[str]) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"email_service: {error}", file=sys.stderr)
        return 2
    configure_logging("email_service", settings.log_level)
    return worker.run(settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

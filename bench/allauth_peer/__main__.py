"""Migrate the peer's SQLite database, then serve it with waitress (PORT), as Django is deployed."""

from __future__ import annotations

import os
import sys

import waitress


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.allauth_peer.settings")
    import django
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    application = get_wsgi_application()
    port = int(os.environ["PORT"])
    print(f"listening {port}", flush=True)
    waitress.serve(application, host="127.0.0.1", port=port, ident=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

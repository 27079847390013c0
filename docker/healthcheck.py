"""Container health probe: exit 0 when the URL answers 200, 1 otherwise.

Standard library only, so the image needs no curl. With no argument it
probes the auth service's /readyz on AUTH_PORT.
"""

from __future__ import annotations

import os
import sys
import urllib.request

TIMEOUT_SECONDS = 3.0


def main(argv: list[str]) -> int:
    url = argv[0] if argv else f"http://127.0.0.1:{os.environ.get('AUTH_PORT') or 8000}/readyz"
    if not url.startswith("http://127.0.0.1:"):
        print(f"healthcheck: refusing to probe {url!r}; only this container's own ports", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (scheme checked above)
            return 0 if response.status == 200 else 1
    except OSError as error:
        print(f"healthcheck: {url} -> {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

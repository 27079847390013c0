"""``python -m auth_service keys generate|list|rotate``: the operator's hands on the signing keys.

With JWT_SIGNING_KEYS_FILE the commands edit that file (the service reads it
again by itself): ``generate`` adds a new key at the end (published, not yet
signing), ``rotate`` moves the newest key to the front (it signs from the
service's next reload), ``list`` shows them. Without it the keys live in
MongoDB: ``generate`` stores the first key if there is none, ``rotate``
publishes the next key now (it signs once JWKS_MAX_AGE_SECONDS have passed,
as in an automatic rotation, only earlier), ``list`` shows each key's times.
Private parts are never printed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from auth_service import bootstrap
from auth_service.adapters.keys_file import KeysFile, KeysFileError
from auth_service.config import Settings
from auth_service.domain.sealed_keys import UnsealError
from auth_service.domain.signing_keys import ASYMMETRIC_ALGORITHMS, HS256, KeyRecord, generate_key
from auth_service.service_layer.keyring import RotatingKeys
from common.settings import SettingsError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth_service keys", description="Manage the token signing keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="add a key (keys file: at the end, published, not signing)")
    generate.add_argument("--alg", choices=ASYMMETRIC_ALGORITHMS, help="default: JWT_ALGORITHM")
    commands.add_parser("list", help="every key with its state and times (never a private part)")
    commands.add_parser("rotate", help="keys file: the newest key signs; MongoDB: publish the next key now")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"auth_service keys: {error}", file=sys.stderr)
        return 2
    if settings.jwt_algorithm == HS256 and args.command != "generate":
        print(
            "auth_service keys: JWT_ALGORITHM=HS256 signs with JWT_SECRET; there are no keys to manage", file=sys.stderr
        )
        return 2
    try:
        if settings.jwt_signing_keys_file is not None:
            return _in_file(KeysFile(settings.jwt_signing_keys_file), args, settings)
        return _in_database(settings, args)
    except (KeysFileError, UnsealError) as error:
        print(f"auth_service keys: {error}", file=sys.stderr)
        return 1


def _algorithm(args: argparse.Namespace, settings: Settings) -> str:
    return args.alg or (settings.jwt_algorithm if settings.jwt_algorithm != HS256 else ASYMMETRIC_ALGORITHMS[0])


def _in_file(keys_file: KeysFile, args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "generate":
        keys = keys_file.read() if keys_file.path.exists() else []
        key = generate_key(_algorithm(args, settings))
        keys_file.write([*keys, key])
        state = "signing (the only key)" if not keys else "published, not signing yet"
        print(f"added {key.kid} ({key.alg}) to {keys_file.path}: {state}")
        if keys:
            print(
                f"after JWKS_MAX_AGE_SECONDS ({settings.jwks_max_age_seconds} s) run `keys rotate` to let it sign "
                "(docs/security.md, rotation runbook)"
            )
        return 0
    keys = keys_file.read()
    if args.command == "rotate":
        if len(keys) < 2:
            print(
                "auth_service keys: one key only; run `keys generate` first and wait JWKS_MAX_AGE_SECONDS",
                file=sys.stderr,
            )
            return 1
        keys = [keys[-1], *keys[:-1]]
        keys_file.write(keys)
        print(f"{keys[0].kid} signs from the service's next reload; {keys[1].kid} stays published")
        print(f"remove {keys[1].kid} from the file once JWT_TTL_SECONDS ({settings.jwt_ttl_seconds} s) have passed")
        return 0
    for position, key in enumerate(keys):
        print(f"{key.kid}\t{key.alg}\t{'signing' if position == 0 else 'published'}")
    return 0


def _in_database(settings: Settings, args: argparse.Namespace) -> int:
    if settings.mongo_uri.startswith(bootstrap.IN_PROCESS_MONGO):
        print(
            "auth_service keys: MONGO_URI=mongomock:// keeps the keys inside the service's own process "
            "(it generates and rotates them itself); point MONGO_URI at the service's MongoDB",
            file=sys.stderr,
        )
        return 2
    source = bootstrap.key_source(settings, bootstrap.mongo_database(settings), in_process_store=False)
    assert isinstance(source, RotatingKeys)
    now = datetime.now(UTC)
    if args.command == "generate":
        if source.records():
            print("keys exist already; `keys rotate` publishes the next one")
            return 0
        source.load(now)
    elif args.command == "rotate":
        before = {record.key.kid for record in source.records()}
        added = [record for record in source.rotate(now) if record.key.kid not in before]
        for record in added:
            print(f"published {record.key.kid} ({record.key.alg}); it signs from {record.signs_from.isoformat()}")
    records = source.records()
    schedule = source.schedule
    signing = schedule.signing(records, now)
    print("kid\talg\tstate\tpublished_at\tsigns_from\tretires_at\tremovable_from")
    for record in records:
        retired = schedule.retired_at(record, records)
        print(
            "\t".join(
                [
                    record.key.kid,
                    record.key.alg,
                    _state(record, signing, retired, now),
                    record.published_at.isoformat(),
                    record.signs_from.isoformat(),
                    retired.isoformat() if retired else "-",
                    (retired + schedule.token_life).isoformat() if retired else "-",
                ]
            )
        )
    return 0


def _state(record: KeyRecord, signing: KeyRecord | None, retired: datetime | None, now: datetime) -> str:
    if signing is not None and record.key.kid == signing.key.kid:
        return "signing"
    if record.signs_from > now:
        return "next"
    return "retired" if retired is not None else "published"

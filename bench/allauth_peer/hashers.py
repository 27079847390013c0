"""The benchmark's cheap password hash for Django: bcrypt at cost 4, as the project's BCRYPT_ROUNDS=4."""

from __future__ import annotations

from django.contrib.auth.hashers import BCryptPasswordHasher


class CheapBCryptPasswordHasher(BCryptPasswordHasher):
    rounds = 4

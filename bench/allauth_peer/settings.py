"""django-allauth, headless, as its documentation sets it up for an app, in production mode.

Sign-up by email and password; the address must be verified (``mandatory``) by
a code mailed to it (``ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED``); only the
headless API for apps (session tokens, no CSRF cookie), no server-rendered
views (``HEADLESS_ONLY``). SQLite in WAL mode with ``synchronous=NORMAL`` and
immediate transactions, as Django's SQLite notes advise for a server; mail by
Django's SMTP backend. allauth's rate limits are off, as the project's are in
the benchmark: every request comes from 127.0.0.1.

Environment: ALLAUTH_DATABASE (the SQLite file), SMTP_HOST, SMTP_PORT,
DJANGO_SECRET_KEY, BENCH_HASH (``cheap``: bcrypt cost 4, as the project's
BCRYPT_ROUNDS=4; ``default``: Django's own PBKDF2).
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.allauth_peer.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "allauth",
    "allauth.account",
    "allauth.headless",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["ALLAUTH_DATABASE"],
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        },
    }
}
if os.environ.get("BENCH_HASH") == "cheap":
    PASSWORD_HASHERS = ["bench.allauth_peer.hashers.CheapBCryptPasswordHasher"]

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = os.environ["SMTP_HOST"]
EMAIL_PORT = int(os.environ["SMTP_PORT"])
DEFAULT_FROM_EMAIL = "Example <no-reply@example.com>"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = True
ACCOUNT_RATE_LIMITS = False
HEADLESS_ONLY = True
HEADLESS_CLIENTS = ("app",)
HEADLESS_FRONTEND_URLS = {
    "account_confirm_email": "http://127.0.0.1/account/verify-email/{key}",
    "account_reset_password_from_key": "http://127.0.0.1/account/password/reset/key/{key}",
    "account_signup": "http://127.0.0.1/account/signup",
}

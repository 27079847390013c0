"""django-allauth as the benchmark's peer: headless, email verification by code, on waitress and SQLite.

``python -m bench.allauth_peer`` migrates its database and serves it (settings.py says how it is set up).
"""

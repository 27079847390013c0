"""The admin API on ADMIN_PORT: its own Flask app, never served on AUTH_PORT.

Each area is a module with an ``AdminBlueprint``, listed in ``app.AREAS``.
A view names the scope it needs with ``@blueprint.requires(scope)``: the key
check, the scope check, the per-key limit and the audit record then happen
before and after it (access.py), and its OpenAPI entry says so.
"""

"""Redis clients from one URI: ``redis://`` as redis-py reads it, or ``redis+sentinel://`` (the
limits library's form, ``redis+sentinel://[user:password@]host:port,host:port/master``), which
finds the master through Sentinel and finds it again after a failover."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"


def sentinel_uri(sentinels: tuple[str, ...], master: str) -> str:
    return f"{SENTINEL_SCHEME}://{','.join(sentinels)}/{master}"


def redis_from_uri(uri: str, **options: Any) -> redis.Redis:
    """A client of the master that ``uri`` names. Through Sentinel, a connection lost in a failover
    is reopened to the promoted replica on the next command."""
    parts = urlsplit(uri)
    if parts.scheme != SENTINEL_SCHEME:
        return redis.Redis.from_url(uri, **options)
    master = parts.path.strip("/")
    if not master:
        raise ValueError("a redis+sentinel:// URI names the master after the hosts: .../mymaster")
    credentials, _, hosts = parts.netloc.rpartition("@")
    login: dict[str, str] = {}
    if credentials:
        user, _, password = credentials.partition(":")
        login = {"password": unquote(password), **({"username": unquote(user)} if user else {})}
    addresses = [(host, int(port)) for host, _, port in (node.rpartition(":") for node in hosts.split(","))]
    timeouts = {name: options[name] for name in ("socket_timeout", "socket_connect_timeout") if name in options}
    sentinel = Sentinel(addresses, sentinel_kwargs={**timeouts, **login}, **login, **options)
    return sentinel.master_for(master)

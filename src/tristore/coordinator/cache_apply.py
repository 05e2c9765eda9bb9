"""The cache applier: committed intents' cache ops reach Redis in commit order.

Each intent's cache ops run in one Lua script (:data:`~.ops.APPLY_SCRIPT`) that applies them
only if the intent's marker key is absent and then sets it, atomically, so sending a script
twice is a no-op. Intents join the backlog in commit order, and each takes a *turn* (a ticket)
while its transaction still holds the SQLite writer lane; the turn is waited for after the lane
is released. A turn sends the whole backlog, oldest first, ``pipeline_size`` scripts per round
trip, so under load one round trip carries many transactions. When Redis is down the backlog
waits, in order, for ``retry_backoff`` before the next turn tries again; later intents queue
behind it, so Redis never shows a newer value and then an older one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import redis.exceptions as rexc

from tristore.coordinator.faults import Faults
from tristore.coordinator.log import Intent
from tristore.coordinator.ops import APPLY_SCRIPT, marker_key, ops_json, script_args
from tristore.stores import CacheStore

log = logging.getLogger(__name__)


class Turns:
    """Tickets served strictly in order; ``async with turns.turn(ticket)`` holds one."""

    def __init__(self) -> None:
        self._next = 0
        self._serving = 0
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._abandoned: set[int] = set()

    def take(self) -> int:
        ticket = self._next
        self._next += 1
        return ticket

    @contextlib.asynccontextmanager
    async def turn(self, ticket: int) -> AsyncIterator[None]:
        await self._wait(ticket)
        try:
            yield
        finally:
            self._done(ticket)

    async def _wait(self, ticket: int) -> None:
        if ticket == self._serving:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[ticket] = fut
        try:
            await fut
        except BaseException:
            self._waiters.pop(ticket, None)
            if fut.done() and not fut.cancelled():
                self._done(ticket)  # the turn came as we were cancelled: pass it on
            else:
                self._abandoned.add(ticket)  # skip it when it comes
            raise

    def _done(self, ticket: int) -> None:
        self._serving = ticket + 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        fut = self._waiters.pop(self._serving, None)
        if fut is not None and not fut.done():
            fut.set_result(None)


class CacheApplier:
    """The cache backlog and its turns; see the module docstring."""

    def __init__(
        self,
        cache: CacheStore,
        faults: Faults,
        *,
        marker_ttl: float,
        lock_timeout: float,
        retry_backoff: float,
        settle: Callable[[Intent], None],
        count: Callable[[str], None],
    ) -> None:
        self.cache = cache
        self.faults = faults
        self.marker_ttl = marker_ttl
        self.lock_timeout = lock_timeout
        self.retry_backoff = retry_backoff
        self._settle = settle
        self._count = count
        self.backlog: deque[Intent] = deque()
        self.turns = Turns()
        self._retry_at = 0.0
        self._sha: str | None = None

    def enqueue(self, intent: Intent) -> int:
        """Queue a committed intent and take its turn (call while holding the SQLite lane)."""
        self.backlog.append(intent)
        return self.turns.take()

    async def finish(self, intent: Intent, ticket: int) -> None:
        """On its turn, send the backlog unless an earlier turn sent this intent already."""
        async with self.turns.turn(ticket):
            if not intent.cache_done and time.monotonic() >= self._retry_at:
                await self._send()

    async def skip(self, ticket: int) -> None:
        """Pass a turn on without sending (the intent stays in the backlog)."""
        async with self.turns.turn(ticket):
            pass

    async def add(self, intents: Iterable[Intent]) -> None:
        """Queue intents from outside a commit (recovery, a retry), behind every turn taken."""
        async with self.turns.turn(self.turns.take()):
            self.backlog.extend(intents)

    async def drain(self) -> None:
        """Send the backlog now, ignoring the back-off (recovery)."""
        async with self.turns.turn(self.turns.take()):
            self._retry_at = 0.0
            await self._send()

    async def _send(self) -> None:
        """Send the backlog, oldest first, ``pipeline_size`` scripts per round trip."""
        backlog = self.backlog
        size = self.cache.settings.redis.pipeline_size
        while backlog:
            batch = list(itertools.islice(backlog, size))
            try:
                self.faults.fire("cache.apply")
                results = await self._run_scripts(batch)
            except Exception as exc:
                # Unreachable, timed out or refused: retried in order later. Scripts that ran
                # before the failure left their markers, so sending them again is a no-op.
                self._retry_at = time.monotonic() + self.retry_backoff
                self._count("cache_apply_errors")
                log.warning(
                    "redis apply failed, %d transaction(s) left pending: %s", len(backlog), exc
                )
                return
            for item, result in zip(batch, results, strict=True):
                backlog.popleft()
                item.cache_done = True
                item.errors.extend(script_errors(result))
                self._settle(item)

    async def _run_scripts(self, batch: Sequence[Intent]) -> list[Any]:
        ttl_ms = int(self.marker_ttl * 1000)
        calls = [
            (
                marker_key(i.txid),
                script_args(i.cache_ops, ttl_ms, i.cache_json or ops_json(i.cache_ops)),
            )
            for i in batch
        ]
        self._count("cache_round_trips")
        async with self.cache.client(timeout=self.lock_timeout) as conn:
            for attempt in (1, 2):
                if self._sha is None:
                    self._sha = await conn.script_load(APPLY_SCRIPT)
                try:
                    if len(calls) == 1:
                        key, argv = calls[0]
                        return [await conn.evalsha(self._sha, 1, key, *argv)]
                    pipe = conn.pipeline(transaction=False)
                    for key, argv in calls:
                        pipe.evalsha(self._sha, 1, key, *argv)
                    return list(await pipe.execute())
                except rexc.NoScriptError:
                    # Redis restarted and lost its script cache; reload and send again (the
                    # markers make a second send of an already applied script a no-op).
                    self._sha = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover


def script_errors(result: Any) -> list[str]:
    code = int(result[0])
    if code == 0:  # applied before (a replay): the marker says how it went then
        seen = result[1] if len(result) > 1 else b"applied"
        return ["cache: failed at an earlier apply"] if seen in (b"failed", "failed") else []
    return [f"cache: {_text(m)}" for m in result[1:]]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

"""The real-time dashboard: a stream subscriber that measures two end-to-end latencies.

- **event latency**: SQLite commit -> event received by this subscriber;
- **cache-sync lag**: SQLite commit -> the new value visible in the Redis cache to an independent
  reader (another pooled connection). An event that announces a cache write names the key and the
  version; on receipt the dashboard reads the key, and if the version is not there yet, polls it
  (every ``poll_interval``, up to ``visible_timeout``). The lag is taken when the value was first
  seen, so it is an upper bound (by one GET round trip) of the true lag.

Both are measured from ``Event.ts``, taken at the end of the transaction body, before the
coordinator stages the graph ops and commits SQLite, so they include the commit protocol itself:
again an upper bound, never flattering.

The subscriber holds one pooled Redis connection for its blocking ``XREAD`` while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from tristore.errors import StoreUnavailable, TristoreError
from tristore.flows.events import EVENTS_STREAM, Event, parse_entry
from tristore.monitor import LatencyHistogram

__all__ = ["Dashboard"]

log = logging.getLogger(__name__)

# How often stop() repeats its cancel of the reader until the reader is done.
STOP_POLL_S = 0.1


class Dashboard:
    """Subscribe to change events; keep the latest ones; measure latency and cache-sync lag."""

    def __init__(
        self,
        cache: Any,
        *,
        stream: str = EVENTS_STREAM,
        types: Iterable[str] | None = None,
        from_id: str | None = None,
        block_ms: int = 500,
        keep: int = 10_000,
        check_cache: bool = True,
        poll_interval: float = 0.0005,
        visible_timeout: float = 2.0,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.cache = cache
        self.stream = stream
        self.types = frozenset(types) if types is not None else None
        self.from_id = from_id  # None: only events published after start()
        self.block_ms = block_ms
        self.events: deque[Event] = deque(maxlen=keep)  # bounded: a long run must not grow RSS
        self.check_cache = check_cache
        self.poll_interval = poll_interval
        self.visible_timeout = visible_timeout
        self.on_event = on_event
        self.event_latency = LatencyHistogram()
        self.sync_lag = LatencyHistogram()
        self.received = 0
        self.not_visible = 0  # cache never showed the announced version within the timeout
        self.errors = 0
        self.last_id = "0-0"
        self._task: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()
        self._new = asyncio.Event()  # set on every kept event: wakes wait_for()

    # -- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            return
        if self.from_id is None:
            # Resolve "$" to an explicit id now: an XREAD issued with "$" a moment later would
            # miss whatever was published in between.
            newest = await self.cache.execute("XREVRANGE", self.stream, "+", "-", "COUNT", 1)
            self.last_id = _text(newest[0][0]) if newest else "0-0"
        else:
            self.last_id = self.from_id
        self._task = asyncio.create_task(self._run(), name="tristore-dashboard")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Cancelled until it is done: a cancel of the blocked XREAD can be lost on its way
            # through redis-py (a make test run hung here for good, the reader still in XREAD
            # at teardown), and the reader also leaves at its next reply, as it is no longer
            # self._task.
            try:
                while not task.done():
                    task.cancel()
                    await asyncio.wait([task], timeout=STOP_POLL_S)
            except asyncio.CancelledError:
                task.cancel()
                raise
            if not task.cancelled() and task.exception() is not None:
                log.warning("dashboard: the reader ended with %r", task.exception())
        # Let pending visibility checks finish (each is bounded by visible_timeout).
        if self._checks:
            await asyncio.gather(*self._checks, return_exceptions=True)

    async def __aenter__(self) -> Dashboard:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- reading ----------------------------------------------------------------------------
    async def _run(self) -> None:
        me = asyncio.current_task()
        while self._task is me:  # stop() (or a restart) replaces it
            try:
                async with self.cache.client() as conn:
                    while self._task is me:
                        reply = await conn.xread(
                            {self.stream: self.last_id}, count=500, block=self.block_ms
                        )
                        received_at = time.time()
                        for _stream, entries in reply or []:
                            for entry_id, fields in entries:
                                self.last_id = _text(entry_id)
                                self._handle(parse_entry(entry_id, fields), received_at)
            except asyncio.CancelledError:
                raise
            except TristoreError as exc:
                # A dropped connection: resume from last_id on a new one (that is what the
                # stream is for). Back off a little so a dead server is not hammered.
                self.errors += 1
                log.warning("dashboard: %s; resuming from %s", exc, self.last_id)
                await asyncio.sleep(0.1)

    def _handle(self, event: Event, received_at: float) -> None:
        if self.types is not None and event.type not in self.types:
            return
        self.received += 1
        self.event_latency.record_seconds(max(received_at - event.ts, 0.0))
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        key = event.data.get("cache_key")
        if self.check_cache and key is not None and "version" in event.data:
            task = asyncio.create_task(self._check_visible(event, str(key)))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)
        self._new.set()

    async def _check_visible(self, event: Event, key: str) -> None:
        wanted = int(event.data["version"])
        deadline = time.monotonic() + self.visible_timeout
        while True:
            try:
                raw = await self.cache.execute("HGET", key, "version")
            except StoreUnavailable:
                raw = None
            seen_at = time.time()
            if raw is not None and int(raw) >= wanted:
                self.sync_lag.record_seconds(max(seen_at - event.ts, 0.0))
                return
            if time.monotonic() >= deadline:
                self.not_visible += 1
                return
            await asyncio.sleep(self.poll_interval)

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        """The first kept event matching ``predicate``, waiting up to ``timeout`` seconds."""

        def found() -> Event | None:
            return next((e for e in self.events if predicate(e)), None)

        async with asyncio.timeout(timeout):
            while (event := found()) is None:
                # No await between found() and clear(): an event cannot slip in unseen.
                self._new.clear()
                await self._new.wait()
        return event

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for the visibility checks under way (call before reading sync_lag)."""
        if self._checks:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*self._checks, return_exceptions=True)

    def summary(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "errors": self.errors,
            "not_visible": self.not_visible,
            "event_latency": self.event_latency.summary(),
            "sync_lag": self.sync_lag.summary(),
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)

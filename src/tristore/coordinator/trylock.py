"""An asyncio lock that can also be taken without an await, when it is free.

The commit path takes the graph lock in the caller's task, before the commit protocol's own task
has started, so that the Kuzu thread is already staging while that task waits for its first loop
turn. ``asyncio.Lock`` has no synchronous acquire, hence this one. Waiters are served first in,
first out, and the lock passes straight from the releasing holder to the oldest waiter (a
``try_acquire`` never overtakes someone already waiting).
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class TryLock:
    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        # Non-empty only while held: release() hands the lock to the first of them.
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        """Take the lock now if it is free; never waits."""
        if self._held:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # it was handed to us as we were cancelled: pass it on
            elif waiter in self._waiters:  # (a release() may have skipped it already)
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("TryLock.release(): the lock is not held")
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # still held: it now belongs to that waiter
                return
        self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

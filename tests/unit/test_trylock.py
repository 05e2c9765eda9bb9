"""TryLock: the coordinator's graph lock, which the commit path may take without an await."""

from __future__ import annotations

import asyncio

import pytest

from tristore.coordinator.trylock import TryLock


async def test_try_acquire_takes_a_free_lock_only() -> None:
    lock = TryLock()
    assert lock.try_acquire()
    assert lock.locked()
    assert not lock.try_acquire()
    lock.release()
    assert not lock.locked()
    assert lock.try_acquire()


async def test_waiters_are_served_in_order_and_a_release_hands_the_lock_over() -> None:
    lock = TryLock()
    lock.try_acquire()
    order: list[int] = []

    async def waiter(n: int) -> None:
        async with lock:
            order.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    lock.release()
    # Handed over, not freed: nothing can slip in ahead of the waiters.
    assert lock.locked() and not lock.try_acquire()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert not lock.locked()


async def test_a_cancelled_waiter_leaves_the_line() -> None:
    lock = TryLock()
    lock.try_acquire()
    first = asyncio.create_task(lock.acquire())
    second = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    lock.release()
    await second  # the lock went past the cancelled waiter
    assert lock.locked()
    lock.release()
    assert not lock.locked()


async def test_a_waiter_cancelled_as_the_lock_reaches_it_passes_it_on() -> None:
    lock = TryLock()
    lock.try_acquire()
    first = asyncio.create_task(lock.acquire())
    second = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    lock.release()  # handed to `first`, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert lock.locked()
    lock.release()
    assert not lock.locked()


async def test_releasing_a_free_lock_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not held"):
        TryLock().release()

"""The one async connection pool, shared by the SQLite, graph and Redis stores.

Modelled on asyncpg's ``pool.py`` and psycopg_pool's ``AsyncConnectionPool``: a single state
machine driven from the event loop, with no locks. Every state change (checkout, return, hand-over
to a waiter, discard) is a synchronous block of attribute updates between two ``await`` points,
so no other task can observe a half-done transition.

A connection is always in exactly one of these places::

    connecting ─► idle ─► in use ─► resetting ─► handed to the oldest waiter, else idle
        │          │        │           │
        └──────────┴────────┴───────────┴─► closing (a background task) ─► gone

("handed to a waiter" is a state of its own: the waiter's future holds the connection until the
waiting task runs; if that task was cancelled meanwhile, the connection is passed on.)

``pool_size`` (``_nconns``) counts every one of them but "gone": a slot is taken before
``connect()`` starts and given back only once the connection's ``close()`` has returned (or the
connect failed, or was cancelled, even before it began to run). A discarded connection is still
open at the store while it closes, so its replacement waits for that close, as in asyncpg (a
holder closes its connection before connecting again) and psycopg_pool (the close is awaited
before a replacement is added). That is what keeps the connections open at the store within
``max_size``, not merely the ones the pool can hand out.

Waiting requests are futures in a FIFO deque. A returned or freshly created connection is handed
*directly* to the oldest live waiter (``_deliver``), never parked in ``idle`` where a newcomer on
the fast path could take it first. ``idle`` is therefore non-empty only when nobody is waiting,
which is why the fast path may simply pop from it.

Growth happens in background tasks: a request that finds no idle connection queues itself and,
if the pool is below ``max_size``, starts one connect task. Whatever that task produces goes to
the oldest waiter, so a request cancelled or timed out while "its" connection is being made
costs nothing: the connection serves the next waiter or becomes idle. Acquire timeouts are
timers that resolve the waiter's future with :class:`PoolTimeout`; delivery and timeout both
resolve the same future synchronously, so exactly one of them wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import random
import warnings
from collections import deque
from dataclasses import dataclass
from time import monotonic
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from tristore.errors import (
    PoolClosed,
    PoolConfigError,
    PoolError,
    PoolTimeout,
    StoreUnavailable,
    TooManyRequests,
    TristoreError,
)

__all__ = ["Connector", "Pool", "PoolConfig", "PoolConfigError"]

logger = logging.getLogger(__name__)

C = TypeVar("C")

_INF = math.inf
_pool_ids = itertools.count(1)


class Connector(Protocol[C]):
    """How a pool makes, vets and closes connections of one store."""

    store: str  # "sqlite" | "graph" | "redis": named in errors and stats

    async def connect(self) -> C:
        """Open a new connection (bounded by ``PoolConfig.connect_timeout``)."""
        ...

    async def close(self, conn: C) -> None:
        """Close a connection; errors are logged and swallowed by the pool."""
        ...

    async def check(self, conn: C) -> None:
        """Health ping: raise if the connection is unusable."""
        ...

    async def reset(self, conn: C) -> bool:
        """Clean a returned connection: True if reusable, False to discard it."""
        ...


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise PoolConfigError(message)


def _is_duration(value: float, *, allow_zero: bool = True) -> bool:
    """A number of seconds: not NaN, not negative (``math.inf`` allowed: "no limit")."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return False
    return value >= 0 if allow_zero else value > 0


@dataclass(frozen=True)
class PoolConfig:
    """Limits of one pool. Durations are seconds; ``math.inf`` disables a duration limit."""

    min_size: int = 1
    max_size: int = 10
    timeout: float = 30.0  # acquire: how long a request may wait for a connection
    max_waiting: int = 0  # 0: unlimited queue; beyond it requests fail with TooManyRequests
    max_lifetime: float = 3600.0  # a connection older than this is recycled
    max_idle: float = 600.0  # shrink_idle() closes connections idle longer, down to min_size
    max_uses: int = 0  # 0: unlimited; else recycled after this many checkouts
    check_on_checkout: bool = False  # ping reused connections before handing them out
    lifetime_jitter: float = 0.05  # each lifetime is shortened by up to this fraction
    connect_timeout: float = 10.0  # one connect() attempt; also bounds health pings
    close_timeout: float = 5.0  # close(): wait for checked-out connections; bounds each close()

    def __post_init__(self) -> None:
        for name in ("min_size", "max_size", "max_waiting", "max_uses"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and not isinstance(value, bool),
                f"{name}: expected an int, got {value!r}",
            )
        _require(self.max_size >= 1, f"max_size: pool size must be >= 1, got {self.max_size}")
        _require(self.min_size >= 0, f"min_size: must be >= 0, got {self.min_size}")
        _require(
            self.min_size <= self.max_size,
            f"min_size: must be <= max_size ({self.max_size}), got {self.min_size}",
        )
        _require(self.max_waiting >= 0, f"max_waiting: must be >= 0, got {self.max_waiting}")
        _require(self.max_uses >= 0, f"max_uses: must be >= 0, got {self.max_uses}")
        for name in ("timeout", "close_timeout"):
            value = getattr(self, name)
            _require(
                _is_duration(value), f"{name}: must be a number of seconds >= 0, got {value!r}"
            )
        for name in ("max_lifetime", "max_idle", "connect_timeout"):
            value = getattr(self, name)
            _require(
                _is_duration(value, allow_zero=False),
                f"{name}: must be a number of seconds > 0 (math.inf: no limit), got {value!r}",
            )
        jitter = self.lifetime_jitter
        _require(
            _is_duration(jitter) and jitter < 1,
            f"lifetime_jitter: must be a fraction in [0, 1), got {jitter!r}",
        )
        _require(
            isinstance(self.check_on_checkout, bool),
            f"check_on_checkout: expected a bool, got {self.check_on_checkout!r}",
        )


class _Holder(Generic[C]):
    """A connection plus the bookkeeping the pool keeps about it."""

    __slots__ = (
        "checkout_at",
        "closed",
        "conn",
        "deadline",
        "discard",
        "idle_since",
        "in_use",
        "uses",
    )

    def __init__(self, conn: C, now: float, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline  # monotonic time after which it is recycled (jittered)
        self.idle_since = now
        self.checkout_at = now
        self.uses = 0  # checkouts so far
        # Checked out and not yet returned. A flag, not membership of a dict of checked-out
        # connections: a dict insert and pop per checkout cost ~170 ns, most of the pool's
        # own bookkeeping on the hot path.
        self.in_use = False
        self.discard = False  # set by Pool.discard(): close on return instead of reusing
        self.closed = False  # discarded (or force-closed by Pool.close): never touch again


class _Acquire(Generic[C]):
    """``async with pool.acquire() as conn``: the return path cannot lose the connection."""

    __slots__ = ("_holder", "_pool", "_timeout")

    def __init__(self, pool: Pool[C], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._holder: _Holder[C] | None = None

    async def __aenter__(self) -> C:
        if self._holder is not None:
            raise PoolError("this acquire() context is already in use; call pool.acquire() again")
        pool = self._pool
        idle = pool._idle
        # Pool._get_nowait, inlined: this is the other half of the hot path.
        if idle and not pool._closed and not pool._check_on_checkout:
            holder = idle[-1]
            now = monotonic()
            if holder.uses < pool._max_uses and now < holder.deadline:
                idle.pop()
                holder.uses += 1
                holder.checkout_at = now
                holder.in_use = True
                pool._checkouts += 1
                if holder.uses == 1:
                    pool._fresh += 1
                self._holder = holder
                return holder.conn
        holder = await pool._get(self._timeout)
        self._holder = holder
        return holder.conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        holder = self._holder
        if holder is None:  # pragma: no cover - __aexit__ without a successful __aenter__
            return
        self._holder = None
        pool = self._pool
        if not holder.in_use:
            if holder.closed:  # force-closed by Pool.close(timeout): nothing left to do
                pool._forget(holder)
                return
            raise PoolError(f"pool {pool._name!r}: connection was already returned with putconn()")
        holder.in_use = False
        # Pool._return and Pool._release, inlined: this is half of the hot path.
        now = monotonic()
        pool._usage_s += now - holder.checkout_at
        holder.idle_since = now
        # CancelledError, KeyboardInterrupt, GeneratorExit...: the body stopped at an unknown
        # point (maybe mid-transaction), so the connection cannot be trusted: discard it.
        if (
            (exc_type is None or issubclass(exc_type, Exception))
            and not holder.discard
            and not pool._closed
        ):
            if not pool._reset_on_return:
                # Pool._reuse, inlined for the common case: straight back to idle.
                if (
                    not pool._waiting
                    and holder.uses < pool._max_uses
                    and now < holder.deadline
                    and pool._nconns <= pool._max_size
                ):
                    pool._idle.append(holder)
                else:
                    pool._reuse(holder, True)
                return
            try:
                ok = await pool._connector.reset(holder.conn)
            except Exception as err:
                ok = pool._reset_failed(err)
            except BaseException:
                pool._discard(holder)  # cancelled mid-reset: state unknown
                raise
            pool._reuse(holder, ok)
        else:
            pool._discard(holder, count=not pool._closed)


class Pool(Generic[C]):
    """An async pool of connections made by one :class:`Connector`.

    Use ``async with Pool(connector, config) as pool`` (or ``open()`` / ``close()``), then
    ``async with pool.acquire() as conn``. See the module docstring for the state machine.
    """

    def __init__(
        self,
        connector: Connector[C],
        config: PoolConfig | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self._connector = connector
        # A connector whose connections cannot be left dirty by a body that exited normally
        # sets ``reset_on_return = False`` and saves an await on every return.
        self._reset_on_return = bool(getattr(connector, "reset_on_return", True))
        self._config = config if config is not None else PoolConfig()
        self._name = name if name is not None else f"{connector.store}-{next(_pool_ids)}"
        self._load_limits()

        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new -> open -> closed ("new" again after a failed open)
        self._closed = True  # the hot-path flag: True unless state == "open"
        self._close_done: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None  # set while close() waits for returns

        self._idle: deque[_Holder[C]] = deque()  # LIFO at the right end; oldest idle at left
        # id(conn) -> holder of every live connection, for putconn()/discard(), which are given
        # a bare connection. Changed only when a connection is made or closed, never on the hot
        # path. A connection force-closed by close(timeout) stays (closed, no longer in use)
        # until it comes back, so that its late return is quiet rather than refused as foreign.
        self._holders: dict[int, _Holder[C]] = {}
        self._waiting: deque[asyncio.Future[_Holder[C]]] = deque()  # FIFO of pending requests
        # pool_size: every slot taken, by a connection being created, idle, in use or closing
        self._nconns = 0
        self._connecting = 0
        self._closing = 0  # discarded connections whose close() has not returned yet
        self._connects: set[asyncio.Task[BaseException | None]] = set()
        # Connect tasks that have not taken their first step: cancelled then (by close() or a
        # failed open()), their body never runs, so their done callback gives the slot back.
        self._unstarted: set[asyncio.Task[BaseException | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # background closes

        # Counters (psycopg_pool names in stats()); durations accumulate in seconds.
        self._requests_failed = 0  # requests_num = checkouts + failed + pending (hot path: 1 +=)
        self._requests_pending = 0
        self._requests_queued = 0
        self._requests_wait_s = 0.0
        self._requests_errors = 0
        self._requests_cancelled = 0
        self._connections_num = 0  # connect attempts, failed ones included (as psycopg_pool)
        self._connections_s = 0.0  # time spent in connect attempts, failed ones included
        self._connections_errors = 0
        self._connections_lost = 0
        self._connections_discarded = 0
        self._returns_bad = 0
        self._usage_s = 0.0
        self._last_connect_error: str | None = None
        self._checkouts = 0
        self._fresh = 0  # checkouts that were a connection's first: reused = checkouts - fresh

    def _load_limits(self) -> None:
        """Copy the limits the hot path reads into plain attributes (no config lookups there)."""
        cfg = self._config
        self._min_size = cfg.min_size
        self._max_size = cfg.max_size
        self._max_uses = cfg.max_uses or (1 << 62)
        self._check_on_checkout = cfg.check_on_checkout

    # -- properties -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def waiting(self) -> int:
        """Requests queued for a connection now (``stats()["requests_waiting"]``, without the
        dict)."""
        return len(self._waiting)

    @property
    def config(self) -> PoolConfig:
        return self._config

    @property
    def closed(self) -> bool:
        """True before ``open()`` and from the start of ``close()`` on."""
        return self._closed

    @property
    def size(self) -> int:
        """Slots taken: connections being created, idle, in use, or discarded and still closing."""
        return self._nconns

    def __del__(self, _warn: Any = warnings.warn) -> None:
        # As aiosqlite and psycopg_pool do: an open pool lost without close() leaks its
        # connections until the process ends; say so where it happened (-W error finds it).
        if getattr(self, "_state", None) == "open":
            _warn(
                f"pool {self._name!r} was garbage-collected while open: close() it or use "
                "'async with'",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        return (
            f"<Pool {self._name!r} store={self._connector.store} {self._state} "
            f"size={self._nconns}/{self._max_size} idle={len(self._idle)} "
            f"waiting={len(self._waiting)}>"
        )

    # -- life cycle -----------------------------------------------------------------------

    async def open(self, wait: bool = True) -> None:
        """Start the pool with ``min_size`` connections, made concurrently.

        With ``wait`` the first connect failure raises :class:`StoreUnavailable` and the pool
        goes back to its unopened state (``open()`` may be retried). Without it the connections
        are made in the background and failures are only counted.
        """
        if self._state == "open":
            return
        if self._state == "closed":
            raise PoolClosed(f"pool {self._name!r} was closed and cannot be reopened")
        self._loop = asyncio.get_running_loop()
        self._state = "open"
        self._closed = False
        tasks = [self._start_connect() for _ in range(self._min_size)]
        if not wait or not tasks:
            return
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self._abort_open()
            raise errors[0]

    async def _abort_open(self) -> None:
        """Undo a failed ``open(wait=True)``: close what was made, return to the new state."""
        self._closed = True
        for task in list(self._connects):
            task.cancel()
        await asyncio.gather(*self._connects, return_exceptions=True)
        while self._idle:
            self._discard(self._idle.pop(), count=False)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._state = "new"

    async def close(self, timeout: float | None = None) -> None:
        """Stop the pool; idempotent.

        New requests and queued ones fail with :class:`PoolClosed`. Idle connections are closed
        at once; checked-out ones are closed when returned, or forcibly after ``timeout``
        seconds (default ``config.close_timeout``). Returns once every connection's ``close()``
        has returned (each is bounded by ``config.close_timeout``).
        """
        if self._close_done is not None:  # a close is under way or done: wait for it
            await asyncio.shield(self._close_done)
            return
        if self._state != "open":
            self._state = "closed"
            self._closed = True
            return
        assert self._loop is not None
        if timeout is None:
            timeout = self._config.close_timeout
        self._close_done = self._loop.create_future()
        self._state = "closed"
        self._closed = True
        try:
            waiting = self._waiting
            while waiting:
                fut = waiting.popleft()
                if not fut.done():
                    fut.set_exception(PoolClosed(f"pool {self._name!r} closed while waiting"))
            for task in list(self._connects):
                task.cancel()
            await asyncio.gather(*self._connects, return_exceptions=True)
            while self._idle:
                self._discard(self._idle.pop(), count=False)
            if self._nconns > 0:  # checked out, or closing: _slot_freed() says when none is left
                self._drained = self._loop.create_future()
                await asyncio.wait([self._drained], timeout=_finite(timeout))
                in_use = self._in_use()
                if in_use:
                    logger.warning(
                        "pool %r: %d connection(s) still in use after %gs; closing them",
                        self._name,
                        len(in_use),
                        timeout,
                    )
                    for holder in in_use:
                        self._discard(holder, count=False)
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self._close_done.set_result(None)

    async def __aenter__(self) -> Pool[C]:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- checkout ---------------------------------------------------------------------------

    def acquire(self, timeout: float | None = None) -> _Acquire[C]:
        """``async with pool.acquire(timeout) as conn``: the connection is returned on exit."""
        return _Acquire(self, timeout)

    async def getconn(self, timeout: float | None = None) -> C:
        """Check out a connection; give it back with :meth:`putconn`."""
        return (self._get_nowait() or await self._get(timeout)).conn

    def _get_nowait(self) -> _Holder[C] | None:
        """The hot path: check out the newest idle connection if that needs no ``await``.

        None sends the caller to :meth:`_get`, which redoes every check: closed pool, ping on
        checkout, no idle connection, or an idle one due for recycling.
        """
        idle = self._idle
        if not idle or self._closed or self._check_on_checkout:
            return None
        holder = idle[-1]
        now = monotonic()
        if holder.uses >= self._max_uses or now >= holder.deadline:
            return None
        idle.pop()
        self._checkout(holder, now)
        return holder

    def _checkout(self, holder: _Holder[C], now: float) -> None:
        holder.uses += 1
        holder.checkout_at = now
        holder.in_use = True
        self._checkouts += 1
        if holder.uses == 1:
            self._fresh += 1

    async def _get(self, limit: float | None) -> _Holder[C]:
        """The slow path: recycle, wait in line, ping. Only the fast path's checks are redone."""
        if self._closed:
            raise self._closed_error()
        self._requests_pending += 1
        try:
            holder = await self._get_slow(limit)
        except BaseException:
            self._requests_failed += 1
            raise
        finally:
            self._requests_pending -= 1
        return holder

    async def _get_slow(self, limit: float | None) -> _Holder[C]:
        idle = self._idle
        deadline: float | None = None
        while True:
            if idle:  # idle is non-empty only when nobody waits, so taking from it is fair
                holder = idle.pop()
                now = monotonic()
                if holder.uses >= self._max_uses or now >= holder.deadline:
                    self._discard(holder)  # recycle; a replacement is made on demand
                    continue
            else:
                if deadline is None:
                    if limit is None:
                        limit = self._config.timeout
                    elif not _is_duration(limit):
                        raise PoolError(f"acquire timeout must be >= 0 seconds, got {limit!r}")
                    wait_for = limit
                    deadline = monotonic() + limit
                else:  # waiting again after a failed checkout ping: only what is left
                    wait_for = max(0.0, deadline - monotonic())
                holder = await self._wait(wait_for, limit)
                now = monotonic()
                if self._closed:  # handed over just before close(): give it back
                    self._discard(holder, count=False)
                    raise self._closed_error()
            if self._check_on_checkout and holder.uses and not await self._ping(holder):
                continue
            self._checkout(holder, now)
            return holder

    async def _wait(self, wait_for: float, limit: float) -> _Holder[C]:
        """Queue this request and wait for a connection to be handed over."""
        max_waiting = self._config.max_waiting
        if max_waiting and len(self._waiting) >= max_waiting:
            self._requests_errors += 1
            raise TooManyRequests(
                f"pool {self._name!r} ({self._connector.store}): {len(self._waiting)} requests "
                f"already waiting (max_waiting={max_waiting}); size "
                f"{self._nconns}/{self._max_size}. Retry later or raise max_size/max_waiting."
            )
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future[_Holder[C]] = loop.create_future()
        self._waiting.append(fut)
        self._requests_queued += 1
        self._grow()
        timer = (
            loop.call_later(wait_for, self._on_wait_timeout, fut, limit)
            if wait_for != _INF
            else None
        )
        start = monotonic()
        try:
            return await fut
        except asyncio.CancelledError:
            # Cancelled from outside. If a connection was handed to us in the same instant,
            # pass it on (next waiter or idle) rather than leak it.
            if fut.cancelled():
                with contextlib.suppress(ValueError):
                    self._waiting.remove(fut)
            elif fut.exception() is None:
                self._deliver(fut.result())
            self._requests_cancelled += 1
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._requests_wait_s += monotonic() - start

    def _on_wait_timeout(self, fut: asyncio.Future[_Holder[C]], timeout: float) -> None:
        if fut.done():  # a connection (or an error) won the race
            return
        self._waiting.remove(fut)
        self._requests_errors += 1
        fut.set_exception(
            PoolTimeout(
                f"pool {self._name!r} ({self._connector.store}): no connection available "
                f"within {timeout:g}s (size {self._nconns}/{self._max_size}, "
                f"{len(self._waiting)} other request(s) waiting)"
            )
        )

    async def _ping(self, holder: _Holder[C]) -> bool:
        """check_on_checkout: False (connection discarded) if the ping fails."""
        try:
            async with asyncio.timeout(_finite(self._config.connect_timeout)):
                await self._connector.check(holder.conn)
        except Exception as exc:
            logger.debug("pool %r: connection failed its checkout ping: %r", self._name, exc)
            self._connections_lost += 1
            self._discard(holder)
            return False
        except BaseException:
            self._discard(holder)  # cancelled mid-ping: state unknown
            raise
        return True

    # -- return -----------------------------------------------------------------------------

    async def putconn(self, conn: C, *, discard: bool = False) -> None:
        """Give back a connection from :meth:`getconn`; ``discard`` closes it instead."""
        holder = self._holders.get(id(conn))
        if holder is None or not (holder.in_use or holder.closed):
            raise PoolError(
                f"pool {self._name!r}: connection {conn!r} is not checked out from this pool "
                "(foreign, or already returned)"
            )
        if holder.closed:  # force-closed by close(timeout): its late return is quiet, once
            self._forget(holder)
            return
        holder.in_use = False
        await self._return(holder, discard)

    def discard(self, conn: C) -> None:
        """Mark a checked-out connection to be closed on return instead of reused."""
        holder = self._holders.get(id(conn))
        if holder is None or not (holder.in_use or holder.closed):
            raise PoolError(
                f"pool {self._name!r}: connection {conn!r} is not checked out from this pool"
            )
        holder.discard = True  # (a no-op if close(timeout) already force-closed it)

    async def _return(self, holder: _Holder[C], discard: bool) -> None:
        """Back from a user (``in_use`` already cleared): reset, then reuse or discard.

        Everything before and after ``reset()`` is synchronous; if the task is cancelled during
        ``reset()`` the connection is discarded before the CancelledError goes on, so a
        cancelled task can never leak a connection (the guarantee asyncpg gets by shielding
        its release, without the cost of a task per release). ``_Acquire.__aexit__`` inlines
        this method.
        """
        if self._release(holder, discard):
            if not self._reset_on_return:
                self._reuse(holder, True)
                return
            try:
                ok = await self._connector.reset(holder.conn)
            except Exception as exc:
                ok = self._reset_failed(exc)
            except BaseException:
                self._discard(holder)  # cancelled mid-reset: state unknown
                raise
            self._reuse(holder, ok)

    def _release(self, holder: _Holder[C], discard: bool) -> bool:
        """First half of a return: account the use; True if the connection is to be reset."""
        now = monotonic()
        self._usage_s += now - holder.checkout_at
        holder.idle_since = now
        if discard or holder.discard or self._closed:
            self._discard(holder, count=not self._closed)
            return False
        return True

    def _reset_failed(self, exc: Exception) -> bool:
        logger.debug("pool %r: reset() failed, discarding the connection: %r", self._name, exc)
        return False

    def _reuse(self, holder: _Holder[C], ok: bool) -> None:
        """Second half of a return, after ``reset()``: hand over / park it, or discard it."""
        if not ok:
            self._returns_bad += 1
            self._discard(holder)
        elif (
            self._closed  # closed while resetting
            or holder.uses >= self._max_uses
            or holder.idle_since >= holder.deadline
            # After resize() down. Slots held by closing connections do not count: the first
            # test alone (the one the common case pays) keeps the return path as it was.
            or (self._nconns > self._max_size and self._nconns - self._closing > self._max_size)
        ):
            self._discard(holder, count=not self._closed)
        elif self._waiting:
            self._deliver(holder)
        else:
            self._idle.append(holder)  # _deliver(), inlined for the common case

    # -- state transitions (all synchronous) -----------------------------------------------

    def _deliver(self, holder: _Holder[C]) -> None:
        """A usable connection: to the oldest live waiter, else to idle."""
        if self._closed:
            self._discard(holder, count=False)
            return
        waiting = self._waiting
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_result(holder)
                return
        self._idle.append(holder)

    def _discard(self, holder: _Holder[C], *, count: bool = True) -> asyncio.Task[None] | None:
        """Take a connection out of the pool and close it in the background.

        Its slot stays taken until the close has returned (``_close_finished``): the connection
        is open at the store until then, so a replacement started now could exceed max_size.
        """
        if holder.closed:
            return None
        holder.closed = True
        if holder.in_use:  # force-closed by close(timeout): forgotten when it comes back
            holder.in_use = False
        else:
            self._forget(holder)
        self._closing += 1
        if count:
            self._connections_discarded += 1
        assert self._loop is not None
        task = self._loop.create_task(self._close_conn(holder.conn))
        self._tasks.add(task)  # keep a reference: the loop only holds weak ones
        task.add_done_callback(self._close_finished)
        return task

    def _close_finished(self, task: asyncio.Task[None]) -> None:
        """A discarded connection is closed (or its close failed, timed out, was cancelled, even
        before it began): give its slot back."""
        self._tasks.discard(task)
        self._closing -= 1
        self._nconns -= 1
        self._slot_freed()

    def _forget(self, holder: _Holder[C]) -> None:
        self._holders.pop(id(holder.conn), None)

    def _in_use(self) -> list[_Holder[C]]:
        """The checked-out connections (slow: for close() and tests, never the hot path)."""
        return [holder for holder in self._holders.values() if holder.in_use]

    def _slot_freed(self, *, refill: bool = True) -> None:
        """A slot opened up: serve waiters, keep min_size (if ``refill``), or let close() finish.

        A failed connect passes ``refill=False``: replacing it for min_size's sake would retry a
        dead store in a loop, whereas a waiter's connect attempt is bounded by the waiters.
        """
        if self._closed:
            drained = self._drained
            if self._nconns == 0 and drained is not None and not drained.done():
                drained.set_result(None)
            return
        if self._waiting:
            self._grow()
        while refill and self._nconns < self._min_size:
            self._start_connect()

    def _grow(self) -> None:
        """Start connects for waiters not already covered by one, within max_size."""
        while self._connecting < len(self._waiting) and self._nconns < self._max_size:
            self._start_connect()

    def _start_connect(self) -> asyncio.Task[BaseException | None]:
        # The slot is taken now, before connect() starts, so concurrent requests see it.
        self._nconns += 1
        self._connecting += 1
        assert self._loop is not None
        task = self._loop.create_task(self._connect())
        self._connects.add(task)
        self._unstarted.add(task)
        task.add_done_callback(self._connect_finished)
        return task

    def _connect_finished(self, task: asyncio.Task[BaseException | None]) -> None:
        self._connects.discard(task)
        if task in self._unstarted:
            # Cancelled before its first step: the coroutine's body, and with it the clean-up
            # in _connect, never ran. Without this the slot would stay taken for good, and
            # close() would wait out its whole timeout for it.
            self._unstarted.discard(task)
            self._connecting -= 1
            self._nconns -= 1
            self._slot_freed()

    async def _connect(self) -> BaseException | None:
        """Make one connection for the pool; return the error (already dealt with) if any."""
        task = asyncio.current_task()
        if task is not None:
            self._unstarted.discard(task)
        self._connections_num += 1  # an attempt, as psycopg_pool counts connections_num
        start = monotonic()
        try:
            try:
                async with asyncio.timeout(_finite(self._config.connect_timeout)):
                    conn = await self._connector.connect()
            finally:
                self._connecting -= 1
                self._connections_s += monotonic() - start
        except Exception as exc:
            self._nconns -= 1  # free the slot: no phantom size
            self._connections_errors += 1
            err = self._connect_error(exc)
            self._last_connect_error = str(err)
            logger.debug("pool %r: %s", self._name, err)
            # The oldest waiter would have got this connection: it gets the error instead.
            # Deliberately no retry for it: a dead store must not be hammered in a loop.
            waiting = self._waiting
            while waiting:
                fut = waiting.popleft()
                if not fut.done():
                    self._requests_errors += 1
                    fut.set_exception(err)
                    break
            # The freed slot still serves the waiters behind, which may have queued while the
            # pool was full: each one not covered by a connect under way gets an attempt of its
            # own. Each failure consumes one waiter, so a dead store costs one fast attempt per
            # request, never a loop and never a waiter stranded until its acquire timeout.
            self._slot_freed(refill=False)
            return err
        except BaseException:  # cancelled (only close() or a failed open() do that)
            self._nconns -= 1
            self._slot_freed()
            raise
        now = monotonic()
        lifetime = self._config.max_lifetime * (
            1.0 - self._config.lifetime_jitter * random.random()
        )
        holder = _Holder(conn, now, now + lifetime)
        self._holders[id(conn)] = holder
        self._deliver(holder)
        return None

    def _connect_error(self, exc: Exception) -> Exception:
        if isinstance(exc, TristoreError):
            return exc
        if isinstance(exc, TimeoutError):
            message = f"cannot connect: timed out after {self._config.connect_timeout:g}s"
        else:
            message = f"cannot connect: {exc}" if str(exc) else f"cannot connect: {exc!r}"
        err = StoreUnavailable(self._connector.store, message)
        err.__cause__ = exc
        return err

    async def _close_conn(self, conn: C) -> None:
        """Close one connection; never raises (closing must not fail the caller)."""
        try:
            async with asyncio.timeout(_finite(self._config.close_timeout)):
                await self._connector.close(conn)
        except Exception as exc:
            logger.debug("pool %r: error closing a connection (ignored): %r", self._name, exc)

    def _closed_error(self) -> PoolClosed:
        if self._state == "new":
            return PoolClosed(
                f"pool {self._name!r} is not open: call `await pool.open()` or use `async with`"
            )
        return PoolClosed(f"pool {self._name!r} is closed")

    # -- maintenance ------------------------------------------------------------------------

    async def check(self) -> dict[str, Any]:
        """Ping every idle connection, discard broken (or expired) ones, refill to min_size.

        Returns ``{"ok", "checked", "discarded", "error"}``. ``ok`` is False when a connect
        failed, or when pings failed and no fresh connection proved the store reachable.
        """
        if self._closed:
            return {
                "ok": False,
                "checked": 0,
                "discarded": 0,
                "error": self._closed_error().args[0],
            }
        attempts, failed = self._connections_num, self._connections_errors
        # Take the idle connections out while they are pinged, so nobody is handed one mid-ping.
        holders = list(self._idle)
        self._idle.clear()
        closes: list[asyncio.Task[None]] = []
        now = monotonic()
        for holder in holders:
            if holder.uses >= self._max_uses or now >= holder.deadline:
                self._discard_into(closes, holder)  # due for recycling: no point pinging it
        pinged = [h for h in holders if not h.closed]
        try:
            outcomes = await asyncio.gather(
                *(self._ping_only(h) for h in pinged), return_exceptions=True
            )
        except BaseException:
            # Cancelled mid-ping: those connections are in an unknown state.
            for holder in pinged:
                self._discard(holder)
            raise
        ping_errors: list[str] = []
        for holder, outcome in zip(pinged, outcomes, strict=True):
            if outcome is None:
                self._deliver(holder)
            else:
                self._connections_lost += 1
                self._discard_into(closes, holder)
                ping_errors.append(f"[{self._connector.store}] health check failed: {outcome!r}")
        if self._closed:  # closed while pinging
            return {
                "ok": False,
                "checked": len(holders),
                "discarded": len(closes),
                "error": self._closed_error().args[0],
            }
        # Below min_size before this check (earlier connects failed): refill now. The slots of
        # the connections just discarded are refilled as their closes finish (_close_finished).
        for _ in range(self._min_size - self._nconns):
            self._start_connect()
        if closes:
            # asyncio.wait, unlike gather, does not cancel the closes if this check is.
            await asyncio.wait(closes)
        if self._nconns == 0 and self._connections_num == attempts and not self._closed:
            # Nothing left to ping and no connect tried (min_size 0): probe with one connection,
            # which then stays idle. A pool whose connections are all in use is taken to be
            # healthy.
            self._start_connect()
        # Wait for every connect under way, including the replacements for the discarded ones:
        # whether they worked says whether the store is reachable right now.
        await asyncio.gather(*self._connects, return_exceptions=True)
        failed = self._connections_errors - failed
        made = self._connections_num - attempts - failed
        error: str | None = None
        if failed:
            error = self._last_connect_error
        elif ping_errors and not made:
            error = ping_errors[0]
        return {
            "ok": error is None,
            "checked": len(holders),
            "discarded": len(closes),
            "error": error,
        }

    def _discard_into(self, tasks: list[asyncio.Task[None]], holder: _Holder[C]) -> None:
        task = self._discard(holder)
        if task is not None:
            tasks.append(task)

    async def _ping_only(self, holder: _Holder[C]) -> None:
        async with asyncio.timeout(_finite(self._config.connect_timeout)):
            await self._connector.check(holder.conn)

    async def grow(self, n: int) -> int:
        """Add up to ``n`` connections now, within max_size; return how many were made.

        For a monitor that sees requests queueing and wants capacity before the next burst
        (the pool itself already starts one connect per waiter, so this is only a head start).
        """
        if self._closed or n <= 0:
            return 0
        tasks = []
        while len(tasks) < n and self._nconns < self._max_size:
            tasks.append(self._start_connect())
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return sum(1 for r in results if r is None)

    async def resize(self, min_size: int, max_size: int) -> None:
        """Change the limits. Extra idle connections close now, extra busy ones on return."""
        self._config = dataclasses.replace(self._config, min_size=min_size, max_size=max_size)
        self._load_limits()
        if self._closed:
            return
        tasks = []
        while self._nconns - self._closing > max_size and self._idle:
            task = self._discard(self._idle.popleft())
            if task is not None:
                tasks.append(task)
        self._grow()
        while self._nconns < min_size:
            self._start_connect()
        await asyncio.gather(*tasks)

    async def shrink_idle(self, *, force: bool = False) -> int:
        """Close idle connections beyond min_size idle longer than max_idle (all, if force).

        Returns how many were closed. Idle connections are reused newest-first, so the ones at
        the left of the deque are the longest idle and the scan can stop at the first young one.
        """
        if self._closed:
            return 0
        now = monotonic()
        max_idle = self._config.max_idle
        tasks = []
        idle = self._idle
        while idle and self._nconns - self._closing > self._min_size:
            if not force and now - idle[0].idle_since < max_idle:
                break
            task = self._discard(idle.popleft())
            if task is not None:
                tasks.append(task)
        await asyncio.gather(*tasks)
        return len(tasks)

    def stats(self) -> dict[str, int | float]:
        """psycopg_pool's metric set, plus reuse and discard counters. Times are in ms.

        As in psycopg_pool, ``connections_num`` counts connection *attempts*, failed ones
        included (``connections_errors`` of them failed). ``connections_ms`` is the time all
        those attempts took (psycopg_pool counts the successful ones only), so
        ``connections_ms / connections_num`` is the mean cost of an attempt. ``pool_size``
        counts connections being made, idle, in use, and discarded ones until their close has
        returned (they are still open at the store, and count against ``pool_max``).
        """
        checkouts = self._checkouts
        reused = checkouts - self._fresh
        return {
            "pool_min": self._min_size,
            "pool_max": self._max_size,
            "pool_size": self._nconns,
            "pool_available": len(self._idle),
            "requests_waiting": len(self._waiting),
            "requests_num": checkouts + self._requests_failed + self._requests_pending,
            "requests_queued": self._requests_queued,
            "requests_wait_ms": round(self._requests_wait_s * 1000),
            "requests_errors": self._requests_errors,
            "requests_cancelled": self._requests_cancelled,
            "connections_num": self._connections_num,
            "connections_ms": round(self._connections_s * 1000),
            "connections_errors": self._connections_errors,
            "connections_lost": self._connections_lost,
            "connections_reused": reused,
            "connections_discarded": self._connections_discarded,
            "returns_bad": self._returns_bad,
            "usage_ms": round(self._usage_s * 1000),
            "reuse_rate": reused / checkouts if checkouts else 0.0,
        }


def _finite(seconds: float) -> float | None:
    """asyncio.timeout() takes None, not inf, for "no limit"."""
    return None if seconds == _INF else seconds

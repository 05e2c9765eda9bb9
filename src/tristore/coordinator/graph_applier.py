"""The graph applier: committed intents reach Kuzu in commit order, in batches, off the SQLite lane.

Intents join :attr:`GraphApplier.queue` in commit order (while the committing transaction still
holds the SQLite writer lane). One worker task takes the head of the queue, up to ``batch_size``
intents, and applies them in one Kuzu write transaction on the writer thread, with their markers
(:func:`.graph_apply.apply_intents`). Batches form by themselves: while one is applied, the
transactions that commit meanwhile queue for the next.

A batch never makes a committed member fail or disappear:

- if the batch fails, the store has rolled it back (and contained the engine, see
  :meth:`tristore.stores.graph.GraphStore.contain`); its members are applied again *alone*, in
  commit order, each in a transaction of its own;
- a member that fails alone because of what it does (a duplicate primary key, a failed cast) is
  dead-lettered: its error is kept, the intent is settled ``failed``, and
  :meth:`~tristore.coordinator.Coordinator.retry` queues it again after a fix;
- a member that fails alone because the store is unavailable (``StoreUnavailable``, a lane
  timeout) stays at the head of the queue and is retried after ``retry_backoff`` for as long as
  that lasts, so nothing behind it is applied out of order; an error of unknown kind is retried
  too, but after ``max_replays`` of them in a row the member is dead-lettered, which lets the
  rest go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections import deque
from collections.abc import Callable

from tristore.coordinator.faults import Faults
from tristore.coordinator.graph_apply import apply_intents
from tristore.coordinator.log import Intent
from tristore.errors import PoolTimeout, StoreUnavailable
from tristore.stores.graph import GraphStore
from tristore.stores.graph import translate as graph_translate

log = logging.getLogger(__name__)

# Engine errors caused by what the ops do with this data: applying them again unchanged fails
# the same way, so the intent is dead-lettered at once. Everything else (the store unavailable, a
# full disk, a conflict, an error of unknown kind) is retried, up to ``max_replays`` times.
_DETERMINISTIC = re.compile(
    r"^(?:\[graph\] )?(?:Binder|Parser|Catalog|Conversion|Overflow|Runtime) exception", re.I
)
_TRANSIENT = re.compile(r"write-write conflict|io exception|buffer manager|no space", re.I)


def deterministic(exc: BaseException) -> bool:
    """Whether a failed apply would fail alike again (the intent's fault, not the store's)."""
    if isinstance(exc, PoolTimeout | StoreUnavailable | TimeoutError | OSError):
        return False
    text = str(exc).strip()
    return bool(_DETERMINISTIC.match(text)) and not _TRANSIENT.search(text)


class GraphApplier:
    """Applies committed intents to the graph in commit order; see the module docstring."""

    def __init__(
        self,
        graph: GraphStore,
        faults: Faults,
        *,
        batch_size: int,
        lock_timeout: float,
        retry_backoff: float,
        max_replays: int,
        settle: Callable[[Intent], None],
        count: Callable[[str], None],
    ) -> None:
        self.graph = graph
        self.faults = faults
        self.batch_size = batch_size
        self.lock_timeout = lock_timeout
        self.retry_backoff = retry_backoff
        self.max_replays = max_replays
        self._settle = settle
        self._count = count
        self.queue: deque[Intent] = deque()
        # One apply at a time: the worker's batches, a strict transaction's stage, a drain.
        self.lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._work(), name="tristore-graph-applier"
        )

    async def stop(self) -> None:
        """Stop after the batch in progress; what is still queued is left to recovery."""
        task, self._task = self._task, None
        if task is None:
            return
        # Under the lock: a batch running on the Kuzu thread is never cut short.
        async with self.lock:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for intent in self.queue:
            _attempted(intent)

    # -- the queue --------------------------------------------------------------------------
    def enqueue(self, intent: Intent) -> None:
        """Queue a committed intent (call while holding the SQLite lane: commit order)."""
        if intent.attempted is None:
            intent.attempted = asyncio.get_running_loop().create_future()
        if self._retry_at > time.monotonic():
            _attempted(intent)  # the store is failing: the commit does not wait for the retry
        self.queue.append(intent)
        self._wake.set()

    async def attempted(self, intent: Intent, timeout: float | None = None) -> bool:
        """Wait until the first apply that included ``intent`` has ended (or the applier stops),
        at most ``timeout`` seconds; whether it ended (the apply goes on either way)."""
        fut = intent.attempted
        if fut is None or fut.done():
            return True
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(fut)
        except TimeoutError:
            return False
        return True

    def applied_head(self, intent: Intent) -> None:
        """``intent``, at the head of the queue, was applied by its strict transaction."""
        self._applied([intent])
        _attempted(intent)

    def retry_now(self) -> None:
        self._retry_at = 0.0
        self._wake.set()

    async def drain(self) -> None:
        """Apply everything queued now, in this task (recovery, and strict transactions)."""
        async with self.lock:
            await self.drain_locked()

    async def drain_locked(self) -> None:
        """:meth:`drain` for a caller that holds :attr:`lock` already."""
        self._retry_at = 0.0
        while self.queue and time.monotonic() >= self._retry_at:
            await self._apply_head()

    # -- the worker -------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                delay = self._retry_at - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()  # a retry_now() or stop() cuts it short
                    self._wake.clear()
                    continue
                try:
                    async with self.lock:
                        await self._apply_head()
                except Exception:  # the worker must outlive anything a batch does
                    log.exception("graph applier: unexpected error; retrying later")
                    self._retry_at = time.monotonic() + self.retry_backoff

    async def _apply_head(self) -> None:
        batch = list(itertools.islice(self.queue, self.batch_size))
        if not batch:
            return
        try:
            error = await self._apply(batch)
            if error is None:
                self._applied(batch)
                self._count("graph_batches")
                return
            self._count("graph_apply_errors")
            if len(batch) == 1:
                self._failed_alone(batch[0], error)
                return
            log.warning(
                "graph apply of %d transaction(s) failed (%s); applying them one by one",
                len(batch),
                graph_translate(error),
            )
            for intent in batch:
                error = await self._apply([intent])
                if error is not None:
                    self._failed_alone(intent, error)
                    if self.queue and self.queue[0] is intent:
                        return  # kept at the head: nothing behind it goes first
                else:
                    self._applied([intent])
        finally:
            for intent in batch:
                _attempted(intent)

    async def _apply(self, intents: list[Intent]) -> BaseException | None:
        """One Kuzu transaction for ``intents``; the error if it failed (rolled back)."""
        check = any(i.maybe_applied for i in intents)
        faults, prepared = self.faults, self.graph.prepared
        try:
            async with self.graph.transaction(timeout=self.lock_timeout) as tx:
                await tx.run(
                    lambda c: apply_intents(c, intents, faults, prepared, check_markers=check),
                    commit=True,
                )
        except asyncio.CancelledError:
            for intent in intents:
                intent.maybe_applied = True  # the COMMIT may or may not have happened
            raise
        except Exception as exc:
            for intent in intents:
                intent.maybe_applied = True
            return exc
        return None

    def _applied(self, intents: list[Intent]) -> None:
        for intent in intents:  # the head of the queue, in order: only the head is applied
            if self.queue and self.queue[0] is intent:
                self.queue.popleft()
            intent.graph_done = True
            intent.attempts = 0
            if intent.maybe_applied:
                self._count("replayed")
            self._settle(intent)

    def _failed_alone(self, intent: Intent, error: BaseException) -> None:
        unavailable = isinstance(error, StoreUnavailable | PoolTimeout)
        if unavailable or (not deterministic(error) and intent.attempts + 1 < self.max_replays):
            # The store said it cannot take writes now (down, a full disk, its lane held): that
            # says nothing about the intent, so it does not count towards max_replays.
            if not unavailable:
                intent.attempts += 1
            self._retry_at = time.monotonic() + self.retry_backoff
            for queued in self.queue:
                _attempted(queued)  # their commits stop waiting: the store is failing
            counted = "not counted" if unavailable else f"{intent.attempts} of {self.max_replays}"
            log.warning(
                "graph apply of %s failed (%s), kept pending: %s",
                intent.txid,
                counted,
                graph_translate(error),
            )
            return
        # Dead-lettered: settled failed with its error, out of the way of the intents behind.
        if self.queue and self.queue[0] is intent:
            self.queue.popleft()
        intent.graph_done = True
        intent.errors.append(f"graph: {graph_translate(error)}")
        self._count("dead_lettered")
        self._settle(intent)


def _attempted(intent: Intent) -> None:
    fut = intent.attempted
    if fut is not None and not fut.done():
        fut.set_result(None)

"""Recovery: committed intents that were not applied are rolled forward, in commit order.

At :meth:`~tristore.coordinator.Coordinator.open` (and on ``tristore coordinator recover``) the
intent log's pending rows are read and queued for both appliers behind nothing newer: the graph
applier replays them with a marker look-up first, so an intent whose Kuzu COMMIT did happen
before a crash is not applied twice, and the cache script's marker does the same for Redis.
The periodic sweep retries what is still queued in memory (a store that was down) and prunes
settled intents past ``retention``. Dead letters (``failed``) are never replayed by recovery:
:meth:`~tristore.coordinator.Coordinator.retry` sets them back to pending first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tristore.coordinator import log as intent_log
from tristore.coordinator.graph_apply import MARKERS_DELETE
from tristore.coordinator.ops import marker_key
from tristore.errors import TristoreError

if TYPE_CHECKING:
    from tristore.coordinator.core import Coordinator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecoveryReport:
    found: int  # pending intents read from the log (rescan) or waiting in memory
    applied: int  # intents that settled during this pass
    pending: int  # still waiting for a store
    failed: int  # settled as failed (dead-lettered) during this pass
    seconds: float


async def recover(coordinator: Coordinator, *, rescan: bool) -> RecoveryReport:
    started = time.monotonic()
    before = coordinator.stats()
    assert coordinator.recovering is not None
    async with coordinator.recovering:
        if rescan or coordinator.rescan_due:
            coordinator.rescan_due = False
            await _rescan(coordinator)
        found = coordinator.pending_count()
        with contextlib.suppress(TristoreError):
            await coordinator.graph_applier.drain()
        await coordinator.cache_applier.drain()
        with contextlib.suppress(TristoreError):
            await coordinator.flush()
    after = coordinator.stats()
    return RecoveryReport(
        found=found,
        applied=after["applied"] - before["applied"],
        pending=coordinator.pending_count(),
        failed=after["failed"] - before["failed"],
        seconds=time.monotonic() - started,
    )


async def _rescan(coordinator: Coordinator) -> None:
    loaded = await coordinator.sqlite.read(intent_log.load_pending)
    graph, cache = coordinator.graph_applier, coordinator.cache_applier
    known = {i.txid for i in (*graph.queue, *cache.backlog)} | coordinator.unflushed()
    fresh = [i for i in loaded if i.txid not in known]
    if not fresh:
        return
    # Under the applier's lock and a cache turn: no live transaction's work slips in between.
    async with graph.lock:
        for intent in fresh:
            if intent.graph_pending:
                graph.enqueue(intent)
        await cache.add(i for i in fresh if i.cache_pending)


async def sweep(coordinator: Coordinator, interval: float, stop: asyncio.Event) -> None:
    """Every ``interval`` seconds: retry what is queued, prune what is old."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
        if stop.is_set():
            return
        try:
            await coordinator.recover(rescan=False)
            retention = coordinator.settings.retention
            if retention:
                await prune(coordinator, retention)
        except Exception:  # a sweep must never kill the sweeper
            log.exception("coordinator: recovery sweep failed")


async def prune(coordinator: Coordinator, older_than: float, *, limit: int = 500) -> int:
    """Forget settled intents applied more than ``older_than`` seconds ago, with markers.

    Markers go first: an intent row without markers is harmless (settled rows are never
    replayed), a marker without its row would read as an uncommitted effect. Dead letters are
    kept until retried.
    """
    before = time.time() - older_than
    rows = await coordinator.sqlite.read(lambda c: intent_log.prunable(c, before, limit))
    if not rows:
        return 0
    graph_ids = [txid for txid, has_graph, _ in rows if has_graph]
    cache_keys = [marker_key(txid) for txid, _, has_cache in rows if has_cache]
    if graph_ids:
        await coordinator.graph.write([(MARKERS_DELETE, {"ids": graph_ids})])
    if cache_keys:
        await coordinator.cache.execute("DEL", *cache_keys)
    txids = [txid for txid, _, _ in rows]
    deleted = await coordinator.sqlite.write(lambda c: intent_log.delete(c, txids))
    coordinator.count("pruned", deleted)
    return deleted

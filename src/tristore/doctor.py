"""``tristore doctor``: reach or start each store, report its version and effective settings."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from tristore.config import Settings, redact_text
from tristore.errors import TristoreError
from tristore.stores import CacheStore, CheckedOnDisk, GraphStore, SQLiteStore, Store
from tristore.stores.graph import vet_graph_file


@dataclass
class StoreReport:
    store: str
    ok: bool
    version: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    open_ms: float = 0.0


async def _probe(name: str, store: Store, settings: Settings, full_check: bool) -> StoreReport:
    report = await _open_and_check(name, store, full_check)
    # Whatever a driver put in a message, the Redis URL's secrets never reach the report.
    report.error = redact_text(report.error, settings.redis.url)
    return report


async def _open_and_check(name: str, store: Store, full_check: bool) -> StoreReport:
    started = time.perf_counter()
    try:
        if isinstance(store, GraphStore):
            # A corrupt graph file can crash the engine that opens it: the doctor always has
            # it opened in a child process first, whatever a clean-close marker says.
            await asyncio.to_thread(vet_graph_file, store.settings, always_probe=True)
        await store.open()
    except (TristoreError, OSError) as exc:
        return StoreReport(name, ok=False, error=_one_line(exc))
    try:
        opened = (time.perf_counter() - started) * 1000
        health = await store.check()
        version = await store.version()
        settings = await store.effective_settings()
        if not _healthy(health):
            return StoreReport(name, ok=False, version=version, error=f"health check: {health}")
        if isinstance(store, CheckedOnDisk):
            findings = await store.integrity(full=full_check)
            if findings:
                pragma = "integrity_check" if full_check else "quick_check"
                error = f"PRAGMA {pragma}: {len(findings)} problem(s), first: {findings[0]}"
                return StoreReport(name, ok=False, version=version, error=error)
        return StoreReport(name, True, version=version, settings=settings, open_ms=opened)
    except (TristoreError, OSError) as exc:
        return StoreReport(name, ok=False, error=_one_line(exc))
    finally:
        await store.close()


def _healthy(health: dict[str, Any]) -> bool:
    if "ok" in health:
        return bool(health["ok"])
    return all(_healthy(part) for part in health.values() if isinstance(part, dict))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def diagnose(settings: Settings, *, full_check: bool = False) -> list[StoreReport]:
    """Each store on its own, so that one failure does not hide the state of the others.

    SQLite's pages are checked with ``PRAGMA quick_check``; ``full_check`` runs
    ``integrity_check`` instead (slower: it also compares every index with its table). An
    existing graph file is opened in a child process first (a corrupt one can crash the engine
    that opens it), so a corrupt file is a FAIL line, not a dead doctor.
    """
    return [
        await _probe("sqlite", SQLiteStore(settings), settings, full_check),
        await _probe("graph", GraphStore(settings), settings, full_check),
        await _probe("redis", CacheStore(settings), settings, full_check),
    ]

"""``tristore doctor``: reach or start each store, report its version and effective settings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tristore.config import Settings, redact_text
from tristore.errors import TristoreError
from tristore.stores import CacheStore, GraphStore, SQLiteStore


@dataclass
class StoreReport:
    store: str
    ok: bool
    version: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    open_ms: float = 0.0


async def _probe(name: str, store: Any, settings: Settings) -> StoreReport:
    report = await _open_and_check(name, store)
    # Whatever a driver put in a message, the Redis URL's secrets never reach the report.
    report.error = redact_text(report.error, settings.redis.url)
    return report


async def _open_and_check(name: str, store: Any) -> StoreReport:
    started = time.perf_counter()
    try:
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


async def diagnose(settings: Settings) -> list[StoreReport]:
    """Each store on its own, so that one failure does not hide the state of the others."""
    return [
        await _probe("sqlite", SQLiteStore(settings), settings),
        await _probe("graph", GraphStore(settings), settings),
        await _probe("redis", CacheStore(settings), settings),
    ]

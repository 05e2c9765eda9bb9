"""The consistency validator: compare transactions and entities across the three stores.

Two kinds of check, both returning :class:`Drift` items in one :class:`ConsistencyReport`:

- **transactions** (from the intent log and the idempotency markers): a committed intent must
  have its graph marker (``AppliedTx``) and Redis marker once applied; a marker without a
  committed intent is an effect of a transaction that never committed. Pending and failed
  intents are reported too: they are committed work not (fully) visible everywhere.
- **entities**: the caller names how one thing reads in each store (a SQL query, a Cypher query,
  a Redis read command) and how to normalise each answer; the answers must be equal.

Markers are read *before* the intent log: a marker becomes visible only after its intent
committed, so reading in this order can never report a live transaction as uncommitted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tristore.coordinator import log as intent_log
from tristore.coordinator.graph_apply import MARKER_TABLE
from tristore.coordinator.ops import MARKER_PREFIX, marker_key
from tristore.errors import TristoreError

if TYPE_CHECKING:
    from tristore.coordinator.core import Coordinator

__all__ = ["ConsistencyReport", "Drift", "EntityCheck", "validate_consistency"]


@dataclass(frozen=True)
class Drift:
    """One divergence. ``kind`` is one of:

    ``pending`` committed, not yet applied to ``stores``; ``failed`` committed, a store
    rejected part of it at apply time; ``graph_missing`` / ``cache_missing`` applied according
    to the log but the store has no marker; ``uncommitted_graph`` / ``uncommitted_cache`` a
    marker without a committed intent; ``mismatch`` an entity reads differently across stores.
    """

    kind: str
    subject: str  # a txid or an entity name
    detail: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ConsistencyReport:
    transactions: int = 0
    entities: int = 0
    drift: list[Drift] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.drift

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.drift:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        return counts

    def summary(self) -> str:
        head = f"{self.transactions} transaction(s), {self.entities} entit(y/ies) checked"
        if self.ok:
            return head + ": no drift"
        lines = [head + f": {len(self.drift)} drift item(s) {self.kinds()}"]
        lines += [f"  {d.kind} {d.subject}: {d.detail}" for d in self.drift[:20]]
        return "\n".join(lines)


Normalizer = Callable[[Any], Any]


@dataclass(frozen=True)
class EntityCheck:
    """How one entity reads in each store; the normalised answers must be equal.

    ``sql`` and ``graph`` are ``(query, params)``; ``cache`` is a read command such as
    ``("HGETALL", "order:7")``. Answers arrive as plain values (rows as lists, bytes decoded);
    ``normalize`` maps a store name ("sqlite", "graph", "cache") to a function applied on top.
    """

    name: str
    sql: tuple[str, Any] | None = None
    graph: tuple[str, Mapping[str, Any] | None] | None = None
    cache: Sequence[Any] | None = None
    normalize: Mapping[str, Normalizer] = field(default_factory=dict)


async def validate_consistency(
    coordinator: Coordinator,
    *,
    txids: Sequence[str] | None = None,
    entities: Sequence[EntityCheck] = (),
    transactions: bool = True,
) -> ConsistencyReport:
    """Check ``txids`` (default: every intent in the log) and ``entities`` for drift."""
    started = time.monotonic()
    report = ConsistencyReport()
    if transactions:
        await _check_transactions(coordinator, txids, report)
    for check in entities:
        await _check_entity(coordinator, check, report)
        report.entities += 1
    report.seconds = time.monotonic() - started
    return report


async def _check_transactions(
    coord: Coordinator, txids: Sequence[str] | None, report: ConsistencyReport
) -> None:
    # Applied marks still in memory would read as "pending": write them first (best effort).
    with contextlib.suppress(TristoreError):
        await coord.flush()
    ids = list(txids) if txids is not None else None
    graph_markers = await _graph_markers(coord, ids)
    cache_markers = await _cache_markers(coord, ids)
    rows = await coord.sqlite.read(lambda c: intent_log.rows(c, ids))
    report.transactions = len(rows) if ids is None else len(ids)
    committed = set()
    horizon = time.time() - coord.settings.marker_ttl
    for txid, state, has_graph, has_cache, applied_at, last_error in rows:
        committed.add(txid)
        if state == "pending":
            stores = [
                name
                for name, has, markers in (
                    ("graph", has_graph, graph_markers),
                    ("cache", has_cache, cache_markers),
                )
                if has and txid not in markers
            ]
            report.drift.append(
                Drift("pending", txid, f"not yet applied to {', '.join(stores) or '(marks lag)'}")
            )
            continue
        if state == "failed":  # its markers may be missing: the failure is the finding
            report.drift.append(Drift("failed", txid, str(last_error or "")))
            continue
        if has_graph and txid not in graph_markers:
            report.drift.append(Drift("graph_missing", txid, "applied, but no AppliedTx marker"))
        # An expired marker is not drift: it was set with a TTL on purpose.
        if has_cache and txid not in cache_markers and (applied_at or 0) > horizon:
            report.drift.append(
                Drift("cache_missing", txid, "applied, but no Redis marker (Redis lost data?)")
            )
    for txid in sorted(set(graph_markers) - committed):
        report.drift.append(
            Drift("uncommitted_graph", txid, "graph effects of a transaction that never committed")
        )
    for txid in sorted(set(cache_markers) - committed):
        report.drift.append(
            Drift("uncommitted_cache", txid, "cache effects of a transaction that never committed")
        )


# Marker ids per graph look-up: a list parameter is bounded by graph.max_value_bytes.
MARKER_CHUNK = 1000


async def _graph_markers(coord: Coordinator, ids: list[str] | None) -> set[str]:
    if ids is None:
        rows = await coord.graph.query_rows(f"MATCH (a:{MARKER_TABLE}) RETURN a.txid")
        return {row[0] for row in rows}
    found: set[str] = set()
    for start in range(0, len(ids), MARKER_CHUNK):
        rows = await coord.graph.query_rows(
            f"MATCH (a:{MARKER_TABLE}) WHERE a.txid IN $ids RETURN a.txid",
            {"ids": ids[start : start + MARKER_CHUNK]},
        )
        found.update(row[0] for row in rows)
    return found


async def _cache_markers(coord: Coordinator, ids: list[str] | None) -> set[str]:
    async with coord.cache.client() as conn:
        if ids is not None:
            pipe = conn.pipeline(transaction=False)
            for txid in ids:
                pipe.exists(marker_key(txid))
            flags = await pipe.execute()
            return {txid for txid, flag in zip(ids, flags, strict=True) if flag}
        markers = set()
        async for key in conn.scan_iter(match=MARKER_PREFIX + "*", count=1000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            markers.add(text[len(MARKER_PREFIX) :])
        return markers


async def _check_entity(coord: Coordinator, check: EntityCheck, report: ConsistencyReport) -> None:
    values: dict[str, Any] = {}
    if check.sql is not None:
        query, params = check.sql
        rows = await coord.sqlite.fetchall(query, params or ())
        values["sqlite"] = [list(row) for row in rows]
    if check.graph is not None:
        query, gparams = check.graph
        values["graph"] = await coord.graph.query_rows(query, gparams)
    if check.cache is not None:
        values["cache"] = _plain(await coord.cache.execute(*check.cache))
    for store, fn in check.normalize.items():
        if store in values:
            values[store] = fn(values[store])
    distinct = []
    for value in values.values():
        if value not in distinct:
            distinct.append(value)
    if len(distinct) > 1:
        detail = "; ".join(f"{store}={value!r}" for store, value in values.items())
        report.drift.append(Drift("mismatch", check.name, detail[:500], values))


def _plain(value: Any) -> Any:
    """Redis replies as plain Python values: bytes decoded, containers converted."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    return value

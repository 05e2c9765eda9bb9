"""The intent log: one SQLite row per coordinated transaction that staged graph or cache work.

The row is inserted in the same SQLite transaction as the business rows, so "the intent exists"
and "the transaction committed" are the same fact. ``seq`` (AUTOINCREMENT, never reused) is the
commit order, in which graph and cache work is applied and replayed.

States: ``pending`` (committed; graph/cache work not yet confirmed), ``applied`` (confirmed in both
stores), ``failed`` (committed, but a store rejected part of the work when it was applied alone:
the dead letters, with ``last_error``; reported by the validator and ``tristore coordinator
status``, and set back to ``pending`` by a retry, never dropped). Every function here runs on the
SQLite connection's own thread.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tristore.coordinator.ops import CacheOp, GraphOp, ops_json

TABLE = "tristore_intents"

DDL = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        txid       TEXT NOT NULL UNIQUE,
        state      TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'applied', 'failed')),
        graph_ops  TEXT NOT NULL,
        cache_ops  TEXT NOT NULL,
        created_at REAL NOT NULL,
        applied_at REAL,
        last_error TEXT
    ) STRICT""",
    # Recovery reads only the pending rows; a partial index keeps that cheap as the log grows.
    f"CREATE INDEX IF NOT EXISTS {TABLE}_pending ON {TABLE} (seq) WHERE state = 'pending'",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_applied_at ON {TABLE} (applied_at)"
    " WHERE state = 'applied'",
)

_INSERT = (
    f"INSERT INTO {TABLE} (txid, graph_ops, cache_ops, created_at) VALUES (?, ?, ?, ?)"
    " RETURNING seq"
)
_MARK = f"UPDATE {TABLE} SET state = ?, applied_at = ?, last_error = ? WHERE txid = ?"


@dataclass(eq=False)
class Intent:
    """A committed (or committing) transaction's graph and cache work, and how far it got."""

    txid: str
    graph_ops: list[GraphOp]
    cache_ops: list[CacheOp]
    seq: int = 0
    created_at: float = field(default_factory=time.time)
    graph_done: bool = False
    cache_done: bool = False
    errors: list[str] = field(default_factory=list)
    attempts: int = 0  # graph applies that failed on the store's side (disk full, say)
    settled: asyncio.Future[None] | None = None  # resolved once applied or failed
    marked: bool = False  # its final state is queued for the log (settle only once)
    # Its graph ops may be in the graph already (recovered from the log, or an earlier COMMIT
    # whose outcome is unknown): the marker is looked up before applying it.
    maybe_applied: bool = False
    # Resolved when the first graph apply that included it has ended, however it went.
    attempted: asyncio.Future[None] | None = None
    cache_json: str = ""  # the cache ops as logged, which the apply script reads as they are

    @property
    def graph_pending(self) -> bool:
        return bool(self.graph_ops) and not self.graph_done

    @property
    def cache_pending(self) -> bool:
        return bool(self.cache_ops) and not self.cache_done

    @property
    def done(self) -> bool:
        return not (self.graph_pending or self.cache_pending)

    @property
    def state(self) -> str:
        if not self.done:
            return "pending"
        return "failed" if self.errors else "applied"

    def pending_stores(self) -> tuple[str, ...]:
        return tuple(
            name
            for name, pending in (("graph", self.graph_pending), ("cache", self.cache_pending))
            if pending
        )


def create(conn: sqlite3.Connection) -> None:
    for statement in DDL:
        conn.execute(statement)


def insert(conn: sqlite3.Connection, intent: Intent) -> int:
    intent.cache_json = ops_json(intent.cache_ops)
    row = conn.execute(
        _INSERT,
        (intent.txid, ops_json(intent.graph_ops), intent.cache_json, intent.created_at),
    ).fetchone()
    return int(row[0])


Mark = tuple[str, float, str | None, str]  # state, applied_at, last_error, txid


def mark_row(intent: Intent) -> Mark:
    error = "; ".join(intent.errors)[:2000] if intent.errors else None
    return (intent.state, time.time(), error, intent.txid)


def mark(conn: sqlite3.Connection, rows: Sequence[Mark]) -> None:
    if rows:
        conn.executemany(_MARK, rows)


def load_pending(conn: sqlite3.Connection) -> list[Intent]:
    rows = conn.execute(
        f"SELECT seq, txid, graph_ops, cache_ops, created_at FROM {TABLE}"
        " WHERE state = 'pending' ORDER BY seq"
    ).fetchall()
    intents = []
    for seq, txid, graph_ops, cache_ops, created_at in rows:
        graph = [(cypher, params) for cypher, params in json.loads(graph_ops)]
        intents.append(
            Intent(
                txid,
                graph,
                json.loads(cache_ops),
                seq=seq,
                created_at=created_at,
                maybe_applied=True,
                cache_json=cache_ops,
            )
        )
    return intents


def load_failed(conn: sqlite3.Connection, txids: Sequence[str] | None = None) -> list[DeadLetter]:
    """The dead letters (state ``failed``), oldest first; only ``txids`` if given."""
    select = (
        f"SELECT txid, seq, created_at, applied_at, last_error FROM {TABLE} WHERE state = 'failed'"
    )
    if txids is None:
        rows = conn.execute(select + " ORDER BY seq").fetchall()
    else:
        rows = conn.execute(
            select + " AND txid IN (SELECT value FROM json_each(?)) ORDER BY seq",
            (json.dumps(list(txids)),),
        ).fetchall()
    return [DeadLetter(*row) for row in rows]


def requeue(conn: sqlite3.Connection, txids: Sequence[str]) -> int:
    """Set dead letters back to ``pending``: recovery applies them again, in commit order."""
    cur = conn.execute(
        f"UPDATE {TABLE} SET state = 'pending', applied_at = NULL"
        " WHERE state = 'failed' AND txid IN (SELECT value FROM json_each(?))",
        (json.dumps(list(txids)),),
    )
    return cur.rowcount


@dataclass(frozen=True)
class DeadLetter:
    """A committed transaction whose graph or cache work a store rejected when applied alone."""

    txid: str
    seq: int
    created_at: float
    failed_at: float | None
    error: str | None


def prunable(conn: sqlite3.Connection, before: float, limit: int) -> list[tuple[str, bool, bool]]:
    """Intents applied before ``before``: (txid, had graph ops, had cache ops).

    Dead letters (``failed``) are not prunable: they wait for a retry.
    """
    rows = conn.execute(
        f"SELECT txid, graph_ops <> '[]', cache_ops <> '[]' FROM {TABLE}"
        " WHERE state = 'applied' AND applied_at < ? ORDER BY applied_at LIMIT ?",
        (before, limit),
    ).fetchall()
    return [(txid, bool(g), bool(c)) for txid, g, c in rows]


def delete(conn: sqlite3.Connection, txids: Sequence[str]) -> int:
    cur = conn.execute(
        f"DELETE FROM {TABLE} WHERE txid IN (SELECT value FROM json_each(?))",
        (json.dumps(list(txids)),),
    )
    return cur.rowcount


def rows(conn: sqlite3.Connection, txids: Sequence[str] | None) -> list[tuple[Any, ...]]:
    """(txid, state, has graph ops, has cache ops, applied_at, last_error) for the validator."""
    select = (
        f"SELECT txid, state, graph_ops <> '[]', cache_ops <> '[]', applied_at, last_error"
        f" FROM {TABLE}"
    )
    if txids is None:
        return conn.execute(select + " ORDER BY seq").fetchall()
    return conn.execute(
        select + " WHERE txid IN (SELECT value FROM json_each(?)) ORDER BY seq",
        (json.dumps(list(txids)),),
    ).fetchall()

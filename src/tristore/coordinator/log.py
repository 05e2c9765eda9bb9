"""The intent log: one SQLite row per coordinated transaction that staged graph or cache work.

The row is inserted in the same SQLite transaction as the business rows, so "the intent exists"
and "the transaction committed" are the same fact. ``seq`` (AUTOINCREMENT, never reused) is the
commit order, in which graph and cache work is applied and replayed.

States: ``pending`` (committed; graph/cache work not yet confirmed), ``applied`` (confirmed in both
stores), ``failed`` (committed, but a store rejected part of the work at apply time: reported by
the validator, never retried). Every function here runs on the SQLite connection's own thread.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tristore.coordinator.ops import CacheOp, GraphOp

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
    " WHERE state <> 'pending'",
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
    attempts: int = 0  # failed graph replays; past the coordinator's limit the intent fails
    settled: asyncio.Future[None] | None = None  # resolved once applied or failed
    marked: bool = False  # its final state is queued for the log (settle only once)

    def __post_init__(self) -> None:
        self.graph_done = self.graph_done or not self.graph_ops
        self.cache_done = self.cache_done or not self.cache_ops

    @property
    def done(self) -> bool:
        return self.graph_done and self.cache_done

    @property
    def state(self) -> str:
        if not self.done:
            return "pending"
        return "failed" if self.errors else "applied"

    def pending_stores(self) -> tuple[str, ...]:
        return tuple(
            name
            for name, done in (("graph", self.graph_done), ("cache", self.cache_done))
            if not done
        )


def create(conn: sqlite3.Connection) -> None:
    for statement in DDL:
        conn.execute(statement)


def insert(conn: sqlite3.Connection, intent: Intent) -> int:
    row = conn.execute(
        _INSERT,
        (
            intent.txid,
            json.dumps(intent.graph_ops, separators=(",", ":")),
            json.dumps(intent.cache_ops, separators=(",", ":")),
            intent.created_at,
        ),
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
        intents.append(Intent(txid, graph, json.loads(cache_ops), seq=seq, created_at=created_at))
    return intents


def prunable(conn: sqlite3.Connection, before: float, limit: int) -> list[tuple[str, bool, bool]]:
    """Settled intents applied before ``before``: (txid, had graph ops, had cache ops)."""
    rows = conn.execute(
        f"SELECT txid, graph_ops <> '[]', cache_ops <> '[]' FROM {TABLE}"
        " WHERE state <> 'pending' AND applied_at < ? ORDER BY applied_at LIMIT ?",
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

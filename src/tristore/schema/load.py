"""Apply the schema and bulk-load a :class:`~tristore.schema.generate.Dataset` into the stores.

SQLite: one transaction of ``executemany`` per table; generated columns are never inserted
(SQLite computes them). Kuzu: CSV files plus ``COPY ... FROM``, the bulk path (row-by-row
``CREATE`` runs at ~1k/s here, COPY at hundreds of thousands of rows per second).
"""

from __future__ import annotations

import contextlib
import csv
import sqlite3
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from tristore.schema.functions import REBUILD_ANALYTICS_SQL
from tristore.schema.generate import (
    Customer,
    Dataset,
    Invoice,
    Order,
    Product,
    Rating,
)

__all__ = [
    "GRAPH_TABLES",
    "GraphConnection",
    "apply_graph_schema",
    "apply_sqlite_schema",
    "graph_statements",
    "load_graph",
    "load_sqlite",
    "sqlite_script",
    "write_graph_csv",
]


class GraphConnection(Protocol):
    """What we need of a graph connection: ``kuzu.Connection`` and ``ladybug.Connection`` fit."""

    def execute(self, query: str, parameters: dict[str, Any] | None = ...) -> Any: ...


# --------------------------------------------------------------------------------------------
# Packaged DDL
# --------------------------------------------------------------------------------------------


def sqlite_script() -> str:
    """The SQLite DDL (``schema/sqlite.sql``) as one script for ``executescript``."""
    return resources.files("tristore.schema").joinpath("sqlite.sql").read_text(encoding="utf-8")


def graph_statements() -> list[str]:
    """The Kuzu DDL (``schema/graph.cypher``), one statement per item, comments removed.

    Kuzu's ``execute`` takes one statement at a time, hence the split on ';' (safe: the DDL holds
    no string literals).
    """
    text = resources.files("tristore.schema").joinpath("graph.cypher").read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    return [stmt.strip() for stmt in code.split(";") if stmt.strip()]


def apply_sqlite_schema(conn: sqlite3.Connection) -> None:
    """Create every table, index, trigger and view (idempotent; applying twice is harmless).

    ``executescript`` commits a pending transaction first (sqlite3 behaviour), so call this on a
    connection with nothing uncommitted. Foreign keys are enforced only on connections that set
    ``PRAGMA foreign_keys = ON``; that is the store's job, not the schema's.
    """
    conn.executescript(sqlite_script())


def apply_graph_schema(conn: GraphConnection) -> None:
    """Create the node and rel tables (idempotent: ``IF NOT EXISTS``)."""
    for statement in graph_statements():
        conn.execute(statement)


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------

# Parents before children, so the load also succeeds with PRAGMA foreign_keys = ON. Ratings go
# after products: their triggers recompute products.rating as they arrive.
_SQLITE_TABLES: tuple[tuple[str, type, str], ...] = (
    ("customers", Customer, "customers"),
    ("products", Product, "products"),
    ("orders", Order, "orders"),
    ("invoices", Invoice, "invoices"),
    ("product_ratings", Rating, "ratings"),
)


def _insert_sql(table: str, row_type: type) -> str:
    # Table and column names are our constants (NamedTuple fields), never user input.
    fields: tuple[str, ...] = row_type._fields  # type: ignore[attr-defined]
    return f"INSERT INTO {table} ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})"


def load_sqlite(conn: sqlite3.Connection, ds: Dataset, *, analytics: bool = True) -> dict[str, int]:
    """Insert ``ds`` into a database that has the schema; returns rows inserted per table.

    All or nothing. With no transaction open, the load runs in its own ``BEGIN IMMEDIATE``
    transaction (a write lock up front, so it never hits SQLITE_BUSY half-way) and commits. With
    one open (say a test's outer transaction), it joins it under a savepoint and leaves the commit
    to the caller. On any error the load's rows are rolled back and the error re-raised.

    Foreign keys are checked at the end with ``PRAGMA foreign_key_check`` even on connections
    where enforcement is off; a violation raises sqlite3.IntegrityError. With ``analytics`` the
    analytics table is rebuilt from the orders (every customer and month with an order).
    """
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    conn.execute("SAVEPOINT tristore_load")
    try:
        counts: dict[str, int] = {}
        for table, row_type, attr in _SQLITE_TABLES:
            rows: Sequence[tuple[Any, ...]] = getattr(ds, attr)
            conn.executemany(_insert_sql(table, row_type), rows)
            counts[table] = len(rows)
        if analytics:
            counts["analytics"] = conn.execute(REBUILD_ANALYTICS_SQL).rowcount
        violations = conn.execute("PRAGMA foreign_key_check").fetchmany(5)
        if violations:
            raise sqlite3.IntegrityError(
                "FOREIGN KEY constraint failed: (table, rowid, parent, fk index) "
                f"{[tuple(v) for v in violations]}"
            )
    except BaseException:
        # BaseException: a KeyboardInterrupt half-way must not leave half a data set behind.
        # suppress: some errors (SQLITE_FULL, an interrupt) make SQLite roll the whole
        # transaction back itself, and then the savepoint is gone; the original error matters.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK TO tristore_load")
            conn.execute("RELEASE tristore_load")
        if own:
            conn.rollback()
        raise
    conn.execute("RELEASE tristore_load")
    if own:
        conn.commit()
    return counts


# --------------------------------------------------------------------------------------------
# Kuzu
# --------------------------------------------------------------------------------------------

#: Graph tables in load order (nodes before the rels that join them).
GRAPH_TABLES: tuple[str, ...] = ("Customer", "Product", "PURCHASED", "VIEWED", "FOLLOWS")


def _graph_rows(ds: Dataset) -> dict[str, tuple[tuple[str, ...], Iterable[Sequence[Any]]]]:
    # Column order is what COPY maps by (position, not header name): node properties in DDL
    # order; for rels the FROM key, the TO key, then the properties.
    return {
        "Customer": (("id", "name", "tier"), ((c.id, c.name, c.tier) for c in ds.customers)),
        "Product": (
            ("id", "name", "category", "price"),
            ((p.id, p.name, p.category, p.price) for p in ds.products),
        ),
        "PURCHASED": (
            ("from", "to", "order_id", "quantity", "at"),
            ((o.customer_id, o.product_id, o.id, o.quantity, o.created_at) for o in ds.purchases()),
        ),
        "VIEWED": (("from", "to", "at"), ds.views),
        "FOLLOWS": (("from", "to", "since"), ds.follows),
    }


def write_graph_csv(ds: Dataset, directory: str | Path) -> dict[str, Path]:
    """Write one CSV (with a header) per graph table into ``directory`` (created if missing).

    PURCHASED holds every order that was not cancelled. Returns table name -> file path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for table, (header, rows) in _graph_rows(ds).items():
        path = directory / f"{table}.csv"
        # newline="": the csv module writes its own line ends; quoting handles commas and '"'
        # in names (doubled quotes, which is also Kuzu's default escape).
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        paths[table] = path
    return paths


def _copy_literal(path: Path) -> str:
    # COPY takes no parameter for its source (Kuzu: "Trying to scan from unsupported data type
    # STRING"), so the path goes into the text. Refuse anything that could break the literal.
    text = path.resolve().as_posix()
    if any(ch in text for ch in "'\"\\\n\r"):
        raise ValueError(f"refusing to COPY from a path with quotes or backslashes: {text!r}")
    return f"'{text}'"


def load_graph(conn: GraphConnection, ds: Dataset, directory: str | Path) -> dict[str, int]:
    """Bulk-load ``ds`` into a graph that has the schema and empty tables; returns rows per table.

    Writes the CSVs into ``directory`` and runs one ``COPY <table> FROM '<file>' (HEADER=true)``
    per table, nodes first. COPY into a table that already holds one of the keys fails (duplicate
    primary key), so this is for a fresh graph, as in tests and benchmarks.
    """
    paths = write_graph_csv(ds, directory)
    counts = ds.counts()
    for table in GRAPH_TABLES:
        conn.execute(f"COPY {table} FROM {_copy_literal(paths[table])} (HEADER=true)")
    return {
        "Customer": counts["customers"],
        "Product": counts["products"],
        "PURCHASED": counts["purchased"],
        "VIEWED": counts["views"],
        "FOLLOWS": counts["follows"],
    }

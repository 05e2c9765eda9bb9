"""Store set-up shared by the pytest plugin, the project's tests and the asv suite.

Written once so that a test and a benchmark of the same thing open the same stores alike.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tristore.config import CoordinatorSettings, Settings
from tristore.stores import CacheStore, GraphStore, SQLiteStore


def store_settings(
    data_dir: str | Path,
    redis_url: str = "",
    **sections: dict[str, Any],
) -> Settings:
    """Settings rooted in ``data_dir`` with pools sized for tests (small minimums open fast).

    A deferred commit waits for its graph apply as long as any lock wait (``graph_wait`` =
    ``lock_timeout``) instead of the default 0.1 s: a test reads its own writes right after the
    block, and a loaded test machine can take longer than that to apply them.
    """
    redis = {"url": redis_url, "pool_min": 1, "pool_max": 20} | sections.pop("redis", {})
    coordinator = sections.pop("coordinator", {})
    lock_timeout = coordinator.get("lock_timeout", CoordinatorSettings.lock_timeout)
    coordinator = {"graph_wait": lock_timeout} | coordinator
    return Settings(data_dir=str(data_dir)).replace(
        redis=redis, coordinator=coordinator, **sections
    )


@dataclass
class Stores:
    sqlite: SQLiteStore
    graph: GraphStore
    cache: CacheStore
    settings: Settings


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """Open the three stores (closing whatever opened if one fails) and close them afterwards."""
    sqlite, graph, cache = SQLiteStore(settings), GraphStore(settings), CacheStore(settings)
    opened: list[Any] = []
    try:
        for store in (sqlite, graph, cache):
            await store.open()
            opened.append(store)
        yield Stores(sqlite, graph, cache, settings)
    finally:
        for store in reversed(opened):
            await store.close()


@dataclass(frozen=True)
class SeededFiles:
    """A SQLite file and a graph database loaded with one seeded data set."""

    directory: Path
    sqlite_path: Path
    graph_path: Path
    counts: dict[str, int]

    def copy_to(self, target: str | Path) -> SeededFiles:
        """A private copy (a benchmark or test may then write without touching the template)."""
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        for src in (self.sqlite_path, self.graph_path):
            if src.is_dir():
                shutil.copytree(src, target / src.name, dirs_exist_ok=True)
            elif src.exists():
                shutil.copy2(src, target / src.name)
        return SeededFiles(
            target, target / self.sqlite_path.name, target / self.graph_path.name, self.counts
        )

    def settings(self, redis_url: str = "", **sections: dict[str, Any]) -> Settings:
        return store_settings(self.directory, redis_url, **sections)


def seed_files(
    directory: str | Path, size: str = "small", seed: int = 0, engine: str = "kuzu"
) -> SeededFiles:
    """Generate ``size`` at ``seed`` and load it into fresh SQLite and graph files (synchronous).

    Used by asv's ``setup_cache`` (once per run) and by session-scoped test templates.
    """
    from tristore.schema import (
        apply_graph_schema,
        apply_sqlite_schema,
        generate,
        load_graph,
        load_sqlite,
        register_functions,
    )
    from tristore.stores.graph import load_engine

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    settings = store_settings(directory)
    ds = generate(size, seed)
    conn = sqlite3.connect(settings.sqlite_path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        register_functions(conn)
        apply_sqlite_schema(conn)
        counts = load_sqlite(conn, ds)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    kuzu = load_engine(engine)
    db = kuzu.Database(str(settings.graph_path))
    try:
        gconn = kuzu.Connection(db)
        apply_graph_schema(gconn)
        counts |= {f"graph_{k}": v for k, v in load_graph(gconn, ds, directory / "csv").items()}
        gconn.close()
    finally:
        db.close()
    shutil.rmtree(directory / "csv", ignore_errors=True)
    return SeededFiles(directory, settings.sqlite_path, settings.graph_path, counts)


# --- empty templates, built once and copied per test ---------------------------------------------


def _copy_store_file(src: Path, dst: Path) -> None:
    """Copy one store's on-disk form: a file (Kuzu 0.11, SQLite) or a directory (older Kuzu)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)


class StoreTemplates:
    """Empty SQLite and graph databases with the schema applied, built lazily and copied per test.

    Copying the ~80 KiB SQLite file costs ~0.1 ms where applying the DDL through a fresh store
    costs ~6 ms, and a copied Kuzu file opens without re-running its DDL. A template is closed
    (checkpointed, no WAL beside it) before it is ever copied, so a copy is a complete database.

    Graph templates are keyed by engine and compression (Ladybug cannot open Kuzu files), so tests
    that override those settings still get a matching template. A template that failed to build
    fails every later request at once with the same error instead of retrying per test.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._built: dict[tuple[Any, ...], Path | BaseException] = {}

    def _get(self, key: tuple[Any, ...], build: Callable[[], Path]) -> Path:
        found = self._built.get(key)
        if found is None:
            try:
                found = build()
            except Exception as exc:
                found = exc
            self._built[key] = found
        if isinstance(found, BaseException):
            raise found
        return found

    def sqlite_template(self) -> Path:
        return self._get(("sqlite",), self._build_sqlite)

    def graph_template(self, settings: Settings) -> Path:
        g = settings.graph
        return self._get(("graph", g.engine, g.compression), lambda: self._build_graph(settings))

    def copy_sqlite(self, settings: Settings) -> Path:
        """Put a fresh copy of the SQLite template at ``settings.sqlite_path``."""
        target = settings.sqlite_path
        _copy_store_file(self.sqlite_template(), target)
        return target

    def copy_graph(self, settings: Settings) -> Path:
        """Put a fresh copy of the matching graph template at ``settings.graph_path``."""
        target = settings.graph_path
        _copy_store_file(self.graph_template(settings), target)
        return target

    def _build_sqlite(self) -> Path:
        from tristore.errors import StoreUnavailable
        from tristore.schema import apply_sqlite_schema

        path = self.directory / "sqlite" / "tristore.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                # WAL is persistent in the file: a copy opens in WAL mode like the real store.
                conn.execute("PRAGMA journal_mode = WAL")
                apply_sqlite_schema(conn)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable("sqlite", f"cannot build the template at {path}: {exc}") from exc
        return path

    def _build_graph(self, settings: Settings) -> Path:
        from tristore.errors import StoreUnavailable
        from tristore.schema import apply_graph_schema
        from tristore.stores.graph import load_engine

        g = settings.graph
        engine = load_engine(g.engine)  # StoreUnavailable naming the engine if missing
        path = self.directory / f"graph-{g.engine}-{int(g.compression)}" / "graph.kuzu"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = engine.Database(
                str(path),
                buffer_pool_size=g.buffer_pool_bytes,
                max_num_threads=g.max_threads,
                compression=g.compression,
            )
            try:
                conn = engine.Connection(db)
                apply_graph_schema(conn)
                conn.close()
            finally:
                db.close()  # checkpoints: the template is one self-contained file
        except (RuntimeError, OSError) as exc:
            raise StoreUnavailable("graph", f"cannot build the template at {path}: {exc}") from exc
        return path

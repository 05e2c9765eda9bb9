"""Probe finding: a locked SQLite file and a corrupt page are reported as documented.

A file whose write lock another process holds raised ``QueryError "database is locked"``, while
the README lists locked files under ``StoreUnavailable``; the code now agrees with the README.
``tristore doctor`` reported a file with a corrupt page as healthy; it now runs
``PRAGMA quick_check``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tristore.config import Settings
from tristore.errors import QueryError, StoreUnavailable
from tristore.stores import SQLiteStore

# Another process takes the write lock and keeps it until its stdin closes.
HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""
CUSTOMER = "INSERT INTO customers (email, name, country, tier) VALUES (?, ?, 'GB', 'silver')"


@pytest.fixture
def lock_holder(sqlite_store: SQLiteStore) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(sqlite_store.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    yield proc
    if proc.poll() is None:
        proc.communicate(timeout=30)


async def test_a_file_locked_by_another_process_is_store_unavailable(
    sqlite_store: SQLiteStore, lock_holder: subprocess.Popen[str]
) -> None:
    # busy_timeout_ms=1: SQLite gives up at once; the lock is held throughout, so no race.
    settings = sqlite_store.settings.replace(sqlite={"busy_timeout_ms": 1})
    store = SQLiteStore(settings, apply_schema=False)
    await store.open()
    try:
        for call in (
            lambda: store.execute(CUSTOMER, ("a@example.com", "A")),
            lambda: store.write(lambda c: c.execute(CUSTOMER, ("b@example.com", "B"))),
        ):
            with pytest.raises(StoreUnavailable, match="database is locked: another process"):
                await call()
        with pytest.raises(StoreUnavailable, match="database is locked"):
            async with store.transaction():
                pass
        # Reads are not blocked by a writer in WAL mode.
        assert await store.fetchall("SELECT count(*) FROM customers") == [(0,)]
        lock_holder.communicate(timeout=30)  # the other process lets go
        await store.execute(CUSTOMER, ("c@example.com", "C"))
        assert await store.fetchall("SELECT email FROM customers") == [("c@example.com",)]
    finally:
        await store.close()


async def test_a_bad_statement_is_still_a_query_error(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(QueryError) as info:
        await sqlite_store.execute("INSERT INTO no_such_table VALUES (1)")
    assert not isinstance(info.value, StoreUnavailable)


async def _corrupt_database(data_dir: Path) -> Path:
    settings = Settings(data_dir=str(data_dir))
    async with SQLiteStore(settings) as store:
        rows = [(f"c{i}@example.com", "x" * 60) for i in range(3000)]
        await store.executemany(CUSTOMER, rows)
        assert await store.fetchall("PRAGMA quick_check") == [("ok",)]
    # The last close checkpointed the WAL into the file: spoil a b-tree page in the middle.
    path = settings.sqlite_path
    page = 4096
    with path.open("r+b") as fh:
        fh.seek((path.stat().st_size // page // 2) * page + 100)
        fh.write(b"\xff" * 200)
    return path


async def test_integrity_reports_a_corrupt_page(tmp_path: Path) -> None:
    await _corrupt_database(tmp_path / "data")
    async with SQLiteStore(Settings(data_dir=str(tmp_path / "data"))) as store:
        # Ordinary queries do not notice: that is why doctor must look.
        assert await store.fetchone("SELECT count(*) FROM customers") == (3000,)
        quick = await store.integrity()
        full = await store.integrity(full=True)
    # Findings name the page, or the check stops with "malformed" where the damage lies.
    assert quick and full


@pytest.mark.parametrize(
    ("flags", "pragma"), [((), "quick_check"), (("--integrity-check",), "integrity_check")]
)
async def test_doctor_reports_a_corrupt_page_as_unhealthy(
    tmp_path: Path, flags: tuple[str, ...], pragma: str
) -> None:
    await _corrupt_database(tmp_path / "data")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRISTORE_")}
    done = subprocess.run(
        [sys.executable, "-m", "tristore.cli", "doctor", *flags],
        capture_output=True,
        text=True,
        env=environ | {"TRISTORE_DATA_DIR": str(tmp_path / "data")},
        timeout=120,  # a hang guard only
    )
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("FAIL  sqlite"))
    assert f"PRAGMA {pragma}:" in line and "problem(s), first:" in line
    assert any(line.startswith("ok    graph") for line in done.stdout.splitlines())

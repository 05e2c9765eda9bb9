"""WAL relief for the inline writer: background copies, restarts that never wait, a report.

The inline writer runs with ``wal_autocheckpoint = 0`` (a checkpoint inside a COMMIT would block
the event loop), so the store keeps the WAL in bounds itself:

* **Copy** (PASSIVE, in the background). Every CHECK_EVERY commits the WAL file's size is read
  (a stat); past ``sqlite.checkpoint_wal_bytes`` a PASSIVE checkpoint starts on a thread and a
  connection of its own, unless one is running. PASSIVE never waits for a lock.
* **Restart** (on the writer lane). A copy is not a restart: the WAL starts again from its
  beginning (and ``journal_size_limit`` cuts the file) only when a write begins while every frame
  is copied, which a stream of writes never allows. Left at that, the file stayed over the limit
  and a PASSIVE copy, with its fsync of the database, started every CHECK_EVERY commits. So a
  copy that took every frame it found asks for a restart, and so does a WAL past HARD_FACTOR
  times the limit: the next write first runs a RESTART checkpoint on the writer thread.
* **Never wait for a reader with the lane held.** The RESTART runs with a busy timeout of 0. A
  reader holding an old snapshot (this store's ``read()``, or another process) keeps the WAL
  from restarting at all; a RESTART that waited for it would stop every writer of this process
  for up to the busy timeout, and the writers queued for the lane would time out. Instead the
  restart is refused at once and tried again later, and the growth is *reported*: the WAL's
  size and high-water mark, the refused restarts, and whether the WAL is pinned past the hard
  limit (``stats()["checkpoints"]``, ``effective_settings()["wal_bytes"]``, ``tristore doctor``),
  with one warning per pinned episode in the log. SQLite cannot bound a WAL that a reader
  needs; only ending the reader can.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tristore.stores.sqlite.connect import SQLiteConnection
from tristore.stores.sqlite.errors import DRIVER_ERRORS

log = logging.getLogger("tristore.stores.sqlite")

Result = tuple[int, int, int]  # (busy, frames in the WAL, frames copied), as the PRAGMA says


class Checkpointer:
    """The WAL relief of one store (see the module docstring)."""

    CHECK_EVERY = 32
    # Past this many times the limit the copies are not keeping up (writes outrun them, or a
    # reader pins the WAL): the next write tries a RESTART even if the last copy left frames.
    HARD_FACTOR = 16

    def __init__(self, path: Path, limit_bytes: int, busy_timeout_ms: int) -> None:
        self.path = path
        self.wal = Path(f"{path}-wal")
        self.limit = limit_bytes
        self.busy_timeout_ms = busy_timeout_ms
        self.commits = 0
        self.runs = 0
        self.failures = 0
        self.last_result: Result | None = None
        self.last_error: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._future: asyncio.Future[Result] | None = None
        self.must_restart = False  # the WAL is past the hard limit: try a restart
        self.want_restart = False  # a PASSIVE copied every frame: a restart costs little now
        self.restarts = 0  # RESTART checkpoints that copied every frame and restarted the WAL
        self.restarts_refused = 0  # RESTARTs a reader or another checkpoint kept from finishing
        self.last_restart: Result | None = None
        self.wal_high_bytes = 0
        self.pinned_since: float | None = None  # monotonic: past the hard limit, restart refused

    # -- copies ---------------------------------------------------------------------------
    def note_commit(self, *, heavy: bool = False) -> None:
        self.commits += 1
        if heavy or self.commits % self.CHECK_EVERY == 0:
            self.maybe_start()

    def maybe_start(self) -> None:
        try:
            size = self.wal.stat().st_size
        except OSError:
            return  # no WAL file yet
        if size > self.wal_high_bytes:
            self.wal_high_bytes = size
        if size > self.limit * self.HARD_FACTOR:
            self.must_restart = True
        if size > self.limit and not self.running:
            self.start()

    @property
    def running(self) -> bool:
        return self._future is not None and not self._future.done()

    def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="tristore-checkpoint")
        loop = asyncio.get_running_loop()
        self._future = loop.run_in_executor(self._executor, self._checkpoint)
        self._future.add_done_callback(self._finished)

    def _checkpoint(self) -> Result:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, isolation_level=None)
        busy, frames, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(busy), int(frames), int(done)

    def _finished(self, fut: asyncio.Future[Result]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self.runs += 1
            self.last_result = busy, frames, done = fut.result()
            self.want_restart = busy == 0 and frames == done and frames > 0
            return
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("sqlite: background WAL checkpoint of %s failed: %s", self.path, exc)

    # -- restarts -------------------------------------------------------------------------
    async def relieve(self, conn: SQLiteConnection) -> bool:
        """With the writer lane held, before a write: restart the WAL if it is due.

        Never waits: not for a reader (busy timeout 0 for the RESTART), nor for a copy in
        flight (it holds the checkpoint lock; its end asks again). True when the WAL was
        restarted: the caller's write must then run on the writer thread, not inline, because
        the first frame written into a restarted WAL writes its header and, at
        ``synchronous = NORMAL``, fsyncs it, which would stall the event loop.
        """
        if not (self.must_restart or self.want_restart) or self.running:
            return False  # (a copy in flight: still due once it has finished)
        self.must_restart = self.want_restart = False  # set again while still due
        usual = 0 if conn.inline else self.busy_timeout_ms

        def restart(c: sqlite3.Connection) -> Result:
            if usual:
                c.execute("PRAGMA busy_timeout = 0")
            try:
                busy, frames, done = c.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                if usual:
                    c.execute(f"PRAGMA busy_timeout = {int(usual)}")
            return int(busy), int(frames), int(done)

        try:
            result = await conn.run(restart)
        except DRIVER_ERRORS as exc:
            log.debug("sqlite: RESTART checkpoint of %s failed: %s", self.path, exc)
            self._refused()
            return False
        self.last_restart = result
        if result[0] != 0:
            self._refused()
            return False
        self.restarts += 1
        if self.pinned_since is not None:
            log.info("sqlite: the WAL of %s restarted; it is no longer pinned", self.path)
            self.pinned_since = None
        return True

    def _refused(self) -> None:
        self.restarts_refused += 1
        if self.pinned_since is not None:
            return
        size = self.wal_bytes()
        if size > self.limit * self.HARD_FACTOR:
            self.pinned_since = time.monotonic()
            log.warning(
                "sqlite: the WAL of %s is %d bytes, past %d x sqlite.checkpoint_wal_bytes, and "
                "cannot restart: a reader (this process's or another's) holds an old snapshot. "
                "Writers are not held up; the file grows until that read transaction ends.",
                self.path,
                size,
                self.HARD_FACTOR,
            )

    # -- report and end -------------------------------------------------------------------
    def wal_bytes(self) -> int:
        try:
            return self.wal.stat().st_size
        except OSError:
            return 0

    async def wait(self) -> None:
        """Until the copy in flight (if any) has finished; its error is in ``stats``."""
        fut = self._future
        if fut is not None:
            await asyncio.wait([fut])

    async def close(self) -> None:
        await self.wait()
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close_conn)
        except sqlite3.Error as exc:
            log.warning("sqlite: closing the checkpoint connection failed: %s", exc)
        executor.shutdown(wait=False)  # idle now: its thread ends at once

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def stats(self) -> dict[str, Any]:
        pinned = self.pinned_since
        return {
            "commits": self.commits,
            "runs": self.runs,
            "failures": self.failures,
            "restarts": self.restarts,
            "restarts_refused": self.restarts_refused,
            "last_restart": self.last_restart,
            "running": self.running,
            "last_result": self.last_result,
            "last_error": self.last_error,
            "wal_bytes": self.wal_bytes(),
            "wal_high_bytes": self.wal_high_bytes,
            "wal_limit_bytes": self.limit,
            "hard_factor": self.HARD_FACTOR,
            "wal_pinned": pinned is not None,
            "wal_pinned_s": None if pinned is None else time.monotonic() - pinned,
        }

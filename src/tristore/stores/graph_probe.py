"""Checks of a graph file before a process opens it, so that a corrupt file cannot crash it.

The engines (Kuzu 0.11.3, Ladybug 0.22) trust their file: a corrupt one can crash the process
that opens it (SIGSEGV), raise ``std::bad_alloc`` (a ``MemoryError``) or a ``ValueError``, and a
file truncated to 0 bytes opens as an empty database, the graph silently gone. So, before the
first open in a process of a file that exists:

1. :func:`check_header` reads the file's first page, which costs microseconds: the engine's
   magic, a size that is a whole number of pages, and the catalog and metadata pages the header
   names lying inside the file. A file cut short (to 0 bytes, or to half) or with an overwritten
   header is refused here.
2. :func:`probe` opens the file with the engine in a child process and reads every table's
   count, so that an engine crash costs the child, not the caller. It is skipped when a
   *clean-close marker* (``<file>.tristore-clean``, written by :func:`mark_clean` once the last
   ``Database`` on the file was closed without error) still describes the file: same inode,
   size and modification time, and the same write-ahead log. Opening the file removes the
   marker, so a process that dies with the file open leaves none, and the next open probes.
   It is skipped too for a small file whose exact content a probe in this process already
   found good (:func:`is_known_good`): copies of one template.

A probe costs an interpreter's start-up, the engine's import, the open (with a replay of the
write-ahead log if one is left) and a count per table, bounded by :data:`PROBE_TIMEOUT_S`; the
header check and the marker's comparison cost a few stat calls and one page read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MARKER_SUFFIX",
    "PAGE_SIZE",
    "ProbeResult",
    "check_header",
    "clear_mark",
    "content_key",
    "is_known_good",
    "is_marked_clean",
    "mark_clean",
    "probe",
    "remember_good",
]

# Both engines write 4 KiB pages and the same header layout: a 4-byte magic, a 64-bit storage
# version, then the catalog's and the metadata's page ranges (start, count; 32 bits each).
PAGE_SIZE = 4096
MAGIC = {"kuzu": b"KUZU", "ladybug": b"LBUG"}
_HEADER = struct.Struct("<4sQIIII")

MARKER_SUFFIX = ".tristore-clean"

# A child that neither finishes nor crashes within this (an engine looping over a corrupt page)
# is killed and the file reported unusable. A healthy open of a large graph takes well under it.
PROBE_TIMEOUT_S = 120.0

# Run in the child: the engine only, not tristore (its imports would only add to the cost).
_CHILD = """
import importlib, sys
name, path, pool, threads, compression = sys.argv[1:6]
engine = importlib.import_module(name)
try:
    db = engine.Database(path, buffer_pool_size=int(pool), max_num_threads=int(threads),
                         compression=compression == "1")
    conn = engine.Connection(db)
    for table, kind in conn.execute("CALL show_tables() RETURN name, type").get_all():
        pattern = f"(n:`{table}`)" if kind == "NODE" else f"()-[n:`{table}`]->()"
        if kind in ("NODE", "REL"):
            conn.execute(f"MATCH {pattern} RETURN count(*)").get_all()
    conn.close()
    db.close()
except BaseException as exc:
    sys.stderr.write(" ".join(f"{type(exc).__name__}: {exc}".split()) + "\\n")
    sys.exit(3)
"""


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _marker(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def check_header(path: Path, engine: str) -> str | None:
    """What is wrong with the file's size or header, or None. The file must exist."""
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): the graph database it held is gone"
    if size < PAGE_SIZE:
        return f"is {size} bytes, shorter than the engine's {PAGE_SIZE}-byte header page"
    with path.open("rb") as f:
        header = f.read(_HEADER.size)
    magic, _version, catalog, ncatalog, metadata, nmetadata = _HEADER.unpack(header)
    expected = MAGIC.get(engine)
    if expected is not None and magic != expected:
        others = [name for name, m in MAGIC.items() if m == magic]
        if others:
            return f"is a {others[0]} database, not a {engine} one (set graph.engine)"
        return f"does not start with the {engine} header ({magic!r}): it is not a graph file"
    if size % PAGE_SIZE:
        return (
            f"is {size} bytes, not a whole number of {PAGE_SIZE}-byte pages: "
            "it was cut short or appended to"
        )
    pages = size // PAGE_SIZE
    for what, start, count in (("catalog", catalog, ncatalog), ("metadata", metadata, nmetadata)):
        if count and start + count > pages:  # a new database names none yet (count 0)
            return (
                f"is {pages} pages long, but its {what} is at pages {start}-{start + count - 1}: "
                "it was cut short"
            )
    return None


def _state(path: Path) -> dict[str, int]:
    st = path.stat()
    try:
        wal = _wal(path).stat().st_size
    except FileNotFoundError:
        wal = -1
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "wal": wal}


def mark_clean(path: Path) -> None:
    """Record that ``path`` was just closed cleanly (or copied from a file that was), so that
    the next open of it in a new process skips the child probe while the file is unchanged."""
    marker = _marker(path)
    tmp = marker.with_name(marker.name + f".{os.getpid()}")
    with contextlib.suppress(OSError):  # a marker only saves a probe: never fail for it
        tmp.write_text(json.dumps(_state(path)))
        os.replace(tmp, marker)


def clear_mark(path: Path) -> None:
    with contextlib.suppress(OSError):
        _marker(path).unlink()


def is_marked_clean(path: Path) -> bool:
    try:
        recorded = json.loads(_marker(path).read_text())
        return bool(recorded == _state(path))
    except (OSError, ValueError):
        return False


# Probes run by this process (tests read it to see whether an open probed).
probes_run = 0

# Contents of small files a probe in this process found good: a copy of one (a test's fresh copy
# of a template graph, which has no marker of its own) opens without a probe of its own. Only
# files this small are hashed: hashing costs microseconds where a probe costs a process.
CONTENT_VOUCH_MAX_BYTES = 4 << 20
_good_contents: set[tuple[int, bytes]] = set()


def content_key(path: Path) -> tuple[int, bytes] | None:
    """Size and digest of a small file with no log beside it (see :func:`is_known_good`)."""
    try:
        if _wal(path).exists():
            return None  # the log is part of what the engine reads at open
        if path.stat().st_size > CONTENT_VOUCH_MAX_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return len(data), hashlib.blake2b(data, digest_size=20).digest()


def remember_good(key: tuple[int, bytes] | None) -> None:
    """Record that a file with this :func:`content_key` opened fine in a probe."""
    if key is not None:
        _good_contents.add(key)


def is_known_good(path: Path) -> bool:
    """Whether ``path`` holds exactly the content of a file a probe here found good."""
    key = content_key(path)
    return key is not None and key in _good_contents


@dataclass
class ProbeResult:
    ok: bool
    error: str  # why the file cannot be used; "" when ok
    ms: float  # wall time of the child, start-up included


def probe(
    path: Path,
    engine: str,
    *,
    buffer_pool_bytes: int,
    compression: bool,
    timeout: float = PROBE_TIMEOUT_S,
) -> ProbeResult:
    """Open ``path`` with ``engine`` in a child process and read each table's count."""
    global probes_run
    probes_run += 1
    argv = [
        sys.executable,
        "-c",
        _CHILD,
        engine,
        str(path),
        str(buffer_pool_bytes),
        "1",
        "1" if compression else "0",
    ]
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        ms = (time.perf_counter() - started) * 1000
        return ProbeResult(
            False, f"the {engine} engine did not finish opening it in {timeout:g}s", ms
        )
    except OSError as exc:
        ms = (time.perf_counter() - started) * 1000
        return ProbeResult(False, f"a child process to check it could not start: {exc}", ms)
    ms = (time.perf_counter() - started) * 1000
    if done.returncode == 0:
        return ProbeResult(True, "", ms)
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return ProbeResult(False, f"the {engine} engine crashed opening it ({name})", ms)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    detail = lines[-1].strip() if lines else f"exit status {done.returncode}"
    return ProbeResult(False, detail, ms)

"""Temporary directories that carry their owner's pid, so a killed owner's are swept later.

A process killed by SIGKILL (or by a signal it does not handle) runs no cleanup: its temporary
directories stay behind. Each directory made here holds an owner file with the pid of the Python
process that made it, and every new one first sweeps the same prefix's directories whose owner
is gone. A directory without the file is never touched (another process may have just created
it, or it predates the file); neither is one of another user, or of a live pid (a reused pid
reads as alive: the sweep errs on keeping).
"""

from __future__ import annotations

import os
import shutil
import tempfile

OWNER_FILE = "owner.pid"


def make_owned_dir(prefix: str) -> str:
    """A new directory in the temp dir named ``prefix...``, after sweeping stale ones."""
    sweep_stale(prefix)
    path = tempfile.mkdtemp(prefix=prefix)
    with open(os.path.join(path, OWNER_FILE), "w", encoding="ascii") as fh:
        fh.write(f"{os.getpid()}\n")
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, under another user
        return True
    return True


def sweep_stale(prefix: str, parent: str | None = None) -> list[str]:
    """Remove ``prefix...`` directories in ``parent`` (the temp dir) whose owner died.

    Returns the directories removed.
    """
    parent = parent if parent is not None else tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != uid:
                continue
            with open(os.path.join(entry.path, OWNER_FILE), encoding="ascii") as fh:
                owner = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if owner <= 0 or owner == os.getpid() or pid_alive(owner):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed

"""Probe finding: ``tristore load`` on SIGINT/SIGTERM, and a killed owner's directories.

Real subprocesses, each with a private TMPDIR so that "nothing left behind" is checked on a
directory only that process used. Waits are hang guards (HANG_S), never thresholds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tristore.flows.env import LOAD_DIR_PREFIX
from tristore.services.owned_dirs import OWNER_FILE
from tristore.services.redis_server import WORKDIR_PREFIX, sweep_stale_workdirs

HANG_S = 60.0
TRISTORE = str(Path(sys.executable).with_name("tristore"))


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(("tristore-", WORKDIR_PREFIX)))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_load_cleans_up_and_fails_on_signal(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("TRISTORE_CONFIG", None)
    proc = subprocess.Popen(
        [TRISTORE, "load", "database_stress_test", "--duration", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: list[str] = []
    started = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "database_stress_test:" in line:
                started.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert started.wait(HANG_S), "no progress output: " + "".join(lines)
        # The run is under way: its stores exist.
        assert any(name.startswith("tristore-load-") for name in _leftovers(tmp))
        assert any(name.startswith(WORKDIR_PREFIX) for name in _leftovers(tmp))
        proc.send_signal(sig)
        # wait(), not communicate(): stderr belongs to the reader thread.
        proc.wait(timeout=HANG_S)
        assert proc.stdout is not None
        stdout = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(HANG_S)
    stderr = "".join(lines)
    assert proc.returncode == code, stderr
    assert "interrupted" in stderr
    assert "spec target" not in stdout  # no report for a cut run
    assert _leftovers(tmp) == []


def _python(code: str, tmp: Path, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_killed_owners_redis_dir_is_swept_at_the_next_start(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # An owner that dies by SIGKILL: no Python cleanup runs, its directory stays.
    killed = _python(
        """
        import os, signal
        from tristore.services.redis_server import RedisServer
        server = RedisServer().start()
        print(server.workdir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        tmp,
    )
    stale, _ = killed.communicate(timeout=HANG_S)
    assert killed.returncode == -signal.SIGKILL
    stale_dir = Path(stale.strip())
    assert stale_dir.is_dir() and (stale_dir / OWNER_FILE).is_file()
    # An owner that is alive: its directory must survive every sweep.
    live = _python(
        """
        import sys
        from tristore.services.redis_server import RedisServer
        with RedisServer() as server:
            print(server.workdir, flush=True)
            sys.stdin.read()
        """,
        tmp,
    )
    try:
        assert live.stdout is not None
        live_dir = Path(live.stdout.readline().strip())
        assert live_dir.is_dir()
        # A directory without an owner file (being created, or from an older version): kept.
        unowned = tmp / f"{WORKDIR_PREFIX}unowned"
        unowned.mkdir()
        nxt = _python(
            """
            from tristore.services.redis_server import RedisServer
            with RedisServer() as server:
                server.workdir
            """,
            tmp,
        )
        nxt.communicate(timeout=HANG_S)
        assert nxt.returncode == 0
        assert not stale_dir.exists()
        assert live_dir.is_dir()
        assert unowned.is_dir()
        assert sweep_stale_workdirs(str(tmp)) == []  # nothing stale is left
    finally:
        live.communicate(input="", timeout=HANG_S)
    assert not live_dir.exists()


def test_a_killed_load_run_leaves_directories_the_next_run_sweeps(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # SIGKILL: no cleanup can run, so the load directory and the Redis directory stay.
    killed = _python(
        """
        import asyncio, os, signal
        from tristore.flows.env import open_env

        async def main():
            async with open_env(size=None) as env:
                print(env.data_dir, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """,
        tmp,
    )
    out, _ = killed.communicate(timeout=HANG_S)
    assert killed.returncode == -signal.SIGKILL
    stale_load = Path(out.strip())
    assert stale_load.name.startswith(LOAD_DIR_PREFIX) and (stale_load / OWNER_FILE).is_file()
    assert any(name.startswith(WORKDIR_PREFIX) for name in _leftovers(tmp))
    nxt = _python(
        """
        import asyncio
        from tristore.flows.env import open_env

        async def main():
            async with open_env(size=None) as env:
                print(env.data_dir, flush=True)

        asyncio.run(main())
        """,
        tmp,
    )
    out, _ = nxt.communicate(timeout=HANG_S)
    assert nxt.returncode == 0
    assert not stale_load.exists()
    assert _leftovers(tmp) == []  # the next run's own directories are gone too

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def _doctor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRISTORE_")}
    environ.update({"TRISTORE_DATA_DIR": str(tmp_path / "data")}, **env)
    return subprocess.run(
        [sys.executable, "-m", "tristore.cli", "doctor", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def test_doctor_reports_three_healthy_stores(tmp_path: Path) -> None:
    done = _doctor(tmp_path, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    reports = {r["store"]: r for r in json.loads(done.stdout)}
    assert set(reports) == {"sqlite", "graph", "redis"}
    assert all(r["ok"] for r in reports.values())
    assert reports["sqlite"]["settings"]["journal_mode"] == "WAL"
    assert reports["graph"]["version"] == "0.11.3"
    assert reports["redis"]["settings"]["embedded"] is True
    assert ":***@" in reports["redis"]["settings"]["url"]


def test_doctor_names_each_failing_store_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    blocker = tmp_path / "blocker"
    blocker.write_text("in the way")
    done = _doctor(
        tmp_path,
        TRISTORE_REDIS_URL=f"redis://:pw@127.0.0.1:{port}/0",
        TRISTORE_GRAPH_PATH=str(blocker / "g"),
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("ok    sqlite") for line in lines)
    assert any(line.startswith("FAIL  graph") for line in lines)
    assert any(line.startswith("FAIL  redis") and "cannot reach redis" in line for line in lines)
    assert "pw@" not in done.stdout + done.stderr


def test_doctor_config_error_exits_nonzero(tmp_path: Path) -> None:
    done = _doctor(tmp_path, TRISTORE_SQLITE_CACHE_SIZE="lots")
    assert done.returncode != 0
    assert "sqlite.cache_size: expected int" in done.stderr

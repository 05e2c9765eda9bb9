"""Probe finding: every setting has a range, and ``tristore doctor`` refuses a value outside it
before it opens any store (``graph.max_threads = 100000`` once started 32,427 threads)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRISTORE_")}
    environ.update({"TRISTORE_DATA_DIR": str(tmp_path / "data")}, **env)
    return subprocess.run(
        [sys.executable, "-m", "tristore.cli", "doctor"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,  # a hang guard only
    )


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("TRISTORE_GRAPH_MAX_THREADS", "100000", "graph.max_threads: expected an int in [1, "),
        ("TRISTORE_REDIS_MAX_VALUE_BYTES", "0", "redis.max_value_bytes: expected an int in [1, "),
        ("TRISTORE_SQLITE_CACHE_SIZE", str(10**20), "sqlite.cache_size: expected an int in [-"),
        ("TRISTORE_REDIS_SOCKET_TIMEOUT_S", "inf", "redis.socket_timeout_s: expected a float in"),
        ("TRISTORE_REDIS_POOL_MAX", "100000", "redis.pool_max: expected an int in [1, 10000]"),
    ],
)
def test_doctor_refuses_an_out_of_range_setting_before_opening_a_store(
    tmp_path: Path, name: str, value: str, needle: str
) -> None:
    done = _doctor(tmp_path, **{name: value})
    assert done.returncode != 0
    assert needle in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # no store was opened


def test_empty_data_dir_is_refused_not_the_current_directory(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRISTORE_")}
    done = subprocess.run(
        [sys.executable, "-m", "tristore.cli", "doctor"],
        capture_output=True,
        text=True,
        env=environ | {"TRISTORE_DATA_DIR": ""},
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode != 0
    assert "data_dir: expected a non-empty path" in done.stderr
    assert list(tmp_path.iterdir()) == []

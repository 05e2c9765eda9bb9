"""A failing member never costs the others their committed graph writes, on either engine.

The scenario (failing_members.py) runs in a child process per engine: Kuzu and Ladybug cannot
share a process, and an engine crash must show as the child's exit status instead of killing the
test run. Before the deferred ordering, this scenario crashed Kuzu (SIGSEGV), rolled back
innocent members and lost committed graph writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tristore.services import RedisServer
from tristore.stores.graph import available_engines

WORKER = Path(__file__).with_name("failing_members.py")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


def run(engine: str, ordering: str, rounds: int, data_dir: Path, url: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(WORKER), engine, ordering, str(data_dir), str(rounds)],
        input=url + "\n",
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("engine", "ordering", "rounds"),
    [("kuzu", "deferred", 40), ("ladybug", "deferred", 40), ("kuzu", "strict", 20)],
)
def test_no_innocent_member_fails_and_no_committed_write_is_lost(
    engine: str, ordering: str, rounds: int, tmp_path: Path, redis_url: str
) -> None:
    if engine not in available_engines():
        pytest.skip(f"{engine} is not installed")
    result = run(engine, ordering, rounds, tmp_path, redis_url)
    assert result["transactions"] == rounds * 25
    assert result["innocent_failed_count"] == 0, result["innocent_failed"]
    assert result["missing_count"] == 0, result["missing_from_graph"]
    assert result["graph_counts_ok"], result["graph_counts"]
    assert result["redis_counts_ok"]
    # One bad member a round: rejected before the commit, or committed and dead-lettered.
    assert result["rolled_back"] + result["dead_lettered"] == rounds
    assert result["drift_kinds"] in ([], ["failed"])
    assert result["drift_failed"] == result["dead_lettered"]
    if ordering == "strict":
        assert result["dead_lettered"] == 0  # every graph error aborted its SQL instead

"""Kuzu 0.11.3's rollback poisoning, reproduced on the raw engine and contained by GraphStore.

The engine defect: after a write transaction that updated a node is rolled back, later updates
of that node fail with "Write-write conflict of updating the same row" until the Database is
reopened, or the process crashes. Kuzu 0.11.3 is archived and will not be fixed. A CHECKPOINT
after the rollback clears it; :meth:`GraphStore.contain` does that before the next write
transaction. The raw-engine runs happen in child processes, since the unprotected one may crash.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tristore.errors import QueryError
from tristore.stores import GraphStore
from tristore.testing import Stores

RAW = textwrap.dedent(
    """
    import sys
    import kuzu
    path, contain, rounds = sys.argv[1], sys.argv[2] == "contain", int(sys.argv[3])
    db = kuzu.Database(path)
    conn = kuzu.Connection(db)
    conn.execute("CREATE NODE TABLE P(id INT64 PRIMARY KEY, n INT64)")
    for i in range(3):
        conn.execute("CREATE (:P {id: $i, n: 0})", {"i": i})
    conflicts = 0

    def bump(hot):
        global conn, conflicts
        try:
            conn.execute("MATCH (p:P {id: $h}) SET p.n = p.n + 1", {"h": hot})
        except RuntimeError as exc:
            assert "Write-write conflict" in str(exc), exc
            conflicts += 1
            conn = kuzu.Connection(db)

    for r in range(rounds):
        hot = r % 3
        bump(hot)
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute("MATCH (p:P {id: $h}) SET p.n = p.n + 1", {"h": hot})
            conn.execute("CREATE (:P {id: 1, n: 0})")  # a duplicate primary key
            conn.execute("COMMIT")
        except RuntimeError:
            try:
                conn.execute("ROLLBACK")
            except RuntimeError:
                pass
            conn = kuzu.Connection(db)
        if contain:
            conn.execute("CHECKPOINT")
        bump(hot)
    total = conn.execute("MATCH (p:P) RETURN sum(p.n)").get_all()[0][0]
    print(conflicts, total)
    """
)


def raw_run(tmp_path: Path, mode: str, rounds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RAW, str(tmp_path / f"raw-{mode}"), mode, str(rounds)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_raw_engine_poisons_a_rolled_back_node(tmp_path: Path) -> None:
    proc = raw_run(tmp_path, "plain", 30)
    if proc.returncode < 0:  # the engine crashed: the defect in its other form
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    conflicts, _ = map(int, proc.stdout.split())
    assert conflicts > 0, "Kuzu no longer shows the defect: GraphStore.contain may be dropped"


def test_a_checkpoint_after_the_rollback_clears_it_on_the_raw_engine(tmp_path: Path) -> None:
    proc = raw_run(tmp_path, "contain", 100)
    assert proc.returncode == 0, proc.stderr[-2000:]
    conflicts, total = map(int, proc.stdout.split())
    assert (conflicts, total) == (0, 200)


@pytest.mark.parametrize("rounds", [30])
async def test_graph_store_writes_after_a_failed_write_keep_working(
    stores: Stores, rounds: int
) -> None:
    graph: GraphStore = stores.graph
    bump = ("MATCH (p:Product {id: $id}) SET p.price = p.price + 1", {"id": 1})
    await graph.execute("CREATE (:Product {id: 1, name: 'hot', category: 'x', price: 0.0})")
    await graph.execute("CREATE (:Product {id: 2, name: 'other', category: 'x', price: 0.0})")
    before = graph.containments
    for _ in range(rounds):
        await graph.execute(*bump)
        with pytest.raises(QueryError, match="duplicated primary key"):
            await graph.write(
                [bump, ("CREATE (:Product {id: 2, name: 'dup', category: 'x', price: 0.0})", None)]
            )
        await graph.execute(*bump)  # failed with "Write-write conflict" before the containment
    rows = await graph.query_rows("MATCH (p:Product {id: 1}) RETURN p.price")
    assert rows == [[2.0 * rounds]]
    assert graph.containments - before == rounds


KILLED_CHECKPOINT = textwrap.dedent(
    """
    import importlib, os, random, signal, subprocess, sys, time
    engine, path, role = sys.argv[1], sys.argv[2], sys.argv[3]
    if role == "writer":  # commits, a CHECKPOINT every ten, until SIGKILLed
        mod = importlib.import_module(engine)
        conn = mod.Connection(mod.Database(path))
        try:
            conn.execute("CREATE NODE TABLE C(id INT64 PRIMARY KEY)")
            conn.execute("CREATE NODE TABLE P(id INT64 PRIMARY KEY, n INT64)")
            conn.execute("CREATE REL TABLE B(FROM C TO P)")
            conn.execute("CREATE NODE TABLE M(txid STRING PRIMARY KEY)")
            conn.execute("CREATE (:P {id: 1, n: 0})")
        except RuntimeError:
            pass
        i = conn.execute("MATCH (c:C) RETURN coalesce(max(c.id), 0)").get_all()[0][0]
        print("READY", flush=True)
        while True:
            i += 1
            conn.execute("BEGIN TRANSACTION")
            conn.execute("CREATE (:C {id: $i})", {"i": i})
            conn.execute("MATCH (c:C {id: $i}), (p:P {id: 1}) CREATE (c)-[:B]->(p)", {"i": i})
            conn.execute("MATCH (p:P {id: 1}) SET p.n = p.n + 1")
            conn.execute("CREATE (:M {txid: $t})", {"t": f"t{i}"})
            conn.execute("COMMIT")
            if i % 10 == 0:
                conn.execute("CHECKPOINT")
    rng = random.Random(2)
    for kill in range(int(sys.argv[4])):
        child = subprocess.Popen(
            [sys.executable, "-c", sys.argv[5], engine, path, "writer"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        if "READY" not in child.stdout.readline():
            print("UNREPLAYABLE", kill, child.stderr.read().strip().splitlines()[-1])
            sys.exit(0)
        time.sleep(rng.uniform(0.02, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
    print("REPLAYED", sys.argv[4])
    """
)


@pytest.mark.parametrize("engine", ["kuzu", "ladybug"])
def test_a_sigkill_during_checkpoints_on_the_raw_engine(tmp_path: Path, engine: str) -> None:
    """Kuzu 0.11.3's CHECKPOINT is not crash-safe: killed during one, the database's log may not
    replay ("duplicated primary key") and the file does not open. The containment above runs a
    CHECKPOINT after each rolled-back write transaction, so on Kuzu it trades the poisoning for
    this window; Ladybug has neither defect. Recorded here so that an engine upgrade shows."""
    from tristore.stores.graph import available_engines

    if engine not in available_engines():
        pytest.skip(f"{engine} is not installed")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_CHECKPOINT,
            engine,
            str(tmp_path / "g"),
            "main",
            "25",
            KILLED_CHECKPOINT,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if engine == "ladybug":
        assert done.stdout.startswith("REPLAYED"), done.stdout
    elif done.stdout.startswith("REPLAYED"):
        pytest.xfail("Kuzu replayed its log after every kill this time (the window is random)")
    else:
        assert "duplicated primary key" in done.stdout, done.stdout

"""Coordinated transactions on the real stores: commit, rollback, bad input, locks, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tristore.coordinator import (
    INTENT_TABLE,
    MARKER_PREFIX,
    Coordinator,
    EntityCheck,
    Transaction,
    validate_consistency,
)
from tristore.errors import (
    ConfigError,
    CoordinatorError,
    CoordinatorTimeout,
    DeadlockError,
    QueryError,
    StoreUnavailable,
)
from tristore.testing import Stores
from tristore.testing.factories import Factory

NEW_CUSTOMER = (
    "INSERT INTO customers (email, name, country, tier) VALUES (?, ?, 'GB', 'silver') RETURNING id"
)
NEW_ORDER = (
    "INSERT INTO orders (customer_id, product_id, price, quantity, discount)"
    " VALUES (?, ?, ?, ?, 0.05) RETURNING id, final_price"
)
CUSTOMER_NODE = "CREATE (:Customer {id: $id, name: $name, tier: 'silver'})"
PURCHASE_EDGE = (
    "MATCH (c:Customer {id: $cid}), (p:Product {id: $pid})"
    " CREATE (c)-[:PURCHASED {order_id: $oid, quantity: $qty}]->(p)"
)


@pytest.fixture
async def product(stores: Stores) -> Any:
    """A product in SQLite and its node in the graph."""
    return await Factory(stores.sqlite, graph=stores.graph, seed=5).product(price=12.5)


async def place_order(
    coord: Coordinator, email: str, product: Any, quantity: int = 2
) -> tuple[Transaction, int, int]:
    """The domain's cross-store write: customer + order in SQLite, node + edge, cache entries."""
    async with coord.transaction() as tx:
        cid = (await tx.sql(NEW_CUSTOMER, (email, "Ada"))).scalar()
        oid, final_price = (
            await tx.sql(NEW_ORDER, (cid, product.id, product.price, quantity))
        ).rows[0]
        tx.graph(CUSTOMER_NODE, {"id": cid, "name": "Ada"})
        tx.graph(PURCHASE_EDGE, {"cid": cid, "pid": product.id, "oid": oid, "qty": quantity})
        tx.cache("HSET", f"order:{oid}", "customer", cid, "final_price", final_price)
        tx.cache("INCRBY", "stats:orders", 1)
    return tx, cid, oid


def order_check(oid: int) -> EntityCheck:
    """The order as each store holds it: (order id, customer id, quantity/final price)."""
    return EntityCheck(
        f"order {oid}",
        sql=("SELECT id, customer_id FROM orders WHERE id = ?", (oid,)),
        graph=(
            "MATCH (c:Customer)-[r:PURCHASED]->(:Product) WHERE r.order_id = $oid"
            " RETURN r.order_id, c.id",
            {"oid": oid},
        ),
        cache=("HGET", f"order:{oid}", "customer"),
        normalize={"cache": lambda v: [[oid, int(v)]] if v is not None else []},
    )


async def counts(stores: Stores) -> dict[str, Any]:
    """What each store holds of the workload, for "nothing anywhere" assertions."""
    return {
        "customers": (await stores.sqlite.fetchone("SELECT count(*) FROM customers"))[0],
        "orders": (await stores.sqlite.fetchone("SELECT count(*) FROM orders"))[0],
        "intents": (await stores.sqlite.fetchone(f"SELECT count(*) FROM {INTENT_TABLE}"))[0],
        "nodes": (await stores.graph.query_rows("MATCH (c:Customer) RETURN count(c)"))[0][0],
        "edges": (await stores.graph.query_rows("MATCH ()-[r:PURCHASED]->() RETURN count(r)"))[0][
            0
        ],
        "markers": (await stores.graph.query_rows("MATCH (a:AppliedTx) RETURN count(a)"))[0][0],
        "keys": sorted(k.decode() for k in await stores.cache.execute("KEYS", "*")),
    }


EMPTY = {
    "customers": 0,
    "orders": 0,
    "intents": 0,
    "nodes": 0,
    "edges": 0,
    "markers": 0,
    "keys": [],
}


async def test_commit_applies_to_all_three_stores(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    tx, cid, oid = await place_order(coordinator, "ada@example.com", product)
    assert tx.committed and tx.pending == () and tx.apply_errors == []
    row = await stores.sqlite.fetchone(
        "SELECT customer_id, final_price FROM orders WHERE id = ?", (oid,)
    )
    assert row == (cid, 23.75)  # 2 x 12.50 less 5 %: the generated column, written to the cache
    assert await stores.graph.query_rows(
        "MATCH (c:Customer)-[r:PURCHASED]->(p:Product) RETURN c.id, r.order_id, p.id"
    ) == [[cid, oid, product.id]]
    assert await stores.cache.execute("HGETALL", f"order:{oid}") == {
        b"customer": str(cid).encode(),
        b"final_price": b"23.75",
    }
    report = await validate_consistency(coordinator, entities=[order_check(oid)])
    assert report.ok, report.summary()
    state = await stores.sqlite.fetchone(
        f"SELECT state FROM {INTENT_TABLE} WHERE txid = ?", (tx.txid,)
    )
    assert state == ("applied",)


async def test_exception_in_body_rolls_back_everywhere_and_runs_on_abort(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    aborted: list[str] = []
    committed: list[str] = []

    async def async_hook() -> None:
        aborted.append("async")

    with pytest.raises(RuntimeError, match="changed my mind"):
        async with coordinator.transaction() as tx:
            await tx.sql(NEW_CUSTOMER, ("bo@example.com", "Bo"))
            tx.graph(CUSTOMER_NODE, {"id": 1, "name": "Bo"})
            tx.cache("INCRBY", "stats:orders", 1)
            tx.on_abort(lambda: aborted.append("sync"))
            tx.on_abort(async_hook)
            tx.after_commit(lambda: committed.append("x"))
            raise RuntimeError("changed my mind")
    assert tx.state == "rolled_back"
    assert aborted == ["sync", "async"] and committed == []
    after = await counts(stores)
    assert after == EMPTY
    with pytest.raises(CoordinatorError, match="not open"):
        await tx.sql("SELECT 1")


async def test_cypher_syntax_error_rolls_back_the_whole_transaction(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    discarded = stores.graph.writer.stats()["connections_discarded"]
    aborted: list[bool] = []
    with pytest.raises(QueryError, match="Parser"):
        async with coordinator.transaction() as tx:
            await tx.sql(NEW_CUSTOMER, ("cy@example.com", "Cy"))
            tx.graph(CUSTOMER_NODE, {"id": 7, "name": "Cy"})
            tx.graph("MATCH (n RETURN n")
            tx.cache("INCRBY", "stats:orders", 1)
            tx.on_abort(lambda: aborted.append(True))
    assert tx.state == "rolled_back" and aborted == [True]
    assert await counts(stores) == EMPTY
    assert stores.graph.writer.stats()["connections_discarded"] == discarded + 1
    # The lanes are free and healthy: the next transaction commits.
    tx2, _, _ = await place_order(coordinator, "cy@example.com", product)
    assert tx2.committed and tx2.pending == ()


async def test_constraint_violation_rolls_back_the_whole_transaction(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    await place_order(coordinator, "dup@example.com", product)
    before = await counts(stores)
    with pytest.raises(QueryError, match="constraint"):
        async with coordinator.transaction() as tx:
            await tx.sql(NEW_CUSTOMER, ("other@example.com", "Other"))
            tx.graph(CUSTOMER_NODE, {"id": 99, "name": "Other"})
            await tx.sql(NEW_CUSTOMER, ("DUP@example.com", "Dup"))  # NOCASE UNIQUE
    assert tx.state == "rolled_back"
    # Swallowing the error inside the body does not commit the rest: the exit rolls back.
    with pytest.raises(CoordinatorError, match="rolled back"):
        async with coordinator.transaction() as tx:
            await tx.sql(NEW_CUSTOMER, ("third@example.com", "Third"))
            tx.cache("INCRBY", "stats:orders", 1)
            with contextlib.suppress(QueryError):
                await tx.sql(NEW_CUSTOMER, ("dup@example.com", "Dup"))
    assert await counts(stores) == before


@pytest.mark.parametrize(
    "stage",
    ["sql_object", "graph_wrong_type", "graph_object", "cache_object", "sql_wrong_arity"],
)
async def test_wrong_typed_parameter_rolls_back_everything(
    coordinator: Coordinator, stores: Stores, stage: str
) -> None:
    discarded = stores.graph.writer.stats()["connections_discarded"]
    with pytest.raises(QueryError):
        async with coordinator.transaction() as tx:
            await tx.sql(NEW_CUSTOMER, ("eve@example.com", "Eve"))
            tx.cache("INCRBY", "stats:orders", 1)
            if stage == "sql_object":
                await tx.sql(NEW_CUSTOMER, (object(), "Eve"))
            elif stage == "sql_wrong_arity":
                await tx.sql(NEW_CUSTOMER, ("only-one",))
            elif stage == "graph_wrong_type":
                tx.graph(CUSTOMER_NODE, {"id": "seven", "name": "Eve"})  # id is INT64
            elif stage == "graph_object":
                tx.graph(CUSTOMER_NODE, {"id": 1, "name": object()})
            else:
                tx.cache("SET", "k", {"a": 1})
    assert tx.state == "rolled_back"
    assert await counts(stores) == EMPTY
    # Only an error inside a Kuzu transaction costs a connection; staging errors touch nothing.
    expected = discarded + (1 if stage == "graph_wrong_type" else 0)
    assert stores.graph.writer.stats()["connections_discarded"] == expected


@pytest.mark.parametrize(
    ("kind", "args", "match"),
    [
        ("cache", ("FLUSHALL",), "not supported"),
        ("cache", ("INCRBY", "k", "abc"), "not an integer"),
        ("cache", ("HSET", "h", "field"), "wrong number|pairs"),
        ("cache", ("SET", "k", b"bytes"), "cannot be stored"),
        ("cache", ("SET", "k", True), "bool"),
        ("cache", ("ZADD", "z", "high", "m"), "not a number"),
        ("cache", (), "expected a command"),
        ("cache", ("SADD", "s", *[f"m{i}" for i in range(1100)]), "more than"),
        ("graph", ("COMMIT",), "not allowed"),
        ("graph", ("  // note\nBEGIN TRANSACTION",), "not allowed"),
        ("graph", ("",), "non-empty"),
        ("sql", ("COMMIT",), "not allowed"),
        ("sql", ("-- sneaky\n  rollback",), "not allowed"),
        ("sql", ("SAVEPOINT a",), "not allowed"),
    ],
)
async def test_bad_operations_are_refused_when_staged(
    coordinator: Coordinator, stores: Stores, kind: str, args: tuple[Any, ...], match: str
) -> None:
    with pytest.raises(QueryError, match=match):
        async with coordinator.transaction() as tx:
            await tx.sql(NEW_CUSTOMER, ("fay@example.com", "Fay"))
            if kind == "cache":
                tx.cache(*args)
            elif kind == "graph":
                tx.graph(*args)
            else:
                await tx.sql(*args)
    assert await counts(stores) == EMPTY


async def test_sql_that_ends_the_transaction_itself_is_refused(
    coordinator: Coordinator, stores: Stores
) -> None:
    with pytest.raises(CoordinatorError, match="ended the SQLite transaction"):
        async with coordinator.transaction() as tx:
            await tx.sql(NEW_CUSTOMER, ("ula@example.com", "Ula"))
            tx.graph(CUSTOMER_NODE, {"id": 1, "name": "Ula"})
            tx.cache("INCRBY", "stats:orders", 1)
            await tx.sql_fn(lambda c: c.execute("ROLLBACK"))
    assert tx.state == "rolled_back"
    assert await counts(stores) == EMPTY


async def test_nested_transaction_is_refused_as_a_deadlock(coordinator: Coordinator) -> None:
    async with coordinator.transaction() as outer:
        await outer.sql("SELECT 1")
        with pytest.raises(DeadlockError, match="already open"):
            async with coordinator.transaction():
                pass
    assert outer.committed


async def test_waiting_for_the_sqlite_lane_is_bounded(
    coordinator: Coordinator, stores: Stores
) -> None:
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with stores.sqlite.transaction():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holding.wait()
    started = time.monotonic()
    with pytest.raises(CoordinatorTimeout, match="SQLite writer lane"):
        async with coordinator.transaction(timeout=0.2):
            pass
    waited = time.monotonic() - started
    release.set()
    await holder
    assert waited < 5  # bounded: it gave up, it did not hang
    assert coordinator.stats()["lock_timeouts"] == 1


async def test_waiting_for_the_kuzu_lane_while_holding_sqlite_is_a_deadlock_error(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    coordinator.lock_timeout = 0.2
    aborted: list[bool] = []
    async with stores.graph.writer.acquire():  # someone else holds the Kuzu writer lane
        with pytest.raises(DeadlockError, match="Kuzu writer lane"):
            async with coordinator.transaction() as tx:
                await tx.sql(NEW_CUSTOMER, ("gil@example.com", "Gil"))
                tx.graph(CUSTOMER_NODE, {"id": 3, "name": "Gil"})
                tx.on_abort(lambda: aborted.append(True))
    assert aborted == [True]
    assert await counts(stores) == EMPTY
    coordinator.lock_timeout = 5.0
    tx2, _, _ = await place_order(coordinator, "gil@example.com", product)
    assert tx2.committed


async def test_sqlite_part_is_serializable(coordinator: Coordinator, stores: Stores) -> None:
    """Read-modify-write from concurrent transactions loses no update."""
    row = await Factory(stores.sqlite, seed=1).product(stock=0)

    async def bump() -> None:
        async with coordinator.transaction() as tx:
            stock = (await tx.sql("SELECT stock FROM products WHERE id = ?", (row.id,))).scalar()
            await asyncio.sleep(0)  # let the others run: they must wait for the lane
            await tx.sql("UPDATE products SET stock = ? WHERE id = ?", (stock + 1, row.id))
            tx.cache("SET", f"stock:{row.id}", stock + 1)

    await asyncio.gather(*(bump() for _ in range(12)))
    assert await stores.sqlite.fetchone("SELECT stock FROM products WHERE id = ?", (row.id,)) == (
        12,
    )
    # Cache ops apply in commit order, so the last write wins in Redis as in SQLite.
    assert await stores.cache.execute("GET", f"stock:{row.id}") == b"12"


async def test_readers_see_nothing_before_the_commit(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    async with coordinator.transaction() as tx:
        cid = (await tx.sql(NEW_CUSTOMER, ("hal@example.com", "Hal"))).scalar()
        tx.graph(CUSTOMER_NODE, {"id": cid, "name": "Hal"})
        tx.cache("SET", f"customer:{cid}", "Hal")
        # Inside the body: the transaction sees its own row, readers do not.
        assert (await tx.sql("SELECT name FROM customers WHERE id = ?", (cid,))).scalar() == "Hal"
        assert await stores.sqlite.fetchone("SELECT count(*) FROM customers") == (0,)
        assert await stores.graph.query_rows("MATCH (c:Customer) RETURN count(c)") == [[0]]
        assert await stores.cache.execute("EXISTS", f"customer:{cid}") == 0
    assert await stores.sqlite.fetchone("SELECT count(*) FROM customers") == (1,)
    assert await stores.graph.query_rows("MATCH (c:Customer) RETURN c.name") == [["Hal"]]
    assert await stores.cache.execute("GET", f"customer:{cid}") == b"Hal"


async def test_redis_failure_after_commit_leaves_the_transaction_committed_but_pending(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    coordinator.retry_backoff = 60.0  # no second try before recover(): tx2 queues behind tx1
    coordinator.faults.arm("cache.apply", StoreUnavailable("redis", "injected outage"))
    tx1, _, oid1 = await place_order(coordinator, "ida@example.com", product)
    tx2, _, oid2 = await place_order(coordinator, "ivy@example.com", product)
    assert tx1.committed and tx1.pending == ("cache",)
    assert tx2.committed and tx2.pending == ("cache",)
    # SQLite and the graph have both orders; Redis has neither yet.
    assert await stores.graph.query_rows("MATCH ()-[r:PURCHASED]->() RETURN count(r)") == [[2]]
    assert await stores.cache.execute("EXISTS", f"order:{oid1}", f"order:{oid2}") == 0
    report = await validate_consistency(coordinator)
    assert report.kinds() == {"pending": 2}
    with pytest.raises(CoordinatorTimeout, match="pending"):
        await tx1.applied(timeout=0.05)
    recovered = await coordinator.recover()
    assert recovered.applied == 2 and recovered.pending == 0
    await tx1.applied(timeout=1)
    assert await stores.cache.execute("GET", "stats:orders") == b"2"
    report = await validate_consistency(
        coordinator, entities=[order_check(oid1), order_check(oid2)]
    )
    assert report.ok, report.summary()


async def test_later_cache_work_queues_behind_pending_work(
    coordinator: Coordinator, stores: Stores
) -> None:
    """While one transaction's cache ops are pending, later ones wait behind them (order)."""
    coordinator.retry_backoff = 60.0  # the circuit stays open: no retry until recover()
    coordinator.faults.arm("cache.apply", StoreUnavailable("redis", "injected outage"))
    for value in ("first", "second", "third"):
        async with coordinator.transaction() as tx:
            tx.cache("SET", "latest", value)
        assert tx.pending == ("cache",)
    assert await stores.cache.execute("EXISTS", "latest") == 0
    await coordinator.recover()
    assert await stores.cache.execute("GET", "latest") == b"third"


async def test_failed_kuzu_commit_is_replayed_before_later_graph_work(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    discarded = stores.graph.writer.stats()["connections_discarded"]
    coordinator.faults.arm("graph.commit", RuntimeError("injected: kuzu write failed"))
    async with coordinator.transaction() as tx1:
        cid = (await tx1.sql(NEW_CUSTOMER, ("jo@example.com", "Jo"))).scalar()
        tx1.graph(CUSTOMER_NODE, {"id": cid, "name": "Jo"})
    assert tx1.committed and tx1.pending == ("graph",)
    assert await stores.graph.query_rows("MATCH (c:Customer) RETURN count(c)") == [[0]]
    # The next transaction needs tx1's node: tx1 is applied first, in commit order.
    async with coordinator.transaction() as tx2:
        oid = (await tx2.sql(NEW_ORDER, (cid, product.id, product.price, 1))).rows[0][0]
        tx2.graph(PURCHASE_EDGE, {"cid": cid, "pid": product.id, "oid": oid, "qty": 1})
    assert tx2.committed
    await tx2.applied(timeout=5)
    assert tx1.pending == () and tx2.pending == () and tx1.apply_errors == []
    assert await stores.graph.query_rows(
        "MATCH (c:Customer)-[r:PURCHASED]->() RETURN c.name, r.order_id"
    ) == [["Jo", oid]]
    assert stores.graph.writer.stats()["connections_discarded"] == discarded + 1
    report = await validate_consistency(coordinator)
    assert report.ok, report.summary()


async def test_recovery_after_a_crash_is_complete_and_idempotent(
    stores: Stores, product: Any
) -> None:
    first = Coordinator.for_stores(stores, recovery_interval=None)
    await first.open()
    # As if the process died right after the SQLite commit: nothing applied anywhere else.
    first.faults.arm("after_commit", RuntimeError("simulated crash"), times=2)
    tx1, _, oid1 = await place_order(first, "kim@example.com", product)
    tx2, _, oid2 = await place_order(first, "kai@example.com", product)
    assert tx1.pending == ("graph", "cache") and tx2.pending == ("graph", "cache")
    await first.close()
    # Left to recovery, as after a crash: nothing was applied anywhere else.
    before = await counts(stores)
    assert (before["edges"], before["keys"]) == (0, [])

    second = Coordinator.for_stores(stores, recovery_interval=None)
    report = await second.open()  # start-up recovery
    assert (report.found, report.applied, report.pending) == (2, 2, 0)
    # Replaying again (e.g. a crash before the "applied" marks were written) changes nothing:
    # the graph ops are plain CREATEs and the cache ops increments, so a second apply would show.
    await stores.sqlite.execute(f"UPDATE {INTENT_TABLE} SET state = 'pending'")
    await second.close()
    third = Coordinator.for_stores(stores, recovery_interval=None)
    report = await third.open()
    assert (report.found, report.applied, report.pending) == (2, 2, 0)
    after = await counts(stores)
    assert (after["nodes"], after["edges"], after["markers"]) == (2, 2, 2)
    assert await stores.cache.execute("GET", "stats:orders") == b"2"
    checks = [order_check(oid1), order_check(oid2)]
    result = await validate_consistency(third, entities=checks)
    assert result.ok, result.summary()
    await third.close()


async def test_validator_reports_drift(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    _, _, oid = await place_order(coordinator, "lea@example.com", product)
    assert (await validate_consistency(coordinator, entities=[order_check(oid)])).ok
    # Effects of transactions that never committed, and a tampered entity.
    await stores.graph.execute("CREATE (:AppliedTx {txid: 'ghost-graph'})")
    await stores.cache.execute("SET", MARKER_PREFIX + "ghost-cache", "applied")
    await stores.cache.execute("HSET", f"order:{oid}", "customer", 424242)
    report = await validate_consistency(coordinator, entities=[order_check(oid)])
    assert report.kinds() == {"uncommitted_graph": 1, "uncommitted_cache": 1, "mismatch": 1}
    mismatch = next(d for d in report.drift if d.kind == "mismatch")
    assert mismatch.values["cache"] == [[oid, 424242]]
    # Checking chosen transactions only looks at those.
    assert (await validate_consistency(coordinator, txids=["ghost-graph"])).kinds() == {
        "uncommitted_graph": 1
    }


async def test_cache_op_rejected_at_apply_is_reported_and_writes_nothing(
    coordinator: Coordinator, stores: Stores
) -> None:
    await stores.cache.execute("SET", "profile:1", "a plain string")
    async with coordinator.transaction() as tx:
        tx.cache("INCRBY", "visits", 1)
        tx.cache("HSET", "profile:1", "name", "Mo")  # WRONGTYPE: the key holds a string
    assert tx.committed and tx.pending == ()
    assert len(tx.apply_errors) == 1 and "WRONGTYPE" in tx.apply_errors[0]
    assert await stores.cache.execute("EXISTS", "visits") == 0  # checked before any write
    assert (await validate_consistency(coordinator)).kinds() == {"failed": 1}
    # Never retried: recovery leaves it alone.
    assert (await coordinator.recover()).found == 0
    assert await stores.cache.execute("EXISTS", "visits") == 0


async def test_after_commit_hooks_and_hook_errors(coordinator: Coordinator) -> None:
    seen: list[str] = []

    async def follow_up() -> None:
        # A hook may start its own coordinated transaction: the first one's lane is free.
        async with coordinator.transaction() as inner:
            inner.cache("SET", "follow-up", "done")
        seen.append(inner.state)

    def broken() -> None:
        raise ValueError("hook bug")

    async with coordinator.transaction() as tx:
        tx.cache("SET", "k", "v")
        tx.after_commit(broken)
        tx.after_commit(follow_up)
        tx.on_abort(lambda: seen.append("aborted"))
    assert tx.committed
    assert seen == ["committed"]
    assert [type(e) for e in tx.hook_errors] == [ValueError]


async def test_a_cancelled_caller_does_not_interrupt_the_commit(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    # Slow the SQLite commit hop down so the cancellation lands in the middle of it.
    coordinator.faults.arm("sqlite.commit", action=lambda: time.sleep(0.3))
    task = asyncio.create_task(place_order(coordinator, "ned@example.com", product))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await coordinator.close()  # waits for the commit running on behind the caller's back
    after = await counts(stores)
    assert (after["orders"], after["edges"], after["intents"]) == (1, 1, 1)
    assert await stores.cache.execute("GET", "stats:orders") == b"1"


async def test_prune_forgets_settled_intents_with_their_markers(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    await place_order(coordinator, "ola@example.com", product)
    await place_order(coordinator, "oto@example.com", product)
    await coordinator.flush()
    assert await coordinator.prune(older_than=3600) == 0  # too recent
    assert await coordinator.prune(older_than=0) == 2
    after = await counts(stores)
    assert (after["intents"], after["markers"], after["edges"]) == (0, 0, 2)
    assert not [k for k in after["keys"] if k.startswith(MARKER_PREFIX)]
    assert (await validate_consistency(coordinator)).ok


async def test_periodic_sweep_rolls_pending_work_forward(stores: Stores, product: Any) -> None:
    coord = Coordinator.for_stores(stores, recovery_interval=0.05, retry_backoff=0.01)
    await coord.open()
    try:
        # Redis stays "down" until the transaction has ended: a sweep that ran while the graph
        # batch committed would otherwise apply the cache part before `pending` is read.
        outage = StoreUnavailable("redis", "injected outage")
        coord.faults.arm("cache.apply", outage, times=1_000_000)
        tx, _, _ = await place_order(coord, "pia@example.com", product)
        assert tx.pending == ("cache",)
        coord.faults.disarm("cache.apply")
        await tx.applied(timeout=5)  # no explicit recover(): the sweeper did it
        assert await stores.cache.execute("GET", "stats:orders") == b"1"
    finally:
        await coord.close()


@pytest.mark.parametrize(
    "options",
    [
        {"lock_timeout": 0},
        {"lock_timeout": "5"},
        {"recovery_interval": -1},
        {"max_replays": 0},
        {"marker_ttl": True},
    ],
)
async def test_bad_settings_are_config_errors(stores: Stores, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Coordinator.for_stores(stores, **options)


async def test_transactions_need_an_open_coordinator(stores: Stores) -> None:
    coord = Coordinator.for_stores(stores)
    with pytest.raises(CoordinatorError, match="not open"):
        async with coord.transaction():
            pass
    with pytest.raises(ConfigError, match="fault point"):
        coord.faults.arm("nowhere", RuntimeError())


def test_cli_recovers_and_validates(
    tmp_path: Path, tristore_redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tristore coordinator recover|validate`` against the configured stores."""
    from click.testing import CliRunner

    from tristore.coordinator.cli import command
    from tristore.testing.setup import open_stores, store_settings

    monkeypatch.setenv("TRISTORE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRISTORE_REDIS_URL", tristore_redis_server.url)
    monkeypatch.delenv("TRISTORE_CONFIG", raising=False)

    async def leave_one_pending() -> None:
        async with open_stores(store_settings(tmp_path, tristore_redis_server.url)) as opened:
            await opened.cache.execute("FLUSHDB")
            coord = Coordinator.for_stores(opened, recovery_interval=None)
            await coord.open()
            coord.faults.arm("after_commit", RuntimeError("simulated crash"))
            async with coord.transaction() as tx:
                tx.cache("INCRBY", "stats:orders", 1)
            await coord.close()

    asyncio.run(leave_one_pending())
    runner = CliRunner()
    result = runner.invoke(command, ["recover", "--json"], obj={"config_path": None})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["found"], report["applied"], report["pending"]) == (1, 1, 0)
    result = runner.invoke(command, ["validate"], obj={"config_path": None})
    assert result.exit_code == 0 and "no drift" in result.output, result.output
    assert tristore_redis_server.url.split("@")[0].split(":")[-1] not in result.output

    async def orphan() -> None:
        async with open_stores(store_settings(tmp_path, tristore_redis_server.url)) as opened:
            await opened.cache.execute("SET", MARKER_PREFIX + "ghost", "applied")

    asyncio.run(orphan())
    result = runner.invoke(command, ["validate", "--json"], obj={"config_path": None})
    assert result.exit_code == 1
    assert json.loads(result.output)["drift"][0]["kind"] == "uncommitted_cache"


def test_cli_lists_and_retries_dead_letters(
    tmp_path: Path, tristore_redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tristore coordinator status|retry``: a dead letter is listed, then applied after a fix."""
    from click.testing import CliRunner

    from tristore.coordinator.cli import command
    from tristore.testing.setup import open_stores, store_settings

    monkeypatch.setenv("TRISTORE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRISTORE_REDIS_URL", tristore_redis_server.url)
    monkeypatch.delenv("TRISTORE_CONFIG", raising=False)

    async def in_stores(job: Any) -> Any:
        async with open_stores(store_settings(tmp_path, tristore_redis_server.url)) as opened:
            return await job(opened)

    async def dead_letter(opened: Any) -> str:
        await opened.cache.execute("FLUSHDB")
        await opened.graph.execute("CREATE (:Customer {id: 77, name: 'taken', tier: 'x'})")
        coord = Coordinator.for_stores(opened, recovery_interval=None)
        await coord.open()
        async with coord.transaction() as tx:
            tx.graph(CUSTOMER_NODE, {"id": 77, "name": "Ada"})  # a duplicate key: at apply
            tx.cache("INCRBY", "stats:orders", 1)
        await coord.close()
        assert tx.committed and "duplicated primary key" in tx.apply_errors[0]
        return tx.txid

    txid = asyncio.run(in_stores(dead_letter))
    runner = CliRunner()
    result = runner.invoke(command, ["status", "--json"], obj={"config_path": None})
    assert result.exit_code == 1, result.output
    letters = json.loads(result.output)["dead_letters"]
    assert [d["txid"] for d in letters] == [txid] and "duplicated" in letters[0]["error"]
    result = runner.invoke(command, ["retry"], obj={"config_path": None})
    assert result.exit_code == 1 and "1 failed again" in result.output, result.output

    async def fix(opened: Any) -> None:
        await opened.graph.execute("MATCH (c:Customer {id: 77}) DELETE c")

    asyncio.run(in_stores(fix))
    result = runner.invoke(command, ["retry", txid], obj={"config_path": None})
    assert result.exit_code == 0 and "1 applied" in result.output, result.output
    result = runner.invoke(command, ["status"], obj={"config_path": None})
    assert result.exit_code == 0 and "dead letters: 0" in result.output, result.output
    result = runner.invoke(command, ["validate"], obj={"config_path": None})
    assert result.exit_code == 0 and "no drift" in result.output, result.output


async def test_the_validator_checks_more_txids_than_one_graph_parameter_holds(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    """A long load's txids (50k here: ~2 MB of ids) exceed graph.max_value_bytes as one list."""
    tx, _, _ = await place_order(coordinator, "many@example.com", product)
    txids = [tx.txid] + [f"{n:032x}" for n in range(50_000)]
    report = await validate_consistency(coordinator, txids=txids)
    assert report.ok, report.summary()
    assert report.transactions == len(txids)


async def test_strict_ordering_aborts_the_sql_on_any_graph_error(
    coordinator: Coordinator, stores: Stores, product: Any
) -> None:
    await stores.graph.execute("CREATE (:Customer {id: 77, name: 'taken', tier: 'x'})")
    with pytest.raises(QueryError, match="duplicated primary key"):
        async with coordinator.transaction(ordering="strict") as tx:
            await tx.sql(NEW_CUSTOMER, ("s@example.com", "S"))
            tx.graph(CUSTOMER_NODE, {"id": 77, "name": "S"})  # seen only by running it
    assert tx.state == "rolled_back"
    assert await stores.sqlite.fetchone("SELECT count(*) FROM customers") == (0,)
    # The graph store is usable after the rolled-back Kuzu transaction, in both orderings.
    _, cid, _ = await place_order(coordinator, "t@example.com", product)
    async with coordinator.transaction(ordering="strict") as tx2:
        cid2 = (await tx2.sql(NEW_CUSTOMER, ("u@example.com", "U"))).scalar()
        tx2.graph(CUSTOMER_NODE, {"id": cid2, "name": "U"})
    assert tx2.committed and tx2.pending == ()
    rows = await stores.graph.query_rows("MATCH (c:Customer) RETURN c.id ORDER BY c.id")
    assert [r[0] for r in rows] == sorted([cid, cid2, 77])


async def test_a_strict_transaction_left_to_recovery_keeps_nothing_locked(
    coordinator: Coordinator, stores: Stores
) -> None:
    coordinator.faults.arm("after_commit", RuntimeError("simulated crash"))
    async with coordinator.transaction(ordering="strict") as tx:
        cid = (await tx.sql(NEW_CUSTOMER, ("v@example.com", "V"))).scalar()
        tx.graph(CUSTOMER_NODE, {"id": cid, "name": "V"})
    assert tx.committed and tx.pending == ("graph",)
    assert await stores.graph.query_rows("MATCH (c:Customer) RETURN count(c)") == [[0]]
    report = await coordinator.recover()
    assert (report.found, report.applied, report.pending) == (1, 1, 0)
    async with coordinator.transaction(ordering="strict") as tx2:  # the applier lock is free
        cid2 = (await tx2.sql(NEW_CUSTOMER, ("w@example.com", "W"))).scalar()
        tx2.graph(CUSTOMER_NODE, {"id": cid2, "name": "W"})
    assert tx2.pending == ()
    assert (await validate_consistency(coordinator)).ok

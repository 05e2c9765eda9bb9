"""The specification's ``cross_database_coordination`` scenario: 25 concurrent transactions.

Each transaction touches the three stores (customer + order in SQLite, node + edge in Kuzu, order
hash, set and counters in Redis). The target is 100 % success and zero drift, checked with the
same invariant as the crash loop. ``TRISTORE_TEST_LOAD_SECONDS`` sets the duration (3 s by
default so the test suite stays quick; the specification's run is 180 s). Latencies are printed,
never asserted: tests assert behaviour; the asv suite measures speed.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time

import pytest
from crash_worker import check, ensure_catalogue, one_transaction

from tristore.coordinator import Coordinator

CONCURRENCY = 25
DURATION_S = float(os.environ.get("TRISTORE_TEST_LOAD_SECONDS", "3"))

pytestmark = pytest.mark.timeout(DURATION_S + 120)


@pytest.mark.parametrize("duration", [DURATION_S])
async def test_cross_database_coordination(coordinator: Coordinator, duration: float) -> None:
    await ensure_catalogue(coordinator)
    outcomes: dict[str, int] = {}
    errors: list[BaseException] = []
    latencies_ms: list[float] = []
    committed: set[str] = set()
    stop_at = time.monotonic() + duration

    async def client(c: int) -> None:
        rng = random.Random(c)
        n = 0
        while time.monotonic() < stop_at:
            tag = f"c{c}n{n}"
            n += 1
            started = time.perf_counter()
            try:
                outcome = await one_transaction(coordinator, tag, rng, failures=False)
            except Exception as exc:  # counted as a failure, never hidden
                errors.append(exc)
                outcome = "error"
            latencies_ms.append((time.perf_counter() - started) * 1000)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome == "committed":
                committed.add(tag)

    await asyncio.gather(*(client(c) for c in range(CONCURRENCY)))
    total = sum(outcomes.values())
    problems, summary = await check(coordinator, committed)
    q = statistics.quantiles(latencies_ms, n=100) if len(latencies_ms) > 1 else [0.0] * 99
    print(
        f"cross_database_coordination: {CONCURRENCY} concurrent for {duration:g}s, {total} "
        f"transactions ({total / duration:.0f}/s), outcomes {outcomes}, "
        f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms; {summary}"
    )
    assert not errors, errors[:3]
    assert outcomes == {"committed": total}, outcomes  # 100 % success, every apply completed
    assert not problems, "\n".join(problems)
    stats = coordinator.stats()
    assert stats["committed"] >= total and stats["pending"] == 0

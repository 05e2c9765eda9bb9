"""The perf suite's test-only slowdown: parsing, what install() wraps, and how much it waits.

Deterministic: the wrappers run on a fake clock that moves only when told to. Unmarked, so the
gate's ``-m perf`` rounds never run these, while ``make test`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import slowdown

from tristore.errors import ConfigError


class FakeClock:
    """A clock that only moves when told to (plus a tick per read): no real timing involved."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1e-7
        return self.now


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    clock = FakeClock()
    monkeypatch.setattr(slowdown, "perf_counter", clock)
    monkeypatch.setattr(slowdown, "_async_overhead", 0.0)  # measured only with a real clock
    before = slowdown.active()
    yield clock
    slowdown.configure(*before)


def test_slowdown_switch_parsing() -> None:
    assert slowdown._parse({}) == (0.0, "")
    assert slowdown._parse({"TRISTORE_TEST_SLOWDOWN": "0"}) == (0.0, "")
    on = {"TRISTORE_TEST_SLOWDOWN": "20", "TRISTORE_TEST_SLOWDOWN_TARGET": "sqlite_write"}
    assert slowdown._parse(on) == (0.2, "sqlite_write")


@pytest.mark.parametrize(
    "env",
    [
        {"TRISTORE_TEST_SLOWDOWN": "abc", "TRISTORE_TEST_SLOWDOWN_TARGET": "sqlite_write"},
        {"TRISTORE_TEST_SLOWDOWN": "-5", "TRISTORE_TEST_SLOWDOWN_TARGET": "sqlite_write"},
        {"TRISTORE_TEST_SLOWDOWN": "20"},  # no target: slowing nothing must not pass silently
        {"TRISTORE_TEST_SLOWDOWN": "20", "TRISTORE_TEST_SLOWDOWN_TARGET": "sqlite_wirte"},
    ],
)
def test_bad_slowdown_values_are_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        slowdown._parse(env)


def test_install_wraps_nothing_when_off(switch: FakeClock) -> None:
    from tristore.stores.sqlite import SQLiteStore

    slowdown.configure(0)
    before = SQLiteStore.__dict__["write"]
    assert slowdown.install() == []
    assert SQLiteStore.__dict__["write"] is before


def test_install_wraps_only_the_target_once(
    switch: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tristore.stores.graph import GraphStore
    from tristore.stores.sqlite import SQLiteStore

    monkeypatch.setattr(GraphStore, "read", GraphStore.__dict__["read"])  # undone afterwards
    write = SQLiteStore.__dict__["write"]
    slowdown.configure(50, "kuzu_read")
    assert slowdown.install() == ["tristore.stores.graph.GraphStore.read"]
    assert slowdown.install() == []  # idempotent
    assert GraphStore.__dict__["read"].__wrapped__ is not None
    assert SQLiteStore.__dict__["write"] is write


def test_slowdown_is_proportional_to_the_call(switch: FakeClock) -> None:
    """At 20%, a call that took 5 ms (on the fake clock) is followed by a 1 ms busy-wait."""
    slowdown.configure(20, "sqlite_write")

    async def work() -> str:
        switch.now += 0.005
        return "done"

    slowed = slowdown._wrap(work, "sqlite_write")
    assert slowed is not work and slowed.__wrapped__ is work  # type: ignore[attr-defined]
    start = switch.now
    assert asyncio.run(slowed()) == "done"
    assert switch.now - start == pytest.approx(0.006, abs=1e-5)


def test_slowdown_follows_the_fastest_call_not_a_disturbed_one(switch: FakeClock) -> None:
    """A call delayed by load (12 ms instead of 5) gets the same 1 ms: 20% of the floor."""
    slowdown.configure(20, "kuzu_read")
    durations = iter([0.005, 0.012])

    async def read() -> None:
        switch.now += next(durations)

    slowed = slowdown._wrap(read, "kuzu_read")
    asyncio.run(slowed())
    start = switch.now
    asyncio.run(slowed())
    assert switch.now - start == pytest.approx(0.013, abs=1e-5)

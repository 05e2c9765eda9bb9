"""Each store implements the contract doctor and the manager rely on, call for call.

``isinstance`` against a runtime-checkable Protocol only sees that a name exists; this test also
holds every method to the contract's shape: async where the contract is async, and accepting
each of the contract's parameters by the same name and kind.
"""

from __future__ import annotations

import inspect

import pytest

from tristore.config import Settings
from tristore.stores import CacheStore, CheckedOnDisk, GraphStore, SQLiteStore, Store

STORES = (SQLiteStore, GraphStore, CacheStore)


def _members(protocol: type) -> list[str]:
    return [
        name
        for name, value in vars(protocol).items()
        if inspect.isfunction(value) and not name.startswith("_")
    ]


def _conforms(cls: type, protocol: type) -> list[str]:
    problems = []
    for name in _members(protocol):
        wanted = getattr(protocol, name)
        actual = getattr(cls, name, None)
        if actual is None:
            problems.append(f"{name}: missing")
            continue
        if inspect.iscoroutinefunction(wanted) != inspect.iscoroutinefunction(actual):
            problems.append(f"{name}: async must be {inspect.iscoroutinefunction(wanted)}")
        params = inspect.signature(actual).parameters
        for pname, p in inspect.signature(wanted).parameters.items():
            got = params.get(pname)
            if got is None or got.kind != p.kind:
                problems.append(f"{name}: parameter {pname!r} ({p.kind.name}) not accepted")
    return problems


@pytest.mark.parametrize("cls", STORES, ids=lambda c: c.__name__)
def test_every_store_implements_the_store_contract(cls: type) -> None:
    assert _conforms(cls, Store) == []
    assert isinstance(cls(Settings()), Store)


def test_only_sqlite_checks_its_files_on_disk() -> None:
    assert _conforms(SQLiteStore, CheckedOnDisk) == []
    checked = [cls.__name__ for cls in STORES if isinstance(cls(Settings()), CheckedOnDisk)]
    assert checked == ["SQLiteStore"]


def test_the_contract_check_sees_a_wrong_shape() -> None:
    class Sync:
        def open(self) -> None: ...

    assert "open: async must be True" in _conforms(Sync, Store)
    assert "close: missing" in _conforms(Sync, Store)

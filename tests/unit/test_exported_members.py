"""The public names of each package are exactly its ``__all__`` (in the manner of httpx).

A name that is importable but not exported, or exported but missing, is an accident either way:
the first becomes an API by use, the second breaks ``from tristore.x import *``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

PACKAGES = (
    "tristore",
    "tristore.coordinator",
    "tristore.flows",
    "tristore.schema",
    "tristore.services",
    "tristore.stores",
    "tristore.testing",
)


@pytest.mark.parametrize("name", PACKAGES)
def test_module_exports_all_public_members(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        member
        for member in dir(module)
        if not member.startswith("_")
        # submodules are reachable as attributes once imported; they are not exports
        and not isinstance(getattr(module, member), types.ModuleType)
        and member != "annotations"  # `from __future__ import annotations`
    }
    exported = set(module.__all__) - {"__version__"}
    assert public == exported, {
        "importable, not exported": sorted(public - exported),
        "exported, missing": sorted(exported - public),
    }


def test_the_library_never_imports_its_tooling() -> None:
    # A fresh interpreter: this test process has imported plenty already.
    probe = (
        f"import importlib, sys; [importlib.import_module(m) for m in {PACKAGES!r}]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tristore_bench', 'pyperf', 'asv', 'scipy', 'pytest_benchmark', 'virtualenv'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


# What a user imports from ``tristore`` itself (README and docs/api.md use these names). Adding
# a name is a decision about the API, so it is spelt out here rather than read back from __all__.
TOP_LEVEL = {
    # settings
    "Settings",
    "load_settings",
    # stores, pools and the manager
    "CacheStore",
    "GraphStore",
    "SQLiteStore",
    "Pool",
    "PoolConfig",
    "PoolManager",
    # cross-store transactions
    "Coordinator",
    "DeadLetter",
    "Transaction",
    "validate_consistency",
    # monitoring
    "Monitor",
    # errors
    "ConfigError",
    "CoordinatorError",
    "CoordinatorTimeout",
    "DeadlockError",
    "PoolClosed",
    "PoolConfigError",
    "PoolError",
    "PoolTimeout",
    "QueryError",
    "ServiceError",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "TooManyRequests",
    "TransactionConflict",
    "TristoreError",
    "ValueTooLarge",
}

# Where each top-level name is defined: ``tristore.X`` is that very object, not a copy.
HOMES = {
    "CacheStore": "tristore.stores",
    "GraphStore": "tristore.stores",
    "SQLiteStore": "tristore.stores",
    "Pool": "tristore.pool",
    "PoolConfig": "tristore.pool",
    "PoolManager": "tristore.manager",
    "Coordinator": "tristore.coordinator",
    "DeadLetter": "tristore.coordinator",
    "Transaction": "tristore.coordinator",
    "validate_consistency": "tristore.coordinator",
    "Monitor": "tristore.monitor",
    "Settings": "tristore.config",
    "load_settings": "tristore.config",
}


def test_top_level_names_are_the_api() -> None:
    import tristore

    assert set(tristore.__all__) - {"__version__"} == TOP_LEVEL


def test_every_error_class_is_exported_at_the_top() -> None:
    import tristore
    import tristore.errors

    errors = {
        name
        for name, value in vars(tristore.errors).items()
        if isinstance(value, type)
        and issubclass(value, Exception)
        and value.__module__ == "tristore.errors"
    }
    assert errors <= set(tristore.__all__), sorted(errors - set(tristore.__all__))
    for name in errors:
        assert getattr(tristore, name) is getattr(tristore.errors, name)


@pytest.mark.parametrize("name", sorted(HOMES))
def test_top_level_name_is_the_defining_modules_object(name: str) -> None:
    import tristore

    assert getattr(tristore, name) is getattr(importlib.import_module(HOMES[name]), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    import tristore

    with pytest.raises(AttributeError, match="no attribute 'Store'"):
        _ = tristore.Store  # exported by tristore.stores, not at the top
    assert not hasattr(tristore, "no_such_name")


def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_import_tristore_loads_no_driver_until_a_name_is_used() -> None:
    # The stores, the coordinator, the pool and the monitor load on first use: `import tristore`
    # (which every `import tristore.x` runs first) stays the settings and the errors.
    drivers = "{'aiosqlite', 'kuzu', 'ladybug', 'redis', 'hdrh', 'psutil'}"
    probe = (
        "import sys, tristore; print(sorted({m.split('.')[0] for m in sys.modules} & "
        f"{drivers})); tristore.Coordinator; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {drivers}))"
    )
    before, after = _fresh(probe).splitlines()
    assert before == "[]"
    assert "aiosqlite" in after and "redis" in after


@pytest.mark.parametrize("name", sorted(HOMES))
def test_each_name_imports_first_in_a_fresh_interpreter(name: str) -> None:
    # No import cycle through tristore/__init__: whichever name a program touches first works.
    assert _fresh(f"import tristore; print(tristore.{name}.__name__)") == name

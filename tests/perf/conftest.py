"""Fast checks of tristore's hot paths with pytest-benchmark (``pytest -m perf``).

These modules are what ``tristore gate`` runs on both sides of a comparison: HEAD's copy of this
directory against the base revision's library (``PYTHONPATH=<base>/src``). Hence:

* every tristore import happens inside a fixture through :func:`require`, which *skips* the
  benchmark when the library under test lacks the API (an older base), instead of failing;
* nothing here uses the ``tristore`` pytest plugin (the gate runs with ``-p no:tristore``, since
  a base may predate it): Redis is started by a fixture of this file;
* each benchmark is ``benchmark.pedantic`` over a fixed number of samples, each sample one batch
  of ``ops`` operations run by a single ``loop.run_until_complete`` (``asyncio.run`` per call
  would cost ~140 us and swamp a 2 us pool checkout). Fixed work per sample keeps base and head
  comparable sample for sample; ``extra_info["ops"]`` lets the gate report time per operation.
  Each benchmark takes about half a second.

The test-only slowdown switch (``TRISTORE_TEST_SLOWDOWN``, see slowdown.py here) is installed at
configure time, before anything is timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from _perf import SCALE_OPTION, require


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        SCALE_OPTION,
        type=float,
        default=1.0,
        help="tristore perf: multiply the number of samples per benchmark (default 1).",
    )


def pytest_configure(config: pytest.Config) -> None:
    import slowdown  # this suite's own injector (tests/perf/slowdown.py), beside the checks

    installed = slowdown.install()
    if installed or slowdown.active()[0]:
        percent, target = slowdown.active()
        config.stash[_SLOWDOWN_KEY] = f"{percent:g}% on {target} ({', '.join(installed)})"


_SLOWDOWN_KEY = pytest.StashKey[str]()


def pytest_report_header(config: pytest.Config) -> str | None:
    injected = config.stash.get(_SLOWDOWN_KEY, None)
    return f"tristore perf: slowdown injected: {injected}" if injected else None


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per module: stores are opened on it and every batch runs on it."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server for this pytest process (the same binary on both gate sides)."""
    services = require("tristore.services", "RedisServer")
    server = services.RedisServer()
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def seeded_graph(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The ``small`` data set (seed 7) loaded by the library under test (~0.3 s)."""
    setup = require("tristore.testing.setup", "seed_files")
    return setup.seed_files(tmp_path_factory.mktemp("seeded"), "small", seed=7)

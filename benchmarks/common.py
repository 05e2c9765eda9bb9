"""Shared helpers for the asv suite (in the manner of pandas' ``pandas_vb_common``).

asv has no coroutine support (asv issue #1235), and ``asyncio.run`` per call costs ~140 us, which
would swamp the operations measured here. The pattern used throughout the suite:

* ``setup`` makes one event loop (:class:`AsyncBench`) and opens the stores on it;
* each timed method runs a *batch* of ``N`` operations with one ``loop.run_until_complete``;
* the result is reported per operation by setting ``number``-independent batch sizes and dividing
  in ``track_`` benchmarks, or (for ``time_``) by keeping ``N`` fixed so that results stay
  comparable across commits.

A benchmark that needs an API an older commit lacks raises ``NotImplementedError`` in ``setup``:
asv then records it as skipped for that commit instead of failing the run.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

SEED = 20261122


def require(module: str, *names: str) -> Any:
    """Import ``module`` and check it has ``names``; skip on commits that lack them."""
    try:
        mod = __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise NotImplementedError(f"{module} is not available at this commit") from exc
    for name in names:
        if not hasattr(mod, name):
            raise NotImplementedError(f"{module}.{name} is not available at this commit")
    return mod


def registry() -> Any:
    """The workload registry, ``tristore_bench.workloads`` of this checkout's ``tools/bench``
    (HEAD's, like this suite): the one definition of each hot path every harness runs."""
    tools = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
    src = os.path.join(tools, "bench", "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    from tristore_bench import workloads

    return workloads


def workload(name: str) -> Any:
    """:func:`registry`, checked for workload ``name``: a commit whose library lacks what the
    workload uses skips the benchmark."""
    try:
        workloads = registry()
    except ImportError as exc:  # a checkout without the tooling distribution
        raise NotImplementedError(f"tristore_bench.workloads is not available: {exc}") from exc
    lacking = workloads.missing(name)
    if lacking is not None:
        raise NotImplementedError(lacking)
    return workloads


# What a setup_cache returns at a commit that lacks the API: asv has no skip from setup_cache (an
# exception there records every benchmark of the class as failed), so the cache carries the
# reason and setup() raises NotImplementedError from it, which asv records as a skip.
SKIP_MARK = "__tristore_asv_skip__"


def cache_or_skip(build: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``setup_cache``: NotImplementedError becomes a skip marker instead of a failure."""

    @functools.wraps(build)
    def setup_cache(self: Any) -> Any:
        try:
            return build(self)
        except NotImplementedError as exc:
            return (SKIP_MARK, str(exc))

    return setup_cache


def skip_if_unavailable(cache: Any) -> None:
    """First line of ``setup`` in a class whose ``setup_cache`` is :func:`cache_or_skip`."""
    if isinstance(cache, tuple) and cache and cache[0] == SKIP_MARK:
        raise NotImplementedError(cache[1])


class AsyncBench:
    """Base class: a persistent event loop and a scratch directory per benchmark process.

    Timing defaults keep the whole suite within its five-minute budget on two cores while still
    taking enough samples for asv's statistics.
    """

    # One round: on two cores a benchmark process's start-up (imports, opening stores) costs
    # more than its samples, and the per-commit budget is five minutes.
    repeat = (5, 10, 1.0)
    rounds = 1
    warmup_time = 0.05
    timeout = 120

    loop: asyncio.AbstractEventLoop
    tmpdir: str

    def setup_loop(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.tmpdir = tempfile.mkdtemp(prefix="tristore-asv-")

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def batch(self, n: int, op: Callable[[], Awaitable[Any]]) -> None:
        async def many() -> None:
            for _ in range(n):
                await op()

        self.loop.run_until_complete(many())

    def close_opened(self, name: str, method: str = "close") -> None:
        """Await ``self.<name>.<method>()`` if setup got as far as making ``self.<name>``.

        asv calls teardown even when setup raised NotImplementedError (a commit that lacks the
        API), so any attribute may be missing; a teardown that raised would turn that skip into
        a failure in the history. (asv's benchmark version hashes setup, not teardown.)
        """
        obj = getattr(self, name, None)
        loop = getattr(self, "loop", None)
        if obj is not None and loop is not None and not loop.is_closed():
            loop.run_until_complete(getattr(obj, method)())

    def teardown_loop(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        shutil.rmtree(getattr(self, "tmpdir", ""), ignore_errors=True)


def settings_in(tmpdir: str, **sections: Any) -> Any:
    """tristore Settings rooted in ``tmpdir`` (so benchmarks never touch a user's data)."""
    config = require("tristore.config", "Settings")
    base = config.Settings(data_dir=tmpdir)
    return base.replace(**sections) if sections else base


def cpu_count() -> int:
    return os.cpu_count() or 1

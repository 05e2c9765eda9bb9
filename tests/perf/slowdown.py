"""Test-only slowdown injection: make one library hot path a chosen percentage slower.

The PR gate measures how often it catches a real regression with this
(``tristore-bench gate --calibrate --inject 20 --target sqlite_write``). Two environment variables,
read once at import, switch it on::

    TRISTORE_TEST_SLOWDOWN=20                    # percent
    TRISTORE_TEST_SLOWDOWN_TARGET=sqlite_write   # one of TARGETS

The slowdown is a busy-wait on the event loop's thread: it costs CPU the way a regression in
Python code does (``asyncio.sleep`` would yield the loop instead). Per target (see HOOKS):

* ``elapsed`` targets (SQLite write, Redis pipeline, Kuzu read: 60 us to 3 ms per call): the
  library's coroutine method is wrapped; after the real call returns, the wrapper busy-waits
  ``percent/100 x`` the *fastest* call of that method seen so far, i.e. its undisturbed cost.
  Not the call's own elapsed time: on a loaded machine that includes waits for a core, and
  20% of an inflated time made the benchmark 33% slower in a calibration run, overstating what
  "20%" tests. The floor converges within the benchmark's warm-up. The wrapper's own cost
  (~0.6 us: a coroutine frame and two clock reads) is measured once and subtracted.
* ``cycle`` target (pool checkout, ~2 us per acquire/release): ``Pool.acquire``'s context
  manager exit is wrapped, and after it returns the wrapper busy-waits so that one uncontended
  acquire/release cycle costs ``1 + percent/100`` times its floor. The wrapper's own coroutine
  frame (~0.6 us, 30% of the cycle by itself) counts as part of the slowdown: the pause is found
  by feedback on a private pool, measured once per process (see :func:`_cycle_pause`).

:func:`install`, called by this suite's conftest before any benchmark, wraps the target's method
at run time; the library carries no hook, so any revision of it can be slowed the same way. The
calibration report shows the ratio the benchmark really saw (see :func:`costs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Literal, TypeVar

from tristore.errors import ConfigError

__all__ = [
    "ENV_PERCENT",
    "ENV_TARGET",
    "HOOKS",
    "TARGETS",
    "Hook",
    "active",
    "costs",
    "install",
]

ENV_PERCENT = "TRISTORE_TEST_SLOWDOWN"
ENV_TARGET = "TRISTORE_TEST_SLOWDOWN_TARGET"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Hook:
    module: str
    owner: str  # class holding the method
    method: str  # wrapped by install()
    mode: Literal["elapsed", "cycle"]


#: Where each target's hook goes. The perf benchmark of each target calls this method on every
#: operation, so the whole measured operation is slowed.
HOOKS: dict[str, Hook] = {
    "pool_checkout": Hook("tristore.pool", "_Acquire", "__aexit__", "cycle"),
    "sqlite_write": Hook("tristore.stores.sqlite", "SQLiteStore", "write", "elapsed"),
    "redis_pipeline": Hook("tristore.stores.cache", "CacheStore", "pipeline", "elapsed"),
    "kuzu_read": Hook("tristore.stores.graph", "GraphStore", "read", "elapsed"),
}
TARGETS: tuple[str, ...] = tuple(HOOKS)

_MARK = "__tristore_slowdown__"


def _parse(environ: Mapping[str, str]) -> tuple[float, str]:
    """(fraction, target) from the environment; (0.0, "") when the switch is off."""
    raw = environ.get(ENV_PERCENT, "").strip()
    target = environ.get(ENV_TARGET, "").strip()
    if not raw:
        return 0.0, ""
    try:
        percent = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PERCENT}: expected a percentage, got {raw!r}") from None
    if percent == 0:
        return 0.0, ""
    if not 0 < percent <= 1000:
        raise ConfigError(f"{ENV_PERCENT}: expected a percentage in (0, 1000], got {raw!r}")
    if target not in HOOKS:
        # Silently slowing nothing would make a calibration report the detection rate of a no-op.
        raise ConfigError(f"{ENV_TARGET}: expected one of {', '.join(TARGETS)}, got {target!r}")
    return percent / 100.0, target


_factor, _target = _parse(os.environ)
_costs: dict[str, float] = {}  # one-off measurements, for reports
_pause = -1.0  # the cycle target's busy-wait in seconds; < 0: not measured yet
_async_overhead = -1.0  # the elapsed wrapper's own cost per call; < 0: not measured yet


def active() -> tuple[float, str]:
    """The switch's state: (percent, target), or (0.0, "") when off."""
    return _factor * 100.0, _target


def configure(percent: float, target: str = "") -> None:
    """Set the switch in this process (tests of this module; hooks already applied stay)."""
    global _factor, _target
    _factor, _target = _parse({ENV_PERCENT: str(percent), ENV_TARGET: target})


def _wrap_elapsed(fn: F, target: str) -> F:
    floor = math.inf  # the fastest call seen so far: this method's undisturbed cost

    @functools.wraps(fn)
    async def slowed(*args: Any, **kwargs: Any) -> Any:
        nonlocal floor
        start = perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            now = perf_counter()
            floor = min(floor, now - start)
            end = now + floor * _factor - _async_overhead
            while perf_counter() < end:
                pass

    setattr(slowed, _MARK, target)
    return slowed  # type: ignore[return-value]


def _wrap_cycle(fn: F, target: str) -> F:
    """The pool's wrapper: an extra coroutine frame, which :func:`_cycle_pause` measures and
    counts as part of the slowdown."""

    @functools.wraps(fn)
    async def slowed(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        finally:
            end = perf_counter() + (_pause if _pause >= 0 else _cycle_pause())
            while perf_counter() < end:
                pass

    setattr(slowed, _MARK, target)
    return slowed  # type: ignore[return-value]


def _wrap(fn: F, target: str) -> F:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"slowdown target {target!r}: {fn.__qualname__} is not a coroutine")
    if HOOKS[target].mode == "cycle":
        return _wrap_cycle(fn, target)
    _measure_async_wrapper()
    return _wrap_elapsed(fn, target)


def install() -> list[str]:
    """Wrap the active target's method; return what was wrapped.

    Idempotent. Called from tests/perf/conftest.py before any benchmark runs; it also does the
    one-off cost measurements now, so they never fall inside a timed region.
    """
    if not _factor:
        return []
    spec = HOOKS[_target]
    module = importlib.import_module(spec.module)
    owner = getattr(module, spec.owner)
    fn = owner.__dict__[spec.method]
    done: list[str] = []
    if getattr(fn, _MARK, None) != _target:
        setattr(owner, spec.method, _wrap(fn, _target))
        done.append(f"{spec.module}.{spec.owner}.{spec.method}")
    if spec.mode == "cycle":
        _cycle_pause()
    return done


# -- one-off cost measurements ---------------------------------------------------------------


def _floor_per_call(run: Callable[[int], float], n: int, batches: int = 9) -> float:
    """The lowest per-call time over several batches: intrinsic cost; noise only adds to it."""
    return min(run(n) for _ in range(batches)) / n


def _measure_async_wrapper() -> None:
    """The elapsed wrapper's own cost, busy-wait bookkeeping included (factor 0, no loop)."""
    global _async_overhead, _factor
    if _async_overhead >= 0:
        return

    async def noop() -> None:
        return None

    def timed(fn: Callable[[], Any]) -> Callable[[int], float]:
        def run(n: int) -> float:
            start = perf_counter()
            for _ in range(n):
                # Driven by hand, without an event loop: only the wrapper's own work is timed.
                with contextlib.suppress(StopIteration):
                    fn().send(None)
            return perf_counter() - start

        return run

    factor, _factor, _async_overhead = _factor, 0.0, 0.0
    try:
        wrapped = _wrap_elapsed(noop, "calibration")
        cost = _floor_per_call(timed(wrapped), 5000) - _floor_per_call(timed(noop), 5000)
    finally:
        _factor = factor
    _async_overhead = max(0.0, cost)
    _costs["async_wrapper"] = _async_overhead


def _cycle_pause() -> float:
    """Busy-wait per pool return so that one acquire/release cycle costs ``1 + factor`` times.

    The hook itself costs a few hundred nanoseconds when on (a call and two clock reads), of
    the order of the 20% being asked for, and that cost is too noisy to measure apart on a busy
    machine. So the pause is found by feedback instead: on a private pool, measure the floor
    cycle time without the hook (``base``) and with it (``hooked``) in alternating batches, and
    correct the pause by ``(1 + factor) x base - hooked``; three passes. Measured once per
    process: in this thread if no event loop is running (``install()`` at pytest configure
    time), else in a helper thread with its own loop.
    """
    global _pause
    if _pause >= 0:
        return _pause
    spec = HOOKS["pool_checkout"]
    module = importlib.import_module(spec.module)
    owner = getattr(module, spec.owner)
    current = owner.__dict__[spec.method]
    original = getattr(current, "__wrapped__", current)

    def switch(on: bool) -> None:
        setattr(owner, spec.method, current if on else original)

    def calibrate() -> dict[str, float]:
        global _pause
        pause = 0.0
        floors: dict[str, float] = {}
        try:
            for _ in range(3):
                _pause = pause
                floors = asyncio.run(_pool_cycle_floors(switch))
                pause = max(0.0, pause + (1 + _factor) * floors["base"] - floors["hooked"])
        finally:
            switch(True)
            _pause = -1.0
        return floors | {"pause": pause}

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        result = calibrate()
    else:
        with ThreadPoolExecutor(1, thread_name_prefix="tristore-slowdown") as helper:
            result = helper.submit(calibrate).result()
    _costs.update(
        cycle_base=result["base"],
        cycle_hooked=result["hooked"],  # with the previous pass's pause
        cycle_pause=result["pause"],
    )
    _pause = result["pause"]
    return _pause


async def _pool_cycle_floors(switch: Callable[[bool], None]) -> dict[str, float]:
    """Floor time of one uncontended acquire/release, without and with the hook.

    Many short batches, alternating between the two, each side keeping its fastest: a change
    in machine load during the measurement affects both alike, and the floor is what the
    gate's statistic (the per-round minimum) sees.
    """
    import tempfile

    from tristore_bench import workloads

    n = 500
    # The gate's own pool checkout (the registry's), so the pause is calibrated on what it times.
    ctx = workloads.Context(tempfile.gettempdir())
    async with workloads.open_workload("pool_checkout", ctx) as op:

        async def cycles() -> float:
            start = perf_counter()
            for _ in range(n):
                await op()
            return (perf_counter() - start) / n

        await cycles()  # warm-up
        floors = {"base": math.inf, "hooked": math.inf}
        for _ in range(40):
            for name, on in (("base", False), ("hooked", True)):
                switch(on)
                floors[name] = min(floors[name], await cycles())
    return floors


def costs() -> dict[str, float]:
    """The one-off measurements made so far, in seconds (for the calibration report)."""
    return dict(_costs)

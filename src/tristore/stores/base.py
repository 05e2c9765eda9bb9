"""What every store offers the rest of tristore: the contract doctor and the manager rely on.

A store owns its pools and its server-side resources. ``open`` makes it usable (and may start an
embedded server), ``close`` releases everything it opened, in any state. The read-only calls do
not change data:

* ``check`` asks each pool for a health check and returns ``{"ok": bool, ...}`` per pool (or a
  single such dict); doctor reads every nested ``ok``.
* ``version`` is the engine's or server's version string.
* ``effective_settings`` is what the engine reports back, not what was asked for: a setting the
  engine silently ignored shows here.
* ``stats`` is the pools' counters, cheap enough to call on every monitor tick.

A store that can verify its files on disk also implements :class:`CheckedOnDisk`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> dict[str, Any]: ...

    async def version(self) -> str: ...

    async def effective_settings(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...


@runtime_checkable
class CheckedOnDisk(Protocol):
    async def integrity(self, *, full: bool = False) -> list[str]:
        """``[]`` when healthy, else the findings; ``full`` is the slower, complete check."""
        ...

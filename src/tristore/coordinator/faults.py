"""Test-only fault injection at named points of the commit protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tristore.errors import ConfigError


@dataclass
class ArmedFault:
    """What one armed point does when reached: raise ``error`` or call ``action``."""

    error: BaseException | None
    action: Callable[[], None] | None
    times: int  # firings left


class Faults:
    """Test-only fault injection at named points of the protocol (never armed in production).

    ``arm(point, error)`` raises ``error`` there; ``arm(point, action=fn)`` calls ``fn`` there
    (e.g. kill a server). Each arming fires ``times`` times. Unarmed, a point costs one dict lookup.
    """

    POINTS = frozenset(
        {
            "graph.stage",  # strict: after the graph ops, before the SQLite commit (rolls back)
            "sqlite.commit",  # inside the SQLite commit hop, before COMMIT (rolls back)
            "after_commit",  # after the SQLite commit, before any apply
            "graph.commit",  # before the Kuzu COMMIT of fresh intents (re-applied alone)
            "graph.replay",  # before the Kuzu COMMIT of intents that may have been applied
            "cache.apply",  # before the apply script is sent to Redis (stays pending)
        }
    )

    def __init__(self) -> None:
        self._armed: dict[str, ArmedFault] = {}

    def arm(
        self,
        point: str,
        error: BaseException | None = None,
        *,
        action: Callable[[], None] | None = None,
        times: int = 1,
    ) -> None:
        if point not in self.POINTS:
            raise ConfigError(f"fault point {point!r}: expected one of {sorted(self.POINTS)}")
        if (error is None) == (action is None):
            raise ConfigError("fault: pass exactly one of error= and action=")
        self._armed[point] = ArmedFault(error, action, times)

    def disarm(self, point: str | None = None) -> None:
        if point is None:
            self._armed.clear()
        else:
            self._armed.pop(point, None)

    def fire(self, point: str) -> None:
        entry = self._armed.get(point)
        if entry is None:
            return
        entry.times -= 1
        if entry.times <= 0:
            self._armed.pop(point, None)
        if entry.action is not None:
            entry.action()
        elif entry.error is not None:
            raise entry.error

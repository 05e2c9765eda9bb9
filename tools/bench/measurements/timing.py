"""The timing wrapper the measurement scripts here patch into the library."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any


def timed(target: Any, name: str, into: dict[str, list[float]], key: str | None = None) -> None:
    """Replace ``target.name`` (a sync function) with one that appends each call's seconds to
    ``into[key or name]``."""
    original: Callable[..., Any] = getattr(target, name)
    samples = into.setdefault(key or name, [])

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            samples.append(time.perf_counter() - started)

    setattr(target, name, wrapper)
